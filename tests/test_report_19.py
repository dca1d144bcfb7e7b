"""The report's click panels and clean-against-adversarial view (issue 19):
the data the page embeds, checked without a browser."""

import base64
import io
import json
import re
import types
import warnings

import numpy as np
import pytest
from _helpers import four_class_workload
from PIL import Image
from sklearn.exceptions import ConvergenceWarning

import skvmf
from skvmf.plotting._interactive import plot_adversarial_regions_interactive
from skvmf.report import _points_data, _thumbnails, write_report

LAYERS = ["conv_33", "conv_53"]


def _sprite(data):
    """The embedded sprite sheet as an array."""
    head, b64 = data["sprite"].split(",", 1)
    assert head == "data:image/png;base64"
    with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
        return np.asarray(im)


def _tile(sheet, slot, size, columns):
    h, w = size
    r, c = divmod(slot, columns)
    return sheet[r * h : (r + 1) * h, c * w : (c + 1) * w]


def _stub(images, rows, n, *, mean=None, std=None, grid=(4, 4)):
    """What the panels read from a result, without running an analysis."""
    return types.SimpleNamespace(
        display_images=images,
        display_index=np.asarray(rows),
        mean=mean,
        std=std,
        labels=np.arange(n) % 3,
        classes=["zero", "one", "<two>"],
        features=types.SimpleNamespace(grid=grid),
        emergence_labels=None,
        eval_index=None,
    )


def test_thumbnails_are_the_kept_images_unnormalised():
    rng = np.random.default_rng(0)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    pixels = rng.uniform(0, 1, size=(5, 3, 12, 10))
    images = (pixels - np.reshape(mean, (1, 3, 1, 1))) / np.reshape(std, (1, 3, 1, 1))
    rows = [7, 2, 9, 0, 4]
    data = _points_data(_stub(images, rows, 10, mean=mean, std=std), ["sample_space"])
    assert data["size"] == [12, 10] and data["columns"] == 3  # ceil(sqrt(5))
    assert data["grid"] == [4, 4]
    assert data["views"] == {"plot3d-sample_space": {"points": "image"}}
    sheet = _sprite(data)
    assert sheet.shape == (2 * 12, 3 * 10, 3)
    assert set(data["images"]) == {str(r) for r in rows}
    for k, row in enumerate(rows):
        slot, name = data["images"][str(row)]
        assert slot == k and name == ["zero", "one", "<two>"][row % 3]
        expected = np.round(pixels[k].transpose(1, 2, 0) * 255)
        tile = _tile(sheet, slot, (12, 10), 3).astype(float)
        assert np.abs(tile - expected).max() <= 1


def test_thumbnails_grey_and_shrunk():
    rng = np.random.default_rng(1)
    grey = rng.uniform(0, 1, size=(2, 1, 96, 64)).repeat(3, axis=1)
    png, rows, size, columns = _thumbnails(_stub(grey, [1, 0], 2))
    # the longest side is brought to 48 px; equal channels stored as grey
    assert size == (48, 32) and columns == 2 and list(rows) == [1, 0]
    with Image.open(io.BytesIO(png)) as im:
        assert im.mode == "L" and im.size == (64, 48)
        sheet = np.asarray(im).astype(float)
    # each thumbnail pixel is the mean of its 2 x 2 block (min-max scaled)
    for k in range(2):
        img = grey[k, 0]
        img = (img - img.min()) / (img.max() - img.min())
        block = img.reshape(48, 2, 32, 2).mean(axis=(1, 3)) * 255
        assert np.abs(sheet[:, 32 * k : 32 * (k + 1)] - block).max() <= 1.5


def test_no_kept_image_gives_no_sprite():
    data = _points_data(_stub(None, [], 4), ["layer_regions"])
    assert data["sprite"] is None and data["images"] == {}
    assert data["views"]["plot3d-layer_regions"] == {"points": "region"}


# ---------------------------------------------------------------------------
# the clean-against-adversarial view, from a hand-made structure
# ---------------------------------------------------------------------------
def _pairs(rng, m=40, n_images=10, n_regions=16):
    clean = rng.normal(size=(m, 3))
    return {
        "image": rng.integers(0, n_images, m),
        "region": rng.integers(0, n_regions, m),
        "clean": clean,
        "adversarial": clean + rng.normal(scale=0.3, size=(m, 3)),
        "fooled": rng.random(m) < 0.5,
    }


def _segments(trace):
    """(start, end) of each line segment of a trace (broken by NaN rows)."""
    xyz = np.c_[trace.x, trace.y, trace.z].astype(float)
    assert np.isnan(xyz[2::3]).all() and np.isfinite(xyz[0::3]).all()
    return list(zip(xyz[0::3], xyz[1::3]))


def test_adversarial_view_joins_each_region_to_its_attacked_self():
    rng = np.random.default_rng(0)
    emb = {"early": _pairs(rng), "late": _pairs(rng, m=30)}
    mu = np.eye(3)
    fig = plot_adversarial_regions_interactive(
        emb,
        mu,
        classes=["a", "b", "c"],
        image_ids=[f"im{i}" for i in range(10)],
        grid=(4, 4),
    )
    steps = fig.layout.sliders[0].steps
    assert [s.label for s in steps] == ["early", "late"]
    for k, pairs in enumerate(emb.values()):
        shown = [t for t, v in zip(fig.data, steps[k].args[0]["visible"]) if v]
        by_name = {t.name: t for t in shown if t.name}
        clean, attacked = by_name["clean"], by_name["attacked"]
        keys = [f"{i}:{r}" for i, r in zip(pairs["image"], pairs["region"])]
        assert list(clean.ids) == keys and list(attacked.ids) == keys
        np.testing.assert_allclose(
            np.c_[clean.x, clean.y, clean.z], pairs["clean"], rtol=1e-6
        )
        np.testing.assert_allclose(
            np.c_[attacked.x, attacked.y, attacked.z], pairs["adversarial"], rtol=1e-6
        )
        # hover: the image's id, its region on the grid, whether it was fooled
        for row, i, r, f in zip(
            clean.customdata, pairs["image"], pairs["region"], pairs["fooled"]
        ):
            assert row[0] == f"im{i}" and row[1] == f"({r // 4}, {r % 4})"
            assert row[2] == ("yes" if f else "no")
        # one line per pair, from the clean point to the attacked one; the
        # fooled images' lines apart from the others
        for name, want in (
            ("moved (image fooled)", pairs["fooled"]),
            ("moved (not fooled)", ~pairs["fooled"]),
        ):
            segments = _segments(by_name[name])
            assert len(segments) == want.sum()
            for (a, b), j in zip(segments, np.flatnonzero(want)):
                np.testing.assert_allclose(a, pairs["clean"][j], rtol=1e-5)
                np.testing.assert_allclose(b, pairs["adversarial"][j], rtol=1e-5)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda e: e["l"].pop("fooled"), "lacks"),
        (lambda e: e["l"].update(adversarial=np.zeros((3, 3))), "same"),
        (lambda e: e["l"].update(region=np.full(40, 16)), "region"),
        (lambda e: e["l"].update(image=np.full(40, 10)), "image"),
        (lambda e: e["l"].update(fooled=np.zeros(40, dtype=float)), "booleans"),
        (lambda e: e.update(l="x"), "must be a dict"),
    ],
)
def test_adversarial_view_bad_input(change, match):
    emb = {"l": _pairs(np.random.default_rng(0))}
    change(emb)
    with pytest.raises(ValueError, match=match):
        plot_adversarial_regions_interactive(emb, np.eye(3), n_images=10, grid=(4, 4))


# ---------------------------------------------------------------------------
# the page: its views carry where each point comes from
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def result(tmp_path_factory):
    model, X, y = four_class_workload(tmp_path_factory.mktemp("ckpt"), random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # tiny fits
        return skvmf.analyze(
            model,
            X.numpy(),
            y.numpy(),
            layers=LAYERS,
            n_repeats=1,
            n_bootstrap=100,
            random_state=0,
            aligner_params={"max_epochs": 1, "weight_steps": 1, "n_candidates": 5},
            projector_params={"max_iter": 50},
        )


def _array(value):
    """A plotly JSON array: a list, or base64 'bdata' of a numpy dtype."""
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
    return np.asarray(value, dtype=float)


def _page_parts(index):
    page = index.read_text(encoding="utf-8")
    match = re.search(
        r'<script type="application/json" id="skvmf-points">(.*?)</script>', page
    )
    figure = re.compile(
        r'\(function\(\)\{var f=(\{.*\});Plotly\.newPlot\("plot3d-(\w+)"'
    )
    specs = {}
    for body in re.findall(r"<script>(.*?)</script>", page, re.S):
        found = figure.match(body)
        if found:
            specs[found.group(2)] = json.loads(found.group(1))
    return page, json.loads(match.group(1)), specs


def _handmade(result, rng):
    """An attack's regions in the layout analyze() keeps (hand-made)."""
    n, r = len(result.labels), int(np.prod(result.features.grid))
    return {
        layer: _pairs(rng, m=50, n_images=n, n_regions=r) for layer in result.layers
    }


def test_page_embeds_the_points_images(result, tmp_path):
    result.adversarial_embeddings = _handmade(result, np.random.default_rng(0))
    try:
        index = write_report(result, tmp_path / "with", dpi=20)
    finally:
        result.adversarial_embeddings = None
    page, data, specs = _page_parts(index)
    rows = [int(i) for i in result.thumbnail_index]
    assert sorted(map(int, data["images"])) == sorted(rows)
    # the display images come first, then every other analysed image
    assert rows[: len(result.display_index)] == list(result.display_index)
    assert sorted(rows) == list(range(len(result.labels)))
    assert data["grid"] == list(result.features.grid)
    assert set(specs) == {"sample_space", "layer_regions", "adversarial_regions"}
    # the new view sits in the attack's section, with its panel beside it
    section = re.search(r'<section id="adversarial">(.*?)</section>', page, re.S)
    assert 'id="plot3d-adversarial_regions"' in section.group(1)
    assert 'data-skvmf-thumb-for="plot3d-adversarial_regions"' in section.group(1)
    for name in specs:
        assert page.count(f'data-skvmf-thumb-for="plot3d-{name}"') == 1
    # every drawn point names its image row (and region), within range
    g = np.asarray(result.features.g)
    for name, spec in specs.items():
        keys = [k for t in spec["data"] for k in t.get("ids", [])]
        assert keys, name
        for key in keys:
            parts = [int(v) for v in key.split(":")]
            assert 0 <= parts[0] < len(g)
            assert str(parts[0]) in data["images"], "a point without its picture"
            assert len(parts) == (1 if name == "sample_space" else 2)
            if len(parts) == 2:
                assert 0 <= parts[1] < np.prod(result.features.grid)
    for trace in specs["sample_space"]["data"]:
        if "ids" in trace:
            x = _array(trace["x"])
            rows_of = [int(key) for key in trace["ids"]]
            np.testing.assert_allclose(x, g[rows_of, 0], rtol=1e-5, atol=1e-6)
    # the thumbnails are the kept images, in the page's sprite
    sheet = _sprite(data)
    h, w = data["size"]
    for row, img in zip(rows, result.display_images):
        slot = data["images"][str(row)][0]
        tile = _tile(sheet, slot, (h, w), data["columns"]).astype(float)
        lo, hi = img.min(), img.max()
        expected = np.round((img - lo) / (hi - lo) * 255).transpose(1, 2, 0)
        assert np.abs(tile - expected).max() <= 1
    # small: every kept image costs well under a kilobyte of page
    embedded = len(re.search(r'id="skvmf-points">(.*?)</script>', page).group(1))
    assert embedded < 1500 * len(rows), embedded


def test_no_adversarial_view_without_its_regions(result, tmp_path):
    assert getattr(result, "adversarial_embeddings", None) is None
    _, _, specs = _page_parts(write_report(result, tmp_path / "without", dpi=20))
    assert set(specs) == {"sample_space", "layer_regions"}
    empty = dict.fromkeys(LAYERS)
    result.adversarial_embeddings = empty
    try:
        _, _, specs = _page_parts(write_report(result, tmp_path / "empty", dpi=20))
    finally:
        result.adversarial_embeddings = None
    assert "adversarial_regions" not in specs


def test_analysis_keeps_a_thumbnail_of_every_image(result):
    from skvmf._utils.figures import thumbnails

    rows = np.asarray(result.thumbnail_index)
    assert len(rows) == len(set(rows.tolist())) == len(result.labels)
    assert result.thumbnails.dtype == np.uint8
    assert max(result.thumbnails.shape[1:3]) <= 48
    # the display images' thumbnails are theirs, drawn as the figures draw them
    n = len(result.display_index)
    again = thumbnails(result.display_images, np.arange(n), result.mean, result.std)
    np.testing.assert_array_equal(result.thumbnails[:n], again)
