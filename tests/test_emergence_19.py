"""Emergence where learning happens (issue 19, item 4) and ``skvmf demo
--images N`` (item 3): checkpoints spaced by training progress (log-spaced
iterations, equal steps of the training loss), the demo's spacing rule, the
second emergence finding ("rises, then plateaus") and the demo's number of
held-out images."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from sklearn.utils._param_validation import InvalidParameterError

from skvmf import cli
from skvmf._utils.uncertainty import Resampler
from skvmf.analysis._findings import _plateau_checkpoints, _plateau_finding
from skvmf.analysis._pipeline import _split
from skvmf.architectures import make_classifier
from skvmf.training import (
    Trainer,
    list_checkpoints,
    log_checkpoint_iterations,
    loss_checkpoint_iterations,
    smoothed_training_loss,
    train_classifier,
)

# ---------------------------------------------------------------------------
# the schedules
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 5, 37, 132, 1000, 31_000])
@pytest.mark.parametrize("k", [2, 3, 10, 25])
def test_log_spacing_is_monotone_unique_in_range_with_both_ends(n, k):
    its = log_checkpoint_iterations(n, k)
    assert its[0] == 0 and its[-1] == n
    assert its == sorted(set(its)) and len(its) <= k
    assert all(0 <= it <= n for it in its)
    # after 0: a geometric sequence from 1 to n, rounded (collisions merged)
    if k > 2:
        assert its[1:] == sorted({round(x) for x in np.geomspace(1, n, k - 1)})
    # dense early: the gaps only widen (up to rounding)
    assert np.all(np.diff(np.diff(its)) >= -1)


def test_log_spacing_of_an_empty_run_and_bad_counts():
    assert log_checkpoint_iterations(0, 5) == [0]
    with pytest.raises(InvalidParameterError, match="n_checkpoints"):
        log_checkpoint_iterations(100, 1)


def _first_reaching(curve, level):
    return int(np.argmax(curve <= level))


@pytest.mark.parametrize("k", [3, 5, 8])
def test_loss_spacing_gives_equal_loss_steps_on_a_synthetic_curve(k):
    # a noiseless exponential fall: each checkpoint is the first iteration
    # whose loss reaches its level, the levels at equal loss steps
    t = np.arange(400)
    losses = 0.1 + 2.2 * np.exp(-t / 40)
    its = loss_checkpoint_iterations(losses, k, window=1)
    curve = smoothed_training_loss(losses, window=1)
    assert its[0] == 0 and its[-1] == 400 and len(its) == k
    levels = curve[0] - np.arange(k) * (curve[0] - curve[-1]) / (k - 1)
    for it, level in zip(its[1:-1], levels[1:-1]):
        assert it == _first_reaching(curve, level)
        assert curve[it] <= level < curve[it - 1]
    # equal loss steps, up to one iteration's fall at each checkpoint
    steps = -np.diff(curve[its[:-1]])
    biggest_fall = np.max(-np.diff(curve[: its[-2] + 1]))
    assert np.allclose(steps, steps.mean(), atol=2 * biggest_fall)
    # dense where the loss falls fast: the gaps widen
    assert np.all(np.diff(np.diff(its[:-1])) >= 0)


def test_loss_spacing_chooses_among_candidates_and_merges_duplicates():
    losses = np.linspace(2.0, 0.0, 101)[:-1]  # falls by 0.02 per step
    its = loss_checkpoint_iterations(losses, 5, window=1, candidates=[0, 30, 60, 90])
    # levels 1.505, 1.01, 0.515 reached at 25, 50, 75: the next candidates
    assert its == [0, 30, 60, 90, 100]
    # one big drop at the first step reaches every level at once
    cliff = [5.0, 0.1, 0.1, 0.1]
    assert loss_checkpoint_iterations(cliff, 6, window=1) == [0, 1, 4]


def test_the_smoothed_loss_weights_by_batch_size_and_never_rises():
    # the outlier of a 2-image batch would lower the running minimum for good
    losses = [1.0] * 10 + [0.0] + [1.0] * 10
    sizes = [64] * 10 + [2] + [64] * 10
    weighted = smoothed_training_loss(losses, batch_sizes=sizes, window=3)
    plain = smoothed_training_loss(losses, window=3)
    assert plain.min() < 0.7 < 0.95 < weighted.min()
    noisy = np.abs(np.random.default_rng(0).normal(1.0, 0.5, 200))
    curve = smoothed_training_loss(noisy)
    assert curve.shape == (201,) and np.all(np.diff(curve) <= 0)
    with pytest.raises(ValueError, match="batch_sizes"):
        smoothed_training_loss([1.0, 2.0], batch_sizes=[1])
    with pytest.raises(ValueError, match="NaN"):
        smoothed_training_loss([1.0, np.nan])


def _tiny_run(tmp_path, **kwargs):
    torch.manual_seed(0)
    X = torch.randn(48, 3, 16, 16)
    y = (X.mean(dim=(1, 2, 3)) > 0).long()
    model = make_classifier(
        "vgg16", n_classes=2, width=0.0625, input_size=16, random_state=0
    )
    result = train_classifier(model, (X, y), epochs=5, batch_size=10, **kwargs)
    return model, result


def test_the_loss_schedule_saves_its_choice_and_leaves_training_alone(tmp_path):
    d = tmp_path / "loss"
    model, result = _tiny_run(
        tmp_path, checkpoint_dir=d, checkpoint_iterations="loss", n_checkpoints=4
    )
    n = result.n_iterations
    assert len(result.step_losses) == len(result.step_batch_sizes) == n == 25
    assert result.step_batch_sizes[:5] == [10, 10, 10, 10, 8]
    expected = loss_checkpoint_iterations(
        result.step_losses, 4, batch_sizes=result.step_batch_sizes
    )
    assert [it for it, _ in result.checkpoints] == expected
    assert [it for it, _ in list_checkpoints(d)] == expected
    # the same run without checkpoints ends with the same weights: keeping
    # candidates and saving afterwards changed nothing of the training
    plain, _ = _tiny_run(tmp_path)
    for (k, a), b in zip(model.state_dict().items(), plain.state_dict().values()):
        assert torch.equal(a, b), k
    _, logged = _tiny_run(
        tmp_path, checkpoint_dir=tmp_path / "log", checkpoint_iterations="log"
    )
    assert [it for it, _ in logged.checkpoints] == log_checkpoint_iterations(n, 10)


def test_the_schedules_are_validated_declaratively():
    with pytest.raises(InvalidParameterError, match="checkpoint_iterations"):
        Trainer(checkpoint_iterations="evenly")._validate_params()
    with pytest.raises(InvalidParameterError, match="n_checkpoints"):
        Trainer(checkpoint_iterations="loss", n_checkpoints=1)._validate_params()
    Trainer(checkpoint_iterations="log", n_checkpoints=2)._validate_params()


# ---------------------------------------------------------------------------
# the second emergence finding: rises, then plateaus
# ---------------------------------------------------------------------------


def test_the_plateau_checkpoints_are_the_intermediate_ones_nearest_the_thirds():
    assert _plateau_checkpoints([0, 132]) is None
    assert _plateau_checkpoints([0, 33, 66, 99, 132]) == (0, 33, 99, 132)
    # loss-spaced: dense early; both thirds fall to the last intermediate one
    assert _plateau_checkpoints([0, 20, 31, 49, 132]) == (0, 49, 49, 132)
    assert _plateau_checkpoints([0, 5, 132]) == (0, 5, 5, 132)


def _finding_on(curve, n_images=60, noise=0.0, seed=0):
    """The finding on hand-made counts: ``curve`` maps iteration -> mean
    points per image; two repeats, per-image noise of sd ``noise``."""
    rng = np.random.default_rng(seed)
    deep = "conv_53"
    measures = {}
    for r in range(2):
        for it, mean in curve.items():
            counts = mean + noise * rng.standard_normal(n_images)
            measures[(r, ("checkpoint", it))] = {"layers": {deep: {"count": counts}}}
    result = types.SimpleNamespace(
        emergence=[{"iteration": it, "layer": deep} for it in curve]
    )
    rs = Resampler(2, n_images, 400, 0.95, 0)
    return _plateau_finding(rs, measures, result, deep, 2, True)


def test_the_plateau_finding_holds_is_contradicted_or_undecided_by_its_interval():
    f = _finding_on({0: 0.0, 33: 8.0, 66: 9.0, 99: 9.5, 132: 9.6}, noise=1.0)
    assert f["verdict"] == "holds" and f["low"] > 0
    assert f["value"] == pytest.approx(8.0 - 0.1, abs=0.5)
    assert f["n_images"] == 60 and "iterations 0-33" in f["note"]
    assert "iterations 99-132" in f["note"]
    # late learning: flat first, rising at the end
    f = _finding_on({0: 0.0, 33: 0.5, 66: 2.0, 99: 4.0, 132: 9.0}, noise=1.0)
    assert f["verdict"] == "contradicted" and f["high"] < 0
    # a late fall larger than the early rise is no plateau either
    f = _finding_on({0: 2.0, 33: 6.0, 66: 6.0, 99: 6.0, 132: 0.0}, noise=0.5)
    assert f["verdict"] == "contradicted"
    # the two parts equal within noise: the data cannot decide
    f = _finding_on({0: 0.0, 33: 3.0, 66: 6.0, 99: 9.0, 132: 12.0}, noise=4.0)
    assert f["verdict"] == "inconclusive" and f["low"] < 0 < f["high"]


def test_the_plateau_finding_needs_an_intermediate_checkpoint():
    f = _finding_on({0: 0.0, 132: 9.0})
    assert f["verdict"] == "not evaluated" and f["holds"] is None
    assert "3 checkpoints" in f["note"]


# ---------------------------------------------------------------------------
# skvmf demo --images N
# ---------------------------------------------------------------------------


def _demo_args(*argv):
    return cli._build_parser().parse_args(["demo", *argv])


@pytest.mark.parametrize(
    ("argv", "n_images", "n_held_out"),
    [
        ([], 120, 60),  # today's default: 12 per digit
        (["--images", "120"], 240, 120),
        (["--images", "60", "--quick"], 120, 60),
        (["--images", "240", "--held-out", "0.6"], 400, 240),
        (["--images", "all"], 450, 225),
    ],
)
def test_images_reaches_analyze(monkeypatch, argv, n_images, n_held_out):
    import skvmf.analysis

    seen = {}

    def fake_analyze(model, data, **options):
        seen["data"], seen["options"] = data, options
        return "result"

    monkeypatch.setattr(skvmf.analysis, "analyze", fake_analyze)
    args = _demo_args(*argv, "--no-attack", "-q")
    assert cli._analyze_demo(args, None, [], {}) == "result"
    data = seen["data"]
    assert len(data) == n_images
    y = np.asarray(data.targets)
    held = _split(y, seen["options"]["held_out"], 0)[1]
    assert abs(len(held) - n_held_out) <= 5  # 'all': unequal digits round


def test_images_usage_errors_come_before_any_work(tmp_path, capsys):
    out = tmp_path / "r"
    for argv, words in (
        (["--images", "15"], "multiple of 10"),
        (["--images", "480"], "needs 96 test images per digit"),
        (["--images", "60", "--n-per-class", "5"], "not both"),
    ):
        assert cli.main(["demo", *argv, "--out", str(out)]) == 2
        assert words in capsys.readouterr().err
        assert not out.exists()


def test_the_rarest_test_digit_is_what_the_cli_assumes():
    from skvmf.datasets import load_digits_images

    counts = np.bincount(np.asarray(load_digits_images("test").targets))
    assert counts.min() == cli._DIGITS_TEST_RAREST


def test_the_demo_states_its_spacing_rule():
    assert "equal steps of the smoothed training loss" in cli.DEMO_SPACING
    rows = cli._spacing_rows(
        types.SimpleNamespace(step_losses=[2.0, 1.0, 0.5], step_batch_sizes=[4] * 3),
        [(0, "a"), (3, "b")],
    )
    assert rows["checkpoint spacing"] == cli.DEMO_SPACING
    assert rows["smoothed training loss at the checkpoints"].startswith("0: ")
