import math

import numpy as np
import pytest
import torch

from skvmf._torch.devices import resolve_device, resolve_dtype, torch_generator
from skvmf._torch.optimisers import MomentumSGD


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


# ---------------------------------------------------------------------------
# to_numpy and the overflow-safe norms
# ---------------------------------------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from skvmf._numerics.arrays import safe_norm, to_numpy, unit_rows  # noqa: E402


def test_to_numpy_refuses_complex_and_passes_arrays_through():
    with pytest.raises(ValueError, match="complex"):
        to_numpy(torch.zeros(2, dtype=torch.complex64))
    with pytest.raises(ValueError, match="complex"):
        to_numpy(np.zeros(2, dtype=np.complex128))
    x = torch.arange(6.0, requires_grad=True).reshape(2, 3)
    np.testing.assert_array_equal(to_numpy(x), np.arange(6.0).reshape(2, 3))
    assert to_numpy([1, 2], dtype=np.float32).dtype == np.float32


def test_to_numpy_widens_bfloat16_exactly():
    """numpy has no bfloat16: the tensor is widened to float32, which holds
    every bfloat16 value exactly (a plain .numpy() raises TypeError)."""
    values = [0.0, -1.5, 3.140625, 2.0**-126, 2.0**100, -(2.0**-133)]
    x = torch.tensor(values, dtype=torch.bfloat16)
    out = to_numpy(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, x.float().numpy())
    np.testing.assert_array_equal(out.astype(np.float64), np.array(values))


# entries 0 or of magnitude >= 1e-6, so that scaling by 1e-300 stays normal
_entry = st.one_of(
    st.just(0.0),
    st.floats(1e-6, 1.0).flatmap(lambda v: st.sampled_from([v, -v])),
)
_rows = hnp.arrays(
    np.float64, st.tuples(st.integers(1, 4), st.integers(1, 6)), elements=_entry
)


@settings(max_examples=60, deadline=None)
@given(rows=_rows, exponent=st.integers(-300, 300))
def test_safe_norm_is_exact_at_every_magnitude(rows, exponent):
    """||s x|| = s ||x|| for scales 1e-300..1e300, where the plain norm
    overflows to inf or underflows to 0; numpy and torch agree."""
    scale = 10.0**exponent
    expected = np.array([math.hypot(*row) for row in rows])  # independent
    got = safe_norm(rows * scale, dim=1)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got / scale, expected, rtol=1e-12, atol=0)
    got_t = safe_norm(torch.from_numpy(rows * scale), dim=1).numpy()
    np.testing.assert_allclose(got_t, got, rtol=1e-12, atol=0)
    unit = unit_rows(rows * scale)
    nonzero = expected > 0
    np.testing.assert_allclose(
        np.linalg.norm(unit[nonzero], axis=1), 1.0, rtol=1e-12, atol=0
    )
    assert np.all(unit[~nonzero] == 0)


def test_safe_norm_float32_large_and_tiny():
    """float32 rows of 1e20 (squares overflow) and 1e-30 (squares underflow)."""
    for scale in (1e20, 1e-30):
        x = torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=torch.float32) * scale
        norm = safe_norm(x, dim=1)
        assert norm.dtype == torch.float32
        np.testing.assert_allclose(norm.numpy(), [5.0 * scale, 0.0], rtol=1e-6)
        np.testing.assert_allclose(
            unit_rows(x).numpy(), [[0.6, 0.8], [0, 0]], rtol=1e-6
        )
