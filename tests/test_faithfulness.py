"""Deletion/insertion faithfulness: curves checked by hand on linear networks.

A network whose logits are ``(w . x, 0)`` has ``p(class 0) = sigmoid(w . x)``:
removing a set of pixels (baseline 0) subtracts their ``w_i x_i`` from the
logit, so every point of every curve is known in closed form.
"""

import warnings

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from _helpers import four_class_workload  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

import skvmf  # noqa: E402
from skvmf.faithfulness import (  # noqa: E402
    _gaussian_blur,
    compare_faithfulness,
    deletion_insertion,
    knowledge_point_map,
    plot_faithfulness,
)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=float)))


class _Linear(torch.nn.Module):
    """Two logits: ``sum(w * x)`` over one channel, and 0."""

    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(torch.as_tensor(w, dtype=torch.float64))

    def forward(self, x):
        z = (x[:, 0].double() * self.w).sum(dim=(1, 2))
        return torch.stack([z, torch.zeros_like(z)], dim=1)


def _trapezoid(x, y):
    return float(np.sum((np.asarray(y[1:]) + np.asarray(y[:-1])) / 2 * np.diff(x)))


W = np.array([[3.0, 2.0], [1.0, 0.0]])


def test_curves_and_areas_match_the_hand_computation():
    net = _Linear(W)
    x = torch.ones(1, 1, 2, 2, dtype=torch.float64)
    r = deletion_insertion(net, x, W[None], target=0, baseline=0.0)
    assert r.fractions.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    # deletion removes w = 3, 2, 1, 0 in turn: logits 6, 3, 1, 0, 0
    deletion = _sigmoid([6, 3, 1, 0, 0])
    insertion = _sigmoid([0, 3, 5, 6, 6])
    np.testing.assert_allclose(r.deletion[0], deletion, rtol=1e-12)
    np.testing.assert_allclose(r.insertion[0], insertion, rtol=1e-12)
    assert r.deletion_auc[0] == pytest.approx(_trapezoid(r.fractions, deletion))
    assert r.insertion_auc[0] == pytest.approx(_trapezoid(r.fractions, insertion))
    assert r.target.tolist() == [0] and r.grid == (2, 2)


def test_region_grid_removes_whole_blocks():
    # a 2 x 2 map on a 4 x 4 image: each cell is a 2 x 2 block of pixels
    w = np.kron(W, np.ones((2, 2)))  # block sums 12, 8, 4, 0
    net = _Linear(w)
    x = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    r = deletion_insertion(net, x, W[None], target=0, baseline=0.0)
    np.testing.assert_allclose(r.deletion[0], _sigmoid([24, 12, 4, 0, 0]))
    np.testing.assert_allclose(r.insertion[0], _sigmoid([0, 12, 20, 24, 24]))


def test_uneven_grid_assigns_pixels_by_floor():
    # a 2 x 1 grid on a 3 x 1 image: row i in cell floor(2 i / 3), so cell 0
    # holds rows 0 and 1 and cell 1 row 2 (as nearest upsampling of the map)
    net = _Linear(np.array([[1.0], [2.0], [4.0]]))
    x = torch.ones(1, 1, 3, 1, dtype=torch.float64)
    r = deletion_insertion(net, x, np.array([[[1.0], [0.0]]]), target=0, baseline=0.0)
    np.testing.assert_allclose(r.deletion[0], _sigmoid([7, 4, 0]))


def test_ties_keep_row_major_order():
    net = _Linear(W)
    x = torch.ones(2, 1, 2, 2, dtype=torch.float64)
    flat = deletion_insertion(net, x, np.zeros((2, 2, 2)), target=0, baseline=0.0)
    raster = np.array([[4.0, 3.0], [2.0, 1.0]])[None].repeat(2, axis=0)
    ordered = deletion_insertion(net, x, raster, target=0, baseline=0.0)
    np.testing.assert_array_equal(flat.deletion, ordered.deletion)
    np.testing.assert_array_equal(flat.insertion, ordered.insertion)


def test_true_importance_beats_its_reverse_and_curves_are_monotone():
    g = np.random.default_rng(0)
    w = g.uniform(0, 1, size=(4, 4))
    net = _Linear(w)
    x = torch.as_tensor(g.uniform(0, 1, size=(5, 1, 4, 4)))
    importance = w[None] * x[:, 0].numpy()
    kw = {"target": 0, "baseline": 0.0}
    best = deletion_insertion(net, x, importance, **kw)
    worst = deletion_insertion(net, x, -importance, **kw)
    assert (best.deletion_auc < worst.deletion_auc).all()
    assert (best.insertion_auc > worst.insertion_auc).all()
    # every removed pixel lowers a positive logit: monotone curves
    for r in (best, worst):
        assert (np.diff(r.deletion, axis=1) <= 1e-12).all()
        assert (np.diff(r.insertion, axis=1) >= -1e-12).all()
        # both curves join the intact image and the baseline
        np.testing.assert_allclose(r.deletion[:, 0], r.insertion[:, -1])
        np.testing.assert_allclose(r.deletion[:, -1], r.insertion[:, 0])
        np.testing.assert_allclose(r.deletion[:, -1], 0.5)
    assert np.isfinite(best.deletion).all() and best.deletion.shape == (5, 17)


def test_target_defaults_to_the_prediction():
    net = _Linear(W)
    x = torch.stack([torch.ones(1, 2, 2), -torch.ones(1, 2, 2)]).double()
    r = deletion_insertion(net, x, np.ones((2, 2, 2)), baseline=0.0)
    assert r.target.tolist() == [0, 1]
    # the tracked probability starts at the predicted class's
    assert (r.deletion[:, 0] > 0.5).all()


def test_baselines():
    net = _Linear(W)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 2, 2, generator=g, dtype=torch.float64)
    mean = deletion_insertion(net, x, np.ones((3, 2, 2)), target=0, baseline="mean")
    expected = _sigmoid(x.mean(dim=(1, 2, 3)).numpy() * W.sum())
    np.testing.assert_allclose(mean.deletion[:, -1], expected)
    array = deletion_insertion(
        net, x, np.ones((3, 2, 2)), target=0, baseline=np.full((1, 1, 2, 2), 0.5)
    )
    np.testing.assert_allclose(array.insertion[:, 0], _sigmoid(0.5 * W.sum()))
    blur = deletion_insertion(
        net, x, np.ones((3, 2, 2)), target=0, baseline="blur", blur_sigma=1.0
    )
    blurred = (_gaussian_blur(x, 1.0)[:, 0] * torch.as_tensor(W)).sum(dim=(1, 2))
    np.testing.assert_allclose(blur.deletion[:, -1], _sigmoid(blurred.numpy()))


def test_blur_keeps_constants_and_mass():
    x = torch.full((1, 2, 5, 7), 3.0, dtype=torch.float64)
    torch.testing.assert_close(_gaussian_blur(x, 2.0), x)
    y = torch.zeros(1, 1, 9, 9, dtype=torch.float64)
    y[0, 0, 4, 4] = 1.0
    b = _gaussian_blur(y, 1.0)
    assert float(b.sum()) == pytest.approx(1.0) and float(b.max()) < 1.0


def test_steps_and_grid_pooling():
    net = _Linear(np.kron(W, np.ones((2, 2))))
    x = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    fine = np.kron(W, np.ones((2, 2)))[None]
    pooled = deletion_insertion(net, x, fine, target=0, baseline=0.0, grid=(2, 2))
    coarse = deletion_insertion(net, x, W[None], target=0, baseline=0.0)
    np.testing.assert_allclose(pooled.deletion, coarse.deletion)
    two = deletion_insertion(net, x, W[None], target=0, baseline=0.0, steps=2)
    assert two.fractions.tolist() == [0.0, 0.5, 1.0]
    np.testing.assert_allclose(two.deletion[0], _sigmoid([24, 4, 0]))
    # pixel maps default to at most 100 steps
    big = deletion_insertion(
        _Linear(np.ones((12, 12))), torch.ones(1, 1, 12, 12), np.ones((1, 12, 12))
    )
    assert len(big.fractions) == 101 and big.fractions[-1] == 1.0


def test_non_finite_logits_are_refused():
    class Ratio(torch.nn.Module):
        def forward(self, x):  # 0 / 0 once the baseline 0 is in
            z = x.flatten(1)[:, :2]
            return z / z

    message = r"model's output \(logits\) produced NaN or infinite values"
    with pytest.raises(ValueError, match=message + " on the modified images"):
        deletion_insertion(Ratio(), torch.ones(1, 1, 2, 2), W[None], baseline=0.0)
    # a NaN logit on the intact images is named at once, before any curve
    with pytest.raises(ValueError, match=message + "$"):
        deletion_insertion(Ratio(), torch.zeros(1, 1, 2, 2), W[None], baseline=1.0)


def test_model_modes_are_restored():
    net = _Linear(W).train()
    deletion_insertion(net, torch.ones(1, 1, 2, 2), W[None], baseline=0.0)
    assert net.training


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"maps": np.ones((2, 1, 2, 2))}, "reduce the colour channels"),
        ({"maps": np.ones((3, 2, 2))}, "3 maps for 2 images"),
        ({"maps": np.full((2, 2, 2), np.nan)}, "NaN"),
        ({"maps": np.ones((2, 3, 3))}, "at most as fine"),
        ({"baseline": "zeros"}, "baseline"),
        ({"baseline": np.ones((3, 2))}, "does not broadcast"),
        ({"baseline": np.array([np.inf])}, "baseline contains NaN"),
        ({"baseline": np.array([1j])}, "baseline must hold real numbers"),
        ({"maps": np.ones((2, 2, 2)) * 1j}, "maps must hold real numbers"),
        ({"maps": np.ones((2, 2, 2), dtype=bool)}, "maps must hold real numbers"),
        ({"images": np.ones((2, 1, 2, 2)) + 0j}, "images must hold real numbers"),
        ({"blur_sigma": 1j}, "blur_sigma"),
        ({"target": 5}, "target"),
        ({"steps": 0}, "steps"),
        ({"steps": 5}, "exceeds the 4 units"),
        ({"grid": (0, 2)}, "grid"),
        ({"grid": (3, 3)}, "finer than the images"),
        ({"images": np.ones((2, 2, 2))}, "images"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_input_is_a_value_error_naming_it(kwargs, match):
    args = {"images": np.ones((2, 1, 2, 2)), "maps": np.ones((2, 2, 2))}
    args.update(kwargs)
    images, maps = args.pop("images"), args.pop("maps")
    with pytest.raises(ValueError, match=match):
        deletion_insertion(_Linear(W), images, maps, **args)


def _linear_problem(n=12):
    g = np.random.default_rng(1)
    w = g.uniform(0, 1, size=(4, 4))
    x = torch.as_tensor(g.uniform(0, 1, size=(n, 1, 4, 4)))
    return _Linear(w), x, w[None] * x[:, 0].numpy()


def test_compare_ranks_methods_against_chance():
    net, x, importance = _linear_problem()
    maps = {"true": importance, "reversed": -importance}
    r = compare_faithfulness(
        net, x, maps, target=0, baseline=0.0, grid=(4, 4), n_bootstrap=200
    )
    rows = {row["method"]: row for row in r.table}
    assert list(rows) == ["true", "reversed", "random"]
    for row in r.table:
        values = [v for v in row.values() if isinstance(v, float)]
        assert np.isfinite(values).all() and row["n_images"] == 12
        for kind in ("deletion_auc", "insertion_auc", "deletion_gain"):
            assert row[kind + "_low"] <= row[kind] <= row[kind + "_high"]
    true, rev, chance = rows["true"], rows["reversed"], rows["random"]
    assert true["deletion_auc"] < chance["deletion_auc"] < rev["deletion_auc"]
    assert true["insertion_auc"] > chance["insertion_auc"] > rev["insertion_auc"]
    # paired gains over the random map: positive for the truth, negative reversed
    assert true["deletion_gain_low"] > 0 and true["insertion_gain_low"] > 0
    assert rev["deletion_gain_high"] < 0 and rev["insertion_gain_high"] < 0
    assert chance["deletion_gain"] == 0.0
    assert r.curves["true"].deletion_band.shape == (2, 17)


def test_compare_puts_every_map_on_the_coarsest_grid_and_is_seeded():
    net, x, importance = _linear_problem(6)
    coarse = importance.reshape(6, 2, 2, 2, 2).mean(axis=(2, 4))
    maps = {"pixels": importance, "regions": coarse}
    a = compare_faithfulness(net, x, maps, target=0, baseline=0.0, n_bootstrap=50)
    b = compare_faithfulness(net, x, maps, target=0, baseline=0.0, n_bootstrap=50)
    assert a.grid == (2, 2)
    np.testing.assert_allclose(
        a.curves["pixels"].deletion, a.curves["regions"].deletion
    )
    assert a.table == b.table
    without = compare_faithfulness(
        net, x, maps, target=0, baseline=0.0, n_bootstrap=50, random_map=False
    )
    assert [row["method"] for row in without.table] == ["pixels", "regions"]
    assert "deletion_gain" not in without.table[0]


def test_compare_bad_input():
    net, x, importance = _linear_problem(4)
    with pytest.raises(ValueError, match="maps is empty"):
        compare_faithfulness(net, x, {})
    with pytest.raises(ValueError, match="'random' entry"):
        compare_faithfulness(net, x, {"random": importance})
    with pytest.raises(ValueError, match=r"maps\['bad'\]"):
        compare_faithfulness(net, x, {"bad": importance[:2]})
    with pytest.raises(ValueError, match="confidence"):
        compare_faithfulness(net, x, {"a": importance}, confidence=1.5)


def test_plot_draws_both_panels():
    net, x, importance = _linear_problem(4)
    r = compare_faithfulness(net, x, {"true": importance}, target=0, n_bootstrap=20)
    fig = plot_faithfulness(r, title="t")
    assert len(fig.axes) == 2
    assert len(fig.axes[0].get_lines()) == 2
    with pytest.raises(ValueError, match="compare_faithfulness"):
        plot_faithfulness(r.table)
    with pytest.raises(ValueError, match="'title' parameter"):
        plot_faithfulness(r, title=1j)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    torch.manual_seed(0)
    model, X, y = four_class_workload(tmp_path_factory.mktemp("ckpt"), lr=4e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # tiny fits
        result = skvmf.analyze(
            model,
            X.numpy(),
            y.numpy(),
            layers=["conv_33", "conv_53"],
            n_repeats=1,
            n_bootstrap=100,
            aligner_params={"max_epochs": 2, "weight_steps": 2, "n_candidates": 10},
            projector_params={"max_iter": 200},
            random_state=0,
        )
    return model, X.numpy(), result


def test_knowledge_point_map_is_the_posterior_of_the_class(analysed):
    model, X, result = analysed
    maps = knowledge_point_map(result)
    idx = result.eval_index
    assert maps.shape == (len(idx), *result.features.grid)
    post = result.counter.region_posteriors(result.features[idx], layer="conv_53")
    predicted = np.asarray(result.features.logits)[idx].argmax(1)
    np.testing.assert_allclose(
        maps.reshape(len(idx), -1), post[np.arange(len(idx)), :, predicted]
    )
    assert ((maps >= 0) & (maps <= 1)).all()
    true = knowledge_point_map(result, layer="conv_33", target="true")
    post = result.counter.region_posteriors(result.features[idx], layer="conv_33")
    np.testing.assert_allclose(
        true.reshape(len(idx), -1), post[np.arange(len(idx)), :, result.labels[idx]]
    )
    given = knowledge_point_map(result, layer="conv_33", target=result.labels[idx])
    np.testing.assert_array_equal(given, true)
    # new images go through the fitted chain: the held-out images again
    again = knowledge_point_map(result, X[idx])
    np.testing.assert_allclose(again, maps, atol=1e-5)
    # the maps feed the comparison directly
    r = compare_faithfulness(model, X[idx], {"kp": maps}, n_bootstrap=20, steps=4)
    assert [row["method"] for row in r.table] == ["kp", "random"]


def test_knowledge_point_map_bad_input(analysed):
    _, X, result = analysed
    with pytest.raises(ValueError, match="was not analysed"):
        knowledge_point_map(result, layer="conv_12")
    with pytest.raises(ValueError, match="needs the images' labels"):
        knowledge_point_map(result, X[:3], target="true")
    with pytest.raises(ValueError, match="target"):
        knowledge_point_map(result, target="best")
    with pytest.raises(ValueError, match="2 classes for"):
        knowledge_point_map(result, target=[0, 1])
    with pytest.raises(ValueError, match="not among the counter's classes"):
        knowledge_point_map(result, X[:2], target=[0, 7])
