"""Figures of the classic views: structure of what is drawn, no pixels compared."""

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from matplotlib.figure import Figure
from torch import nn

from skvmf.featuremaps import OutOfSampleTable, TopActivating, top_activating
from skvmf.plotting._images import (
    _display,
    plot_feature_maps,
    plot_out_of_sample,
    plot_saliency,
    plot_synthesis,
    plot_top_activating,
)
from skvmf.synthesis import SynthesisResult


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_display_undoes_normalisation(rng):
    pixels = rng.uniform(size=(3, 4, 5))
    mean, std = np.array([0.5, 0.4, 0.3]), np.array([0.2, 0.25, 0.3])
    normalised = (pixels - mean[:, None, None]) / std[:, None, None]
    np.testing.assert_allclose(
        _display(normalised, mean, std), np.moveaxis(pixels, 0, -1)
    )
    gray = _display(torch.tensor(rng.uniform(size=(1, 4, 5))))
    assert gray.shape == (4, 5)
    wide = _display(np.array([[[-2.0, 0.0], [2.0, 6.0]]]))
    np.testing.assert_allclose(wide, [[0.0, 0.25], [0.5, 1.0]])
    np.testing.assert_array_equal(_display(np.full((1, 2, 2), 7.0)), 0.0)
    with pytest.raises(ValueError, match="C = 1 or 3"):
        _display(np.zeros((2, 4, 4)))


def test_plot_feature_maps_one_panel_per_channel(rng):
    maps = rng.normal(size=(1, 10, 6, 6))
    fig = plot_feature_maps(maps, title="conv1")
    assert isinstance(fig, Figure) and len(fig.axes) == 10
    assert [ax.get_title() for ax in fig.axes] == [f"ch {c}" for c in range(10)]
    np.testing.assert_array_equal(fig.axes[3].images[0].get_array(), maps[0, 3])
    fig2 = plot_feature_maps(maps[0], channels=[7, 2], shared_scale=True, fig=fig)
    assert fig2 is fig and len(fig.axes) == 2
    assert fig.axes[0].images[0].get_clim() == fig.axes[1].images[0].get_clim()
    assert len(plot_feature_maps(maps[0], max_channels=4).axes) == 4
    with pytest.raises(ValueError, match=r"\(K, H, W\)"):
        plot_feature_maps(rng.normal(size=(2, 3, 4, 4)))
    with pytest.raises(ValueError, match="channels"):
        plot_feature_maps(maps[0], channels=[10])


def test_plot_saliency_rows_and_overlays(rng):
    images = rng.uniform(size=(3, 3, 8, 8))
    maps = {
        "Grad-CAM": rng.uniform(size=(3, 8, 8)),
        "CAM": rng.normal(size=(3, 2, 2)),
        "gradient": rng.normal(size=(3, 3, 8, 8)),
    }
    fig = plot_saliency(images, maps, titles=["a", "b", "c"])
    assert isinstance(fig, Figure) and len(fig.axes) == 3 * 4
    first_row = fig.axes[:4]
    assert [ax.get_title() for ax in first_row] == [
        "image",
        "Grad-CAM",
        "CAM",
        "gradient",
    ]
    # an overlay is the image plus the map stretched over the same pixels
    cam_ax = fig.axes[2]
    assert len(cam_ax.images) == 2
    assert tuple(cam_ax.images[1].get_extent()) == (-0.5, 7.5, 7.5, -0.5)
    np.testing.assert_allclose(
        fig.axes[3].images[1].get_array(), np.abs(maps["gradient"][0]).max(axis=0)
    )
    assert len(plot_saliency(images[:1], maps["CAM"][:1]).axes) == 2
    with pytest.raises(ValueError, match="one entry per image"):
        plot_saliency(images, {"a": maps["CAM"], "b": maps["CAM"][:2]})
    with pytest.raises(ValueError, match="3 images but 2"):
        plot_saliency(images, maps["CAM"][:2])


def test_plot_top_activating_images_and_histograms():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU())
    x = torch.rand(15, 1, 6, 6)
    res = top_activating(net, x, "1", k=4)
    fig = plot_top_activating(x, res, bins=7)
    assert isinstance(fig, Figure) and len(fig.axes) == 3 * 5
    # row of channel 1: its top images in order, then the histogram
    row = fig.axes[5:10]
    for col, idx in enumerate(res.indices[1]):
        np.testing.assert_allclose(row[col].images[0].get_array(), x[idx, 0].numpy())
        assert row[col].get_title().startswith(f"#{idx}:")
    counts = [p.get_height() for p in row[4].patches if hasattr(p, "get_height")]
    assert len(counts) >= 7 and sum(counts[:7]) == 15
    sub = plot_top_activating(x, res, channels=[2])
    assert len(sub.axes) == 5
    with pytest.raises(ValueError, match="not analysed"):
        plot_top_activating(x, res, channels=[5])


def test_plot_top_activating_from_a_dataset():
    images = torch.rand(6, 3, 4, 4)
    dataset = torch.utils.data.TensorDataset(images, torch.arange(6))
    res = TopActivating(
        layer="x",
        channels=np.array([0]),
        indices=np.array([[5, 0]]),
        top_values=np.array([[2.0, 1.0]]),
        activations=np.linspace(0, 2, 6)[:, None],
        reduce="max",
    )
    fig = plot_top_activating(dataset, res)
    assert len(fig.axes) == 3
    np.testing.assert_allclose(
        fig.axes[0].images[0].get_array(), np.moveaxis(images[5].numpy(), 0, -1)
    )


def test_plot_synthesis_panels(rng):
    n, steps = 3, 12
    start, final = rng.uniform(size=(2, n, 1, 5, 5))
    result = SynthesisResult(
        images=final,
        start_images=start,
        trace=np.cumsum(rng.uniform(size=(steps, n)), axis=0),
        penalty_trace=np.zeros((steps, n)),
        objective_start=np.zeros(n),
        objective_final=np.ones(n),
        pixel_change=np.abs(final - start)[:, 0],
    )
    fig = plot_synthesis(result)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert isinstance(fig, Figure) and len(panels) == 4 * n
    assert [ax.get_title() for ax in panels[:4]] == [
        "start",
        "optimised",
        "pixel change",
        "objective",
    ]
    np.testing.assert_allclose(panels[5].images[0].get_array(), final[1, 0])
    np.testing.assert_allclose(panels[6].images[0].get_array(), result.pixel_change[1])
    np.testing.assert_allclose(panels[7].lines[0].get_ydata(), result.trace[:, 1])
    assert len(plot_synthesis(result, index=[2]).axes) == 5
    with pytest.raises(ValueError, match="out of range"):
        plot_synthesis(result, index=3)


def test_plot_out_of_sample_heatmap():
    table = OutOfSampleTable(
        groups=["horse", "noise"],
        class_names=["cat", "dog"],
        counts=np.array([[11, 29], [8, 0]]),
    )
    fig0, ax = plt.subplots()
    fig = plot_out_of_sample(table, ax=ax)
    assert fig is fig0 and len(fig.axes) == 2  # heatmap and colour bar
    np.testing.assert_allclose(ax.images[0].get_array(), table.percent)
    assert [t.get_text() for t in ax.texts] == ["27.5", "72.5", "100.0", "0.0"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["horse", "noise"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog"]
    plain = plot_out_of_sample(table.to_dict(), annotate=False, colorbar=False)
    assert len(plain.axes) == 1 and not plain.axes[0].texts
    with pytest.raises(ValueError, match="same classes"):
        plot_out_of_sample({"a": {"x": 1.0}, "b": {"y": 2.0}})
    with pytest.raises(ValueError, match="non-empty"):
        plot_out_of_sample({})


# ---------------------------------------------------------------------------
# bad input: a clear error naming the argument, never a silent wrong figure
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: plot_feature_maps(np.full((2, 3, 3), np.nan)), "maps contains NaN"),
        (lambda: plot_feature_maps(np.ones((2, 3, 3)) * 1j), "maps must be real"),
        (lambda: plot_feature_maps(np.zeros((0, 3, 3))), "maps is empty"),
        (lambda: plot_feature_maps(np.ones((2, 3, 3)), ncols=0), "ncols"),
        (lambda: plot_feature_maps(np.array([["a"]])), "maps must be a numeric"),
        (
            lambda: plot_saliency(np.zeros((2, 8, 8, 3)), np.zeros((2, 8, 8))),
            r"channels last\? pass images.transpose\(0, 3, 1, 2\)",
        ),
        (
            lambda: plot_saliency(np.zeros((1, 3, 4, 4)), {"cam": [[[np.inf]]]}),
            r"maps\['cam'\] contains NaN or infinite",
        ),
        (
            lambda: plot_saliency(np.zeros((1, 3, 4, 4)), np.zeros((1, 4, 4)), alpha=2),
            "alpha",
        ),
        (
            lambda: plot_saliency(
                np.zeros((1, 3, 4, 4)), np.zeros((1, 4, 4)), mean=[0.5, 0.5]
            ),
            "mean must be one value or one per channel",
        ),
        (
            lambda: plot_out_of_sample({"a": {"x": 150.0}}),
            r"percentages in \[0, 100\]",
        ),
        (lambda: plot_out_of_sample({"a": {"x": np.nan}}), r"table\['a'\]\['x'\]"),
        (lambda: plot_synthesis(object()), "result must be a result with"),
    ],
)
def test_bad_input_is_a_clear_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_top_activating_refuses_nan_activations_and_foreign_indices():
    res = TopActivating(
        layer="x",
        channels=np.array([0]),
        indices=np.array([[5, 0]]),
        top_values=np.array([[2.0, 1.0]]),
        activations=np.array([[0.0], [np.nan]]),
        reduce="max",
    )
    with pytest.raises(ValueError, match="result.activations contains NaN"):
        plot_top_activating(np.zeros((6, 1, 4, 4)), res)
    res.activations = np.zeros((6, 1))
    with pytest.raises(ValueError, match="image 5; images has 3"):
        plot_top_activating(np.zeros((3, 1, 4, 4)), res)


@settings(max_examples=15, deadline=None)
@given(st.integers(-300, 300))
def test_colours_are_scale_invariant(exponent):
    # a colour scale sees the same picture at every magnitude: the panels'
    # colours and the min-max scaled image are those of the unscaled input
    rng = np.random.default_rng(5)
    maps = rng.normal(size=(2, 4, 4))
    scale = 10.0**exponent
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        ref = plot_feature_maps(maps, shared_scale=True)
        fig = plot_feature_maps(maps * scale, shared_scale=True)
        shown = _display(maps[:1] * scale)
    for a, b in zip(ref.axes, fig.axes):
        (ia,), (ib,) = a.images, b.images
        np.testing.assert_allclose(
            ib.to_rgba(ib.get_array()), ia.to_rgba(ia.get_array())
        )
    np.testing.assert_allclose(shown, _display(maps[:1]), atol=1e-12)
    plt.close("all")


_DTYPES = st.sampled_from(
    [np.float64, np.float32, np.int64, np.uint8, np.bool_, np.complex128]
)


@settings(max_examples=25, deadline=None)
@given(
    hnp.arrays(
        _DTYPES,
        hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=4),
        elements={"allow_nan": True, "allow_infinity": True},
    ),
)
def test_random_arrays_give_a_figure_or_a_value_error(arr):
    # any shape and dtype: a Figure, or a ValueError, never another exception
    for draw in (
        lambda: plot_feature_maps(arr),
        lambda: plot_saliency(np.zeros((len(arr) if arr.ndim else 1, 1, 4, 4)), arr),
    ):
        try:
            fig = draw()
        except ValueError:
            continue
        assert isinstance(fig, Figure)
        plt.close(fig)
