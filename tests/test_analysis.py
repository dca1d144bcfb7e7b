"""analyze(): the pipeline end to end on a tiny network (fast settings).

The properties of the method on the real digits workload are measured in
tests/test_workload.py; here the wiring, tables, files and figures.
"""

import json
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from _helpers import four_class_workload
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

import skvmf  # noqa: E402
from skvmf.models import make_classifier  # noqa: E402

FAST = {
    "aligner_params": {"max_epochs": 2, "weight_steps": 2, "n_candidates": 10},
    "projector_params": {"max_iter": 200},
}
LAYERS = ["conv_33", "conv_53"]


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    torch.manual_seed(0)
    ckpt = tmp_path_factory.mktemp("ckpt")
    model, X, y = four_class_workload(ckpt, lr=4e-3)
    return model, X.numpy(), y.numpy(), ckpt


@pytest.fixture(scope="module")
def result(workload):
    model, X, y, ckpt = workload
    student = make_classifier(
        "vgg16", 4, width=0.0625, input_size=16, batch_norm=True, random_state=1
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # tiny fits
        return skvmf.analyze(
            model,
            X,
            y,
            layers=LAYERS,
            checkpoints=ckpt,
            attack={"n_steps": 2},
            students={"student": student},
            classes=list("abcd"),
            n_repeats=2,
            n_bootstrap=200,
            random_state=0,
            **FAST,
        )


def _quiet_analyze(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return skvmf.analyze(*args, **kwargs)


def test_fit_and_held_out_images_are_disjoint_and_stratified(result, workload):
    _, X, y, _ = workload
    fit, held = result.fit_index, result.eval_index
    assert len(np.intersect1d(fit, held)) == 0
    assert len(fit) + len(held) == len(y)
    for c in np.unique(y):  # every class on both sides
        assert (y[fit] == c).any() and (y[held] == c).any()
    assert result.settings["n_fit_images"] == len(fit)
    assert result.projection["n_images"] == len(held)
    assert set(result.display_index) <= set(held)


def test_projection_is_fitted_on_the_fit_images_only(result):
    # refitting with the first repeat's seed on the fit images alone gives the
    # same M: the held-out images played no part
    seed = result.settings["repeat_seeds"][0]
    fs = result.features
    refit = skvmf.SampleProjector(
        n_components=3, random_state=seed, max_iter=200, n_init=3
    ).fit(fs[result.fit_index])
    np.testing.assert_allclose(
        refit.components_, result.projector.components_, rtol=1e-5, atol=1e-7
    )


def test_single_repeat_tables_equal_the_estimators_on_held_out_images(workload):
    model, X, y, _ = workload
    res = _quiet_analyze(
        model, X, y, layers=LAYERS, n_repeats=1, random_state=0, **FAST
    )
    held = res.features[res.eval_index]
    again = res.counter.count(held, y[res.eval_index])
    for row, ref in zip(res.knowledge, again):
        assert row["mean_count"] == pytest.approx(ref["mean_count"])
        assert row["mean_reliable"] == pytest.approx(ref["mean_reliable"])
    dnn = held.soft_labels.argmax(1)
    q = res.projector.predict(held)
    assert res.projection["projection_agreement"] == pytest.approx((q == dnn).mean())
    assert res.projection["dnn_accuracy"] == pytest.approx(
        (dnn == y[res.eval_index]).mean()
    )


def test_every_headline_figure_has_an_interval_around_it(result):
    rows = [result.projection, *result.knowledge, *result.emergence]
    rows += result.adversarial + result.distillation
    checked = 0
    for row in rows:
        for key, value in row.items():
            low, high = row.get(f"{key}_low"), row.get(f"{key}_high")
            if key.endswith(("_low", "_high")) or low is None or value is None:
                continue
            assert low - 1e-12 <= high and low - 1e-9 <= value <= high + 1e-9, key
            checked += 1
    assert checked >= 20
    for row in result.knowledge:
        assert {"mean_count_low", "reliable_ratio_high", "vote_accuracy_low"} <= set(
            row
        )


def test_findings_follow_the_contract(result):
    names = [f["name"] for f in result.findings]
    assert names[:2] == ["projection_mimics_network", "strength_against_entropy"]
    assert {
        "reliable_ratio_rises_with_depth",
        "emergence_during_training",
        "attack_moves_deep_regions_more",
        "student_fewer_reliable_points:student",
    } <= set(names)
    keys = {"name", "statement", "value", "low", "high", "holds", "held_out"}
    keys |= {"verdict", "n_images", "images_to_decide"}
    side = {
        "projection_mimics_network": lambda lo, hi: lo > 0.9,
        "strength_against_entropy": lambda lo, hi: hi < 0,
        "reliable_ratio_rises_with_depth": lambda lo, hi: lo > 0,
        "emergence_during_training": lambda lo, hi: lo > 0,
        "attack_moves_deep_regions_more": lambda lo, hi: lo > 0,
        "adversarial_points_at_other_regions": lambda lo, hi: hi < 0.5,
        "student_fewer_reliable_points:student": lambda lo, hi: hi < 0,
    }
    for f in result.findings:
        assert keys <= set(f) and f["held_out"] is True
        if f["low"] is None:
            assert f["holds"] is None and f["verdict"] == "not evaluated"
        else:
            if "attack" not in f["statement"]:  # the attack's: fooled ones
                assert f["n_images"] == len(result.eval_index)
            assert f["low"] <= f["high"]
            assert f["holds"] == side[f["name"]](f["low"], f["high"])
            assert f["holds"] == (f["verdict"] == "holds")
    # two checkpoints have no intermediate pair: not evaluated, and said so
    emergence = next(f for f in result.findings if f["name"].startswith("emergence"))
    assert emergence["holds"] is None and "3 checkpoints" in emergence["note"]


def test_diagnostics_cover_every_network_layer_and_stage(result):
    networks = {"model", "checkpoint 0", "checkpoint 9", "student"}
    expected = {(n, "sample", "projection") for n in networks} | {
        (n, layer, stage)
        for n in networks
        for layer in LAYERS
        for stage in ("importance", "alignment")
    }
    got = {(d["network"], d["layer"], d["stage"]) for d in result.diagnostics}
    assert got == expected and len(result.diagnostics) == len(expected)
    for d in result.diagnostics:
        assert d["n_repeats"] == 2 and 0 <= d["n_converged"] <= 2
        assert d["converged"] == (d["n_converged"] == 2)
    assert len(result.loss_curves) == 2 * len(expected)


def test_a_stage_whose_loss_rises_is_reported_and_warned():
    from types import SimpleNamespace

    from skvmf.analysis._findings import _diagnostics, _warn_diagnostics

    proj = SimpleNamespace(loss_curve_=[3.0, 2.0, 1.0])
    al = SimpleNamespace(
        importance_loss_curve_={"conv": [1.0, 2.0, 5.0]},
        loss_curve_={"conv": [0.5, 0.4]},
    )
    curves, table = _diagnostics({(0, "model"): proj}, {(0, "model"): al}, ["conv"])
    verdict = {(d["stage"]): d["converged"] for d in table}
    assert verdict == {"projection": True, "importance": False, "alignment": True}
    with pytest.warns(
        ConvergenceWarning, match=r"importance of model at conv \(1 -> 5"
    ):
        _warn_diagnostics(table)


def test_tau_at_or_below_one_over_c_warns(workload):
    model, X, y, _ = workload
    with pytest.warns(UserWarning, match="every region is a knowledge point") as rec:
        _quiet_analyze(model, X, y, layers=["conv_53"], tau=0.25, n_repeats=1, **FAST)
    # attributed to the caller's line, not to skvmf's or scikit-learn's code
    [warning] = [w for w in rec if "every region" in str(w.message)]
    assert warning.filename == __file__


def test_held_out_zero_measures_on_the_fit_images(workload):
    model, X, y, _ = workload
    res = _quiet_analyze(
        model, X, y, layers=["conv_53"], held_out=0, n_repeats=1, **FAST
    )
    assert len(res.eval_index) == len(y)
    assert all(f["held_out"] is False for f in res.findings)
    assert res.projection["measured_on"] == "fit images"
    assert "fit images (nothing held out)" in res.summary()


def test_emergence_attack_and_distillation_tables(result):
    assert [r["iteration"] for r in result.emergence] == [0, 0, 9, 9]
    assert [f["iteration"] for f in result.emergence_frames] == [0, 9]
    assert len(result.emergence_frames[0]["g"]) == len(result.eval_index)
    assert [r["layer"] for r in result.adversarial] == LAYERS
    for row in result.adversarial:
        assert 0 <= row["mean_one_minus_cos"] <= 2
        ov = row["overlap_with_clean_points"]
        assert ov is None or 0 <= ov <= 1
    assert 0 <= result.attack["success_rate"] <= 1
    assert result.attack["n_images"] == len(result.eval_index)
    models = [r["model"] for r in result.distillation]
    assert models == ["teacher", "teacher", "student", "student"]
    assert "reliable_minus_teacher" in result.distillation[-1]
    assert result.timings.keys() >= {"extraction", "projection", "alignment", "attack"}


def test_save_writes_csv_and_json(result, tmp_path):
    paths = result.save(tmp_path)
    assert {
        "findings",
        "diagnostics",
        "knowledge_points",
        "emergence",
        "adversarial",
        "distillation",
        "projection",
        "results",
    } <= paths.keys()
    data = json.loads(paths["results"].read_text())
    assert data["layers"] == LAYERS and data["classes"] == list("abcd")
    assert [f["name"] for f in data["findings"]] == [f["name"] for f in result.findings]
    assert {"network", "layer", "stage", "loss_first", "loss_last", "converged"} <= set(
        data["diagnostics"][0]
    )
    csv_rows = paths["knowledge_points"].read_text().splitlines()
    assert csv_rows[0].startswith("layer,") and len(csv_rows) == 1 + len(LAYERS)
    text = result.summary()
    for title in ("Findings", "Knowledge points per layer", "Diagnostics"):
        assert title in text
    assert "[" in text  # intervals are printed


def test_every_figure_draws(result):
    figures = result.figures()
    assert set(figures) == {
        "findings",
        "sample_space_3d",
        "sample_space_2d",
        "layer_regions",
        "knowledge_counts",
        "knowledge_masks",
        "emergence",
        "sample_evolution",
        "adversarial_change",
        "distillation",
        "loss_curves",
    }
    for fig in figures.values():
        assert isinstance(fig, matplotlib.figure.Figure)
    plt.close("all")


def test_same_seed_same_result(workload, one_torch_thread):
    model, X, y, _ = workload
    kw = dict(layers=["conv_53"], n_repeats=2, random_state=3, **FAST)
    a = _quiet_analyze(model, X, y, **kw)
    b = _quiet_analyze(model, X, y, **kw)
    np.testing.assert_array_equal(a.features.h["conv_53"], b.features.h["conv_53"])
    assert a.knowledge == b.knowledge and a.findings == b.findings


def test_parallel_alignment_equals_sequential(workload, one_torch_thread):
    # one thread in both (the workers run one each): the same arithmetic
    model, X, y, ckpt = workload
    kw = {"layers": ["conv_53"], "checkpoints": ckpt, "n_repeats": 2, "random_state": 0}
    seq = _quiet_analyze(model, X, y, **kw, **FAST)
    par = _quiet_analyze(model, X, y, n_jobs=2, **kw, **FAST)
    for a, b in zip(seq.emergence + seq.knowledge, par.emergence + par.knowledge):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], float):
                assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), key
            else:
                assert a[key] == b[key], key


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tau": 1.0}, "tau"),
        ({"labels": np.zeros(3, int)}, "one per image"),
        ({"labels": np.zeros(60)}, "integer"),
        ({"checkpoints": [3.5]}, "checkpoints"),
        ({"n_repeats": 0}, "n_repeats"),
        ({"held_out": 1.0}, "held_out"),
        ({"n_bootstrap": 5}, "n_bootstrap"),
        ({"layers": ["conv_99"]}, "closest"),
    ],
)
def test_bad_input(workload, kwargs, match):
    model, X, y, _ = workload
    args = {"labels": y, **kwargs}
    with pytest.raises(ValueError, match=match):
        skvmf.analyze(model, X, args.pop("labels"), **args, **FAST)


@pytest.mark.parametrize(
    "images, match",
    [
        (lambda X: X.astype(np.complex64), "complex"),
        (lambda X: np.where(np.arange(X.size).reshape(X.shape) == 7, np.nan, X), "NaN"),
        (lambda X: X * 1e300, "too large for the model's dtype"),
        (lambda X: X.astype(object), "real numbers"),
        (lambda X: X[0], r"\(N, C, H, W\)"),
        (lambda X: X[:, :1], "first convolution takes"),
    ],
    ids=["complex", "nan", "beyond-float32", "object", "rank-3", "channels"],
)
def test_bad_images_are_refused_before_any_network_runs(workload, images, match):
    """Bad images fail at once with a message that names them; the model is
    never called (a forward hook would record it)."""
    model, X, y, _ = workload
    calls = []
    handle = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(ValueError, match=match):
            skvmf.analyze(model, images(np.asarray(X, dtype=np.float64)), y, **FAST)
    finally:
        handle.remove()
    assert calls == []


def test_negative_labels_are_refused(workload):
    model, X, y, _ = workload
    with pytest.raises(ValueError, match="labels must be class indices >= 0"):
        skvmf.analyze(model, X, np.where(np.arange(len(y)) == 0, -1, y), **FAST)
