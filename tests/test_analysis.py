"""analyze(): the pipeline end to end on a tiny network (fast settings).

The properties of the method on the real digits workload are measured in
tests/test_workload.py; here the wiring, tables, files and figures.
"""

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from _helpers import four_class_workload

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
    return skvmf.analyze(
        model,
        X,
        y,
        layers=LAYERS,
        checkpoints=ckpt,
        attack={"n_steps": 2},
        students={"student": student},
        classes=list("abcd"),
        random_state=0,
        **FAST,
    )


def test_tables_are_consistent_with_the_estimators(result, workload):
    _, X, y, _ = workload
    assert result.layers == LAYERS
    assert result.features.h.keys() == set(LAYERS)
    assert [row["layer"] for row in result.knowledge] == LAYERS
    again = result.counter.count(result.features, y)
    for row, ref in zip(result.knowledge, again):
        assert row["mean_count"] == ref["mean_count"]
        assert 0 <= row["reliable_ratio"] <= 1
        assert 0 <= row["vote_accuracy"] <= 1
    p = result.projection
    dnn = result.features.soft_labels.argmax(1)
    assert p["dnn_accuracy"] == pytest.approx((dnn == y).mean())
    assert p["n_images"] == len(y)


def test_emergence_attack_and_distillation_tables(result):
    assert [r["iteration"] for r in result.emergence] == [0, 0, 9, 9]
    assert [f["iteration"] for f in result.emergence_frames] == [0, 9]
    assert [r["layer"] for r in result.adversarial] == LAYERS
    for row in result.adversarial:
        assert 0 <= row["mean_one_minus_cos"] <= 2
        assert 0 <= row["overlap_with_clean_points"] <= 1
    assert 0 <= result.attack["success_rate"] <= 1
    models = [r["model"] for r in result.distillation]
    assert models == ["teacher", "teacher", "student", "student"]
    assert result.timings.keys() >= {"extraction_projection", "alignment", "attack"}


def test_save_writes_csv_and_json(result, tmp_path):
    paths = result.save(tmp_path)
    assert {
        "knowledge_points",
        "emergence",
        "adversarial",
        "distillation",
        "projection",
        "results",
    } <= paths.keys()
    data = json.loads(paths["results"].read_text())
    assert data["layers"] == LAYERS and data["classes"] == list("abcd")
    csv_rows = paths["knowledge_points"].read_text().splitlines()
    assert csv_rows[0].startswith("layer,") and len(csv_rows) == 1 + len(LAYERS)
    assert "Knowledge points per layer" in result.summary()


def test_every_figure_draws(result):
    figures = result.figures()
    assert set(figures) == {
        "sample_space_3d",
        "sample_space_2d",
        "layer_regions",
        "knowledge_counts",
        "knowledge_masks",
        "emergence",
        "sample_evolution",
        "adversarial_change",
        "distillation",
    }
    for fig in figures.values():
        assert isinstance(fig, matplotlib.figure.Figure)
    plt.close("all")


def test_same_seed_same_result(workload):
    model, X, y, _ = workload
    a = skvmf.analyze(model, X, y, layers=["conv_53"], random_state=3, **FAST)
    b = skvmf.analyze(model, X, y, layers=["conv_53"], random_state=3, **FAST)
    np.testing.assert_array_equal(a.features.h["conv_53"], b.features.h["conv_53"])
    assert a.knowledge == b.knowledge


def test_parallel_alignment_equals_sequential(workload):
    model, X, y, ckpt = workload
    kw = dict(layers=["conv_53"], checkpoints=ckpt, random_state=0, **FAST)
    seq = skvmf.analyze(model, X, y, **kw)
    par = skvmf.analyze(model, X, y, n_jobs=2, **kw)
    assert seq.emergence == par.emergence and seq.knowledge == par.knowledge


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tau": 1.0}, "tau"),
        ({"labels": np.zeros(3, int)}, "one per image"),
        ({"labels": np.zeros(60)}, "integer"),
        ({"checkpoints": [3.5]}, "checkpoints"),
        ({"layers": ["conv_99"]}, "closest"),
    ],
)
def test_bad_input(workload, kwargs, match):
    model, X, y, _ = workload
    args = {"labels": y, **kwargs}
    with pytest.raises(ValueError, match=match):
        skvmf.analyze(model, X, args.pop("labels"), **args, **FAST)
