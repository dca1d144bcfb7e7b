import numpy as np
import pytest
import torch
from _helpers import assert_no_hooks
from hypothesis import given, settings
from hypothesis import strategies as st
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
    assert_no_hooks(teacher)
    assert_no_hooks(student)
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


# ------------------------------------------------ modes, parameters, properties


def _frozen_bn_teacher():
    teacher = _net(0.125, 0)
    teacher.train()
    teacher.features[1].eval()  # a frozen BatchNorm in a fine-tuning teacher
    return teacher


@pytest.mark.parametrize("method", ["logits", "features", "fails"])
def test_teacher_modes_and_gradients_come_back_exactly(method):
    X, y = _data(16)
    teacher = _frozen_bn_teacher()
    teacher.classifier[0].weight.requires_grad_(False)
    modes = [m.training for m in teacher.modules()]
    grads = [p.requires_grad for p in teacher.parameters()]
    kwargs = {"method": "features", "layer": "conv_33"}
    if method == "logits":
        kwargs = {}
    elif method == "fails":  # the student layer is resolved inside the context
        kwargs["student_layer"] = "conv_99"
    student = _net(0.0625, 1)
    if method == "fails":
        with pytest.raises(ValueError, match="student layer"):
            distill(teacher, student, (X, y), epochs=1, batch_size=8, **kwargs)
    else:
        distill(teacher, student, (X, y), epochs=1, batch_size=8, **kwargs)
    assert [m.training for m in teacher.modules()] == modes
    assert [p.requires_grad for p in teacher.parameters()] == grads
    assert_no_hooks(teacher)
    assert_no_hooks(student)


def test_feature_distillation_is_deterministic_under_random_state():
    # the hint adapter is initialised under random_state, not the global RNG
    X, y = _data(16)
    teacher = _net(0.125, 0)
    states = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        student = _net(0.0625, 1)
        distill(
            teacher,
            student,
            (X, y),
            method="features",
            layer="conv_33",
            epochs=1,
            batch_size=8,
            random_state=4,
        )
        states.append(student.state_dict())
    for k in states[0]:
        torch.testing.assert_close(states[0][k], states[1][k], rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"temperature": float("inf")}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"hint_weight": -1.0}, "hint_weight"),
        ({"alpha": float("nan")}, "alpha"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": 0.0}, "lr"),
        ({"layer": 3, "method": "features"}, "layer"),
        ({"teacher": "resnet"}, "teacher"),
    ],
)
def test_distill_refuses_bad_parameters(kwargs, match):
    X, y = _data(8)
    args = {"teacher": _net(0.125, 0), "student": _net(0.0625, 1), **kwargs}
    with pytest.raises(ValueError, match=match):
        distill(train_data=(X, y), **args)
    with pytest.raises(ValueError, match="labels must be class indices"):
        distill(_net(0.125, 0), _net(0.0625, 1), (X, y + 4), epochs=1)


@pytest.mark.parametrize(
    "zs, zt, y, match",
    [
        ([[0.0, np.inf]], [[0.0, 1.0]], [0], "student_logits contain NaN"),
        ([[0.0, 1.0]], [[np.nan, 1.0]], [0], "teacher_logits contain NaN"),
        ([[0.0, 1.0]], [[0.0, 1.0, 2.0]], [0], "same shape"),
        ([[0.0, 1.0]], [[0.0, 1.0]], [2], r"labels must be class indices in \[0, 2\)"),
        ([[0.0, 1.0]], [[0.0, 1.0]], [0, 1], "labels must be 1 integer"),
    ],
)
def test_distillation_loss_refuses_bad_logits_and_labels(zs, zt, y, match):
    with pytest.raises(ValueError, match=match):
        distillation_loss(
            torch.tensor(zs), torch.tensor(zt), torch.tensor(y), alpha=0.5
        )


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    shift=st.floats(-1e4, 1e4),
    scale=st.floats(1e-3, 1e3),
    temperature=st.floats(0.1, 20.0),
    alpha=st.floats(0.0, 1.0),
)
def test_distillation_loss_properties(seed, shift, scale, temperature, alpha):
    # softmax is invariant to a per-row shift; the loss is finite and >= 0
    # for large logits (log space); a student equal to its teacher has a zero
    # soft term, so the loss is (1 - alpha) * CE exactly.
    rng = np.random.default_rng(seed)
    zs = torch.tensor(scale * rng.normal(size=(4, 3)))
    zt = torch.tensor(scale * rng.normal(size=(4, 3)))
    y = torch.tensor(rng.integers(0, 3, size=4))
    a = distillation_loss(zs, zt, y, temperature=temperature, alpha=1.0)
    b = distillation_loss(zs, zt + shift, y, temperature=temperature, alpha=1.0)
    assert torch.isfinite(a) and float(a) >= -1e-9
    assert float(b) == pytest.approx(float(a), rel=1e-6, abs=1e-6 * max(1, abs(shift)))
    same = distillation_loss(zs, zs, y, temperature=temperature, alpha=alpha)
    ce = torch.nn.functional.cross_entropy(zs, y)
    assert float(same) == pytest.approx((1 - alpha) * float(ce), rel=1e-9, abs=1e-9)
