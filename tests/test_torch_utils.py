import numpy as np
import pytest
import torch

from skvmf._torch_utils import (
    MomentumSGD,
    resolve_device,
    resolve_dtype,
    torch_generator,
)


@pytest.mark.parametrize("weight_decay", [0.0, 5e-4])
def test_momentum_sgd_matches_torch_sgd(weight_decay):
    torch.manual_seed(0)
    a = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    b = a.detach().clone().requires_grad_(True)
    ref = torch.optim.SGD([a], lr=0.01, momentum=0.9, weight_decay=weight_decay)
    mine = MomentumSGD(b, lr=0.01, momentum=0.9, weight_decay=weight_decay)
    X = torch.randn(5, 7, dtype=torch.float64)
    for _ in range(10):
        ref.zero_grad()
        (a @ X).sin().sum().backward()
        ref.step()
        (b @ X).sin().sum().backward()
        mine.step()
        assert b.grad is None
    torch.testing.assert_close(a, b, rtol=0, atol=1e-15)


def test_resolve_device_and_dtype():
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    assert resolve_dtype("float32") is torch.float32
    assert resolve_dtype(np.float64) is torch.float64
    with pytest.raises(ValueError, match="floating"):
        resolve_dtype("int32")


def test_torch_generator_is_seeded_by_random_state():
    a = torch.rand(4, generator=torch_generator(3))
    b = torch.rand(4, generator=torch_generator(3))
    c = torch.rand(4, generator=torch_generator(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
