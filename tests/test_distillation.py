import numpy as np
import pytest
import torch
from scipy.special import log_softmax, softmax

from skvmf.distillation import distill, distillation_loss
from skvmf.models import make_classifier


def _data(n=64, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, size, size, generator=g)
    y = (X[:, 0].mean(dim=(1, 2)) > 0).long() + 2 * (X[:, 1].mean(dim=(1, 2)) > 0)
    return X, y


def _net(width, seed):
    return make_classifier(
        "vgg16", 4, width=width, input_size=16, batch_norm=True, random_state=seed
    )


def test_distillation_loss_matches_numpy():
    rng = np.random.default_rng(0)
    zs, zt = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    y = rng.integers(0, 4, 5)
    T, alpha = 3.0, 0.7
    pt = softmax(zt / T, axis=1)
    kl = (pt * (np.log(pt) - log_softmax(zs / T, axis=1))).sum(1).mean()
    ce = -log_softmax(zs, axis=1)[np.arange(5), y].mean()
    expected = alpha * T**2 * kl + (1 - alpha) * ce
    got = distillation_loss(
        torch.tensor(zs), torch.tensor(zt), torch.tensor(y), temperature=T, alpha=alpha
    )
    assert float(got) == pytest.approx(expected, rel=1e-10)


def _kl_to_teacher(teacher, student, X, T=4.0):
    with torch.no_grad():
        pt = torch.softmax(teacher(X) / T, 1)
        ls = torch.log_softmax(student(X) / T, 1)
    return float((pt * (pt.log() - ls)).sum(1).mean())


def test_logit_distillation_brings_the_student_closer_to_the_teacher():
    X, y = _data()
    teacher = _net(0.125, 0)
    teacher.eval()
    student = _net(0.0625, 1)
    before = _kl_to_teacher(teacher, student.eval(), X)
    distill(
        teacher,
        student,
        (X, y),
        method="logits",
        alpha=1.0,
        epochs=4,
        batch_size=16,
        random_state=0,
    )
    after = _kl_to_teacher(teacher, student.eval(), X)
    assert after < 0.5 * before


def test_feature_distillation_reduces_the_hint_error_and_cleans_up():
    X, y = _data()
    teacher = _net(0.125, 0)
    teacher.train()
    state = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = _net(0.0625, 1)
    res = distill(
        teacher,
        student,
        (X, y),
        method="features",
        layer="conv_33",
        epochs=3,
        batch_size=16,
        random_state=0,
    )
    assert res.config["distillation"] == {
        "method": "features",
        "temperature": 4.0,
        "layer": "conv_33",
        "student_layer": "conv_33",
        "hint_weight": 1.0,
    }
    assert teacher.training  # mode restored
    assert all(p.requires_grad for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        if "running" not in k and "num_batches" not in k:
            torch.testing.assert_close(v, state[k])  # the teacher is not trained
    for m in [*teacher.modules(), *student.modules()]:
        assert not m._forward_hooks
    assert res.history["loss"][-1] < res.history["loss"][0]


def test_distillation_is_deterministic():
    X, y = _data()
    teacher = _net(0.125, 0)
    a, b = _net(0.0625, 1), _net(0.0625, 1)
    for s in (a, b):
        distill(teacher, s, (X, y), epochs=1, batch_size=16, random_state=3)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(va, vb, rtol=0, atol=0, msg=k)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "hints"}, "method"),
        ({"method": "features"}, "layer"),
        ({"method": "features", "layer": "conv_99"}, "closest"),
        ({"temperature": 0}, "temperature"),
        ({"alpha": 1.5}, "alpha"),
    ],
)
def test_bad_arguments(kwargs, match):
    X, y = _data(8)
    with pytest.raises(ValueError, match=match):
        distill(_net(0.125, 0), _net(0.0625, 1), (X, y), epochs=1, **kwargs)
