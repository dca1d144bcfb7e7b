"""Figures of the classic views: structure of what is drawn, no pixels compared."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
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
