"""write_report(): the files, their numbers, the self-contained page."""

import base64
import dataclasses
import html
import json
import re
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _helpers import four_class_workload, read_csv, same_cell
from PIL import Image  # noqa: E402
from plotly.offline import get_plotlyjs  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

import skvmf  # noqa: E402
from skvmf.models import make_classifier  # noqa: E402
from skvmf.report import write_report  # noqa: E402

FAST = {
    "aligner_params": {"max_epochs": 2, "weight_steps": 2, "n_candidates": 10},
    "projector_params": {"max_iter": 200},
}
LAYERS = ["conv_33", "conv_53"]
CLASSES = ["a", "<b>&", 'c"', "d"]
ALL_FIGURES = {
    "findings",
    "loss_curves",
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
OPTIONAL_FIGURES = {
    "emergence",
    "sample_evolution",
    "adversarial_change",
    "distillation",
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("ckpt")
    model, X, y = four_class_workload(ckpt, random_state=0)
    student = make_classifier(
        "vgg16", 4, width=0.0625, input_size=16, batch_norm=True, random_state=1
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # tiny fits
        return skvmf.analyze(
            model,
            X.numpy(),
            y.numpy(),
            layers=LAYERS,
            checkpoints=ckpt,
            attack={"n_steps": 2},
            students={"student": student},
            classes=CLASSES,
            n_repeats=2,
            n_bootstrap=200,
            random_state=0,
            **FAST,
        )


@pytest.fixture(scope="module")
def plain(result):
    """The same result with only what analyze() always computes."""
    return dataclasses.replace(
        result,
        emergence=None,
        emergence_frames=None,
        adversarial=None,
        attack=None,
        adversarial_embeddings=None,
        distillation=None,
    )


TITLE = "Run <script>alert('x')</script> & co"
EXTRA = {
    "total time (s)": 12.5,
    "note": "<i>hand-made</i>",
    "training history": [
        {"epoch": 1, "loss": 0.75, "tag": "<b>first</b>"},
        {"epoch": 2, "loss": 0.25, "tag": "second"},
    ],
    "config": {"lr": 0.004, "optimizer": {"name": "adam"}},
}


@pytest.fixture(scope="module")
def report(result, tmp_path_factory):
    directory = tmp_path_factory.mktemp("report")
    before = set(plt.get_fignums())
    index = write_report(result, directory, title=TITLE, extra=EXTRA)
    return directory, index, before


def _html(index):
    return index.read_text(encoding="utf-8")


def _without_scripts(page):
    # plotly's bundle holds strings such as data: URLs of its own
    return re.sub(r"<script\b[^>]*>.*?</script>", "", page, flags=re.S)


def test_returns_index_and_writes_every_file(report, result):
    directory, index, _ = report
    assert index == directory / "index.html" and index.is_file()
    pngs = {p.stem for p in (directory / "figures").glob("*.png")}
    assert pngs == ALL_FIGURES
    data = {p.name for p in (directory / "data").iterdir()}
    tables = {f"{name}.csv" for name in result.tables}
    assert tables | {"results.json", "extra.json"} <= data
    # the numbers of every figure
    assert {f"{name}.json" for name in ALL_FIGURES} <= data
    # a table given in extra
    assert "training_history.csv" in data


def test_figures_are_valid_pngs_embedded_byte_for_byte(report):
    directory, index, _ = report
    page = _without_scripts(_html(index))
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == len(ALL_FIGURES)
    files = {}
    for path in (directory / "figures").glob("*.png"):
        raw = path.read_bytes()
        assert raw.startswith(PNG_SIGNATURE)
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            assert im.size[0] > 100 and im.size[1] > 100
        files[path.stem] = raw
    decoded = [base64.b64decode(b64) for b64 in embedded]
    assert sorted(decoded) == sorted(files.values())
    for name, raw in files.items():
        block = re.search(
            rf'<figure id="fig-{name}"><img [^>]*src="data:image/png;base64,([^"]+)"',
            page,
        )
        assert base64.b64decode(block.group(1)) == raw


VIEWS = {"sample_space", "layer_regions", "sample_evolution", "adversarial_regions"}
# the script that draws one interactive view: its figure JSON, then the call
FIGURE_SCRIPT = re.compile(
    r'\(function\(\)\{var f=(\{.*\});Plotly\.newPlot\("plot3d-(\w+)",f\.data,'
    r'f\.layout,\{"displaylogo":false,"responsive":true\}\);\}\)\(\);',
    re.S,
)


def _scripts(page):
    """(attributes, body) of every <script> element."""
    return re.findall(r"<script\b([^>]*)>(.*?)</script>", page, re.S | re.I)


def _view_specs(page):
    """Figure JSON of every interactive view, by name."""
    specs = {}
    for _, body in _scripts(page):
        match = FIGURE_SCRIPT.fullmatch(body)
        if match:
            specs[match.group(2)] = json.loads(match.group(1))
    return specs


def _array(value):
    """A plotly JSON array: a list, or base64 'bdata' of a numpy dtype."""
    if isinstance(value, dict):
        raw = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        return raw.reshape(value["shape"]) if "shape" in value else raw
    return np.asarray(value)


def test_page_is_self_contained(report):
    _, index, _ = report
    full = _html(index)
    assert full.startswith("<!DOCTYPE html>")
    assert "<style>" in full
    # scripts: plotly's bundle from the installed package, inline and once,
    # then one figure script per view; none loads anything (no attribute)
    scripts = _scripts(full)
    # but the click panels' data: JSON, not run, once
    data = ' type="application/json" id="skvmf-points"'
    assert [attrs for attrs, _ in scripts].count(data) == 1
    scripts = [s for s in scripts if s[0] != data]
    assert all(attrs == "" for attrs, _ in scripts)
    bundle = get_plotlyjs()
    assert [body for _, body in scripts].count(bundle) == 1
    assert scripts[0][1] == bundle  # in <head>, before any figure needs it
    # the last script fills the click panels beside the views
    figures = [body for _, body in scripts[1:-1]]
    assert all(FIGURE_SCRIPT.fullmatch(body) for body in figures)
    assert "plotly_click" in scripts[-1][1]
    assert set(_view_specs(full)) == VIEWS and len(figures) == len(VIEWS)
    # the rest of the page: the same rules as a page without scripts
    page = _without_scripts(full)
    assert not re.search(r"<link\b", page, re.I)
    assert not re.search(r"<script\b", page, re.I)
    assert not re.search(r"(src|href)\s*=\s*\"(https?:|//)", page, re.I)
    assert "url(" not in page  # no external CSS resource
    for src in re.findall(r'src="([^"]*)"', page):
        assert src.startswith("data:image/png;base64,")
    # every link is a file of the report folder or an anchor
    directory = index.parent
    for href in re.findall(r'href="([^"]*)"', page):
        if href.startswith("#"):
            assert f'id="{href[1:]}"' in page
        else:
            assert (directory / href).is_file(), href


def test_tables_csv_match_results_json(report, result):
    directory, _, _ = report
    saved = json.loads((directory / "data" / "results.json").read_text())
    assert saved["layers"] == LAYERS and saved["classes"] == CLASSES
    assert set(saved["tables"]) == set(result.tables)
    for name, records in saved["tables"].items():
        rows = read_csv(directory / "data" / f"{name}.csv")
        assert len(rows) == len(records), name
        for row, ref in zip(rows, records):
            assert set(row) == set(ref), name
            for key, value in ref.items():
                assert same_cell(row[key], value), (name, key, row[key], value)
    # and against the result itself
    for row, ref in zip(saved["tables"]["knowledge_points"], result.knowledge):
        assert row["mean_count"] == pytest.approx(ref["mean_count"])


def test_sample_space_data(report, result):
    directory, _, _ = report
    g = np.asarray(result.features.g, dtype=float)
    d3 = json.loads((directory / "data" / "sample_space_3d.json").read_text())
    np.testing.assert_allclose(d3["g"], g, rtol=1e-12)
    np.testing.assert_allclose(d3["directions"], result.features.directions)
    np.testing.assert_allclose(d3["strength"], np.linalg.norm(g, axis=1))
    assert d3["labels"] == result.labels.tolist() and d3["classes"] == CLASSES
    rows = read_csv(directory / "data" / "sample_space_3d.csv")
    assert len(rows) == len(g)
    np.testing.assert_allclose(
        [[float(r[f"x{k}"]) for k in range(3)] for r in rows], g, rtol=1e-12
    )
    # 2-D view: the plane of the two largest principal axes about the origin,
    # so the squared lengths kept are the two largest eigenvalues of g^T g
    d2 = json.loads((directory / "data" / "sample_space_2d.json").read_text())
    coords = np.asarray(d2["g_2d"])
    assert coords.shape == (len(g), 2)
    eig = np.sort(np.linalg.eigvalsh(g.T @ g))[::-1]
    assert (coords**2).sum() == pytest.approx(eig[:2].sum(), rel=1e-9)
    axes = np.asarray(d2["axes"])
    np.testing.assert_allclose(axes.T @ axes, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(coords, g @ axes, rtol=1e-9, atol=1e-12)


def test_interactive_views_in_their_sections(report, result):
    _, index, _ = report
    page = _html(index)
    for section, name in (
        ("projection", "sample_space"),
        ("regions", "layer_regions"),
        ("emergence", "sample_evolution"),
    ):
        body = re.search(rf'<section id="{section}">(.*?)</section>', page, re.S)
        container = f'<div id="plot3d-{name}" data-skvmf-view="3d"'
        assert container in body.group(1), name
        # above the PNG of the same figure, which is kept for papers
        assert body.group(1).index(container) < body.group(1).index("<img ")
    assert page.count('data-skvmf-view="3d"') == len(VIEWS)
    specs = _view_specs(page)
    hover = " ".join(t.get("hovertemplate", "") for t in specs["layer_regions"]["data"])
    for field in ("image", "region", "class:", "predicted:", "strength"):
        assert field in hover, field
    assert "knowledge point: yes, points to" in hover and "knowledge point: no" in hover
    # class names reach plotly escaped (it reads tags in labels)
    names = {t.get("name") for t in specs["sample_space"]["data"]}
    assert "&lt;b&gt;&amp;" in names and "<b>&" not in names
    steps = specs["layer_regions"]["layout"]["sliders"][0]["steps"]
    assert [s["label"] for s in steps] == LAYERS
    steps = specs["sample_evolution"]["layout"]["sliders"][0]["steps"]
    assert [s["label"] for s in steps] == ["0", "9"]


def test_interactive_regions_are_the_drawn_regions(report, result):
    """Each layer's slider step shows exactly the regions of
    data/layer_regions.json, at their h, with their knowledge-point
    category."""
    directory, index, _ = report
    spec = _view_specs(_html(index))["layer_regions"]
    regions = json.loads((directory / "data" / "layer_regions.json").read_text())
    names = [t.get("name") for t in spec["data"]]
    classes = regions["classes"]
    width = regions["grid"][1]
    ids = [int(i) for i in result.features.image_ids]
    for step, layer in zip(spec["layout"]["sliders"][0]["steps"], LAYERS):
        ref = regions["layers"][layer]
        expected = {
            (ids[i], r): (np.asarray(h[:3]), c)
            for i, r, h, c in zip(
                ref["image"], ref["region"], ref["h"], ref["category"]
            )
        }
        seen = {}
        for trace, shown, name in zip(spec["data"], step["args"][0]["visible"], names):
            if not shown or "customdata" not in trace:
                continue
            xyz = np.stack([_array(trace[k]) for k in "xyz"], axis=1)
            category = -1 if name == "not a knowledge point" else None
            for point, row in zip(xyz, trace["customdata"]):
                r, c = (int(v) for v in row[1].strip("()").split(","))
                seen[(int(row[0]), r * width + c)] = (point, category, name)
        assert seen.keys() == expected.keys(), layer
        for key, (point, category, name) in seen.items():
            h, c = expected[key]
            np.testing.assert_allclose(point, h, rtol=1e-5, atol=1e-6)
            if category == -1:
                assert c == -1
            else:
                # the counter's classes are the label indices into CLASSES
                label = CLASSES[int(classes[c])]
                assert c >= 0 and name == html.escape(label, quote=False)


def test_result_draws_interactive_figures(result):
    go = pytest.importorskip("plotly.graph_objects")
    fig = result.plot_sample_space(interactive=True)
    assert isinstance(fig, go.Figure)
    points = [t for t in fig.data if t.customdata is not None]
    assert sum(len(t.x) for t in points) == len(result.labels)
    # hover: image id, predicted class and strength of every point
    predicted = np.asarray(result.features.logits).argmax(1)
    ids = [str(i) for i in result.features.image_ids]
    g = np.asarray(result.features.g, float)
    for trace in points:
        for image, pred, strength in trace.customdata:
            k = ids.index(image)
            assert pred == html.escape(CLASSES[predicted[k]], quote=False)
            assert strength == pytest.approx(np.linalg.norm(g[k]), abs=1e-4)
    fig = result.plot_layer_regions(interactive=True)
    assert len(fig.layout.sliders[0].steps) == len(LAYERS)
    fig = result.plot_sample_evolution(interactive=True)
    assert [s.label for s in fig.layout.sliders[0].steps] == ["0", "9"]
    with pytest.raises(ValueError, match="3-D view only"):
        result.plot_sample_space("2d", interactive=True)
    # the matplotlib figures are unchanged by default
    fig = result.plot_sample_space()
    assert isinstance(fig, matplotlib.figure.Figure)
    plt.close(fig)


def test_repr_html(result):
    text = result._repr_html_()
    assert text.startswith("<div>") and text.endswith("</div>")
    assert "Findings" in text and "Knowledge points per layer" in text
    for f in result.findings:
        assert html.escape(f["name"]) in text
    for layer in LAYERS:
        assert f"<td>{layer}</td>" in text
    assert "<script" not in text


def test_knowledge_figure_data_agree_with_the_tables(report, result):
    directory, _, _ = report
    counts = json.loads((directory / "data" / "knowledge_counts.json").read_text())
    assert counts["tau"] == result.counter.tau
    for row, ref in zip(counts["records"], result.knowledge):
        assert row["layer"] == ref["layer"]
        assert row["mean_count"] == pytest.approx(ref["mean_count"])
        assert row["reliable_ratio"] == pytest.approx(ref["reliable_ratio"])
    regions = json.loads((directory / "data" / "layer_regions.json").read_text())
    n, r = result.features.h[LAYERS[0]].shape[:2]
    # the regions figure draws every image with the first repeat's estimators
    for ref in result.counter.count(result.features, result.labels):
        layer = regions["layers"][ref["layer"]]
        # mean points per image = fraction of regions that are points x R
        assert layer["knowledge_point_fraction"] * r == pytest.approx(ref["mean_count"])
        assert sum(layer["knowledge_points_per_image_by_class"]) == pytest.approx(
            ref["mean_count"]
        )
        h = np.asarray(result.features.h[ref["layer"]], float) / layer["scale"]
        # scales come from the fit images: every image's mean is near 1
        assert layer["mean_strength"] == pytest.approx(
            np.linalg.norm(h, axis=-1).mean(), rel=1e-6
        )
        drawn = h[np.asarray(layer["image"]), np.asarray(layer["region"])]
        np.testing.assert_allclose(layer["h"], drawn, rtol=1e-9)
        assert len(set(zip(layer["image"], layer["region"]))) == len(layer["image"])
    masks = json.loads((directory / "data" / "knowledge_masks.json").read_text())
    assert masks["layer"] == LAYERS[-1]
    points, _ = result.counter.masks(result.features, layer=LAYERS[-1])
    for item in masks["images"]:
        grid = np.asarray(item["knowledge_points"])
        assert grid.shape == tuple(result.features.grid)
        assert grid.sum() == points[item["image"]].sum()
        assert item["label"] == result.labels[item["image"]]


def test_optional_figure_data(report, result):
    directory, _, _ = report
    data = directory / "data"
    emergence = json.loads((data / "emergence.json").read_text())
    assert [r["iteration"] for r in emergence["records"]] == [
        r["iteration"] for r in result.emergence
    ]
    frames = json.loads((data / "sample_evolution.json").read_text())["frames"]
    assert [f["iteration"] for f in frames] == [0, 9]
    np.testing.assert_allclose(frames[-1]["g"], result.emergence_frames[-1]["g"])
    adversarial = json.loads((data / "adversarial_change.json").read_text())
    assert adversarial["attack"]["n_steps"] == 2
    for row, ref in zip(adversarial["records"], result.adversarial):
        assert row["mean_one_minus_cos"] == pytest.approx(ref["mean_one_minus_cos"])
    distillation = json.loads((data / "distillation.json").read_text())
    assert [r["model"] for r in distillation["records"]] == [
        "teacher",
        "teacher",
        "student",
        "student",
    ]


def test_html_escapes_every_value(report):
    _, index, _ = report
    page = _html(index)
    assert "<script>alert" not in page and "<i>hand-made" not in page
    assert "<b>first" not in page and "<b>&" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in page
    assert "&lt;i&gt;hand-made&lt;/i&gt;" in page
    assert "&lt;b&gt;first&lt;/b&gt;" in page
    assert "&lt;b&gt;&amp;" in page and "c&quot;" in page  # class names


def test_sections_and_extra(report, result):
    directory, index, _ = report
    page = _html(index)
    for key in (
        "findings",
        "run",
        "projection",
        "knowledge",
        "regions",
        "masks",
        "emergence",
        "adversarial",
        "distillation",
        "diagnostics",
        "extra",
        "files",
    ):
        assert f'<section id="{key}">' in page, key
        assert f'href="#{key}"' in page
    # explanations in plain words, with this run's values
    assert "tau = 0.4" in page and "reliable ratio" in page
    assert "epsilon = " in page and "2 steps" in page
    # settings, timings and accuracy
    assert "Timings (seconds)" in page and "alignment" in page
    acc = f"{result.projection['dnn_accuracy']:.3f}"
    assert "Accuracy" in page and acc in page
    # extra items: scalar, table (also as CSV), nested dict
    assert "total time (s)" in page and "12.500" in page
    rows = read_csv(directory / "data" / "training_history.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert "optimizer.name" in page
    saved = json.loads((directory / "data" / "extra.json").read_text())
    assert saved["training history"][1]["loss"] == 0.25
    # findings with their verdicts, diagnostics with every stage
    for f in result.findings:
        assert f["name"] in page
    assert any(v in page for v in ("holds", "contradicted", "inconclusive"))
    assert "fitted stages" in page and "importance" in page


def test_figures_are_closed(report):
    _, _, before = report
    assert set(plt.get_fignums()) == before


def test_sections_only_for_what_was_computed(plain, tmp_path):
    index = write_report(plain, tmp_path)
    page = _html(index)
    for key in ("emergence", "adversarial", "distillation", "extra"):
        assert f'<section id="{key}">' not in page
    for key in ("run", "projection", "knowledge", "regions", "masks", "files"):
        assert f'<section id="{key}">' in page
    pngs = {p.stem for p in (tmp_path / "figures").glob("*.png")}
    assert pngs == ALL_FIGURES - OPTIONAL_FIGURES
    data = {p.name for p in (tmp_path / "data").iterdir()}
    for name in ("emergence", "adversarial", "distillation", "attack", "extra"):
        assert f"{name}.csv" not in data and f"{name}.json" not in data
    pngs_embedded = re.findall(r"data:image/png;base64,", _without_scripts(page))
    assert len(pngs_embedded) == len(pngs)
    assert "skvmf report" in page  # the default title
    # no checkpoints: no training slider; no attack: no attacked regions
    assert set(_view_specs(page)) == VIEWS - {"sample_evolution", "adversarial_regions"}


def test_without_interactive_views_the_page_has_no_script(plain, tmp_path):
    page = _html(write_report(plain, tmp_path, interactive=False))
    assert not re.search(r"<script\b", page, re.I)
    assert 'data-skvmf-view="3d"' not in page
    assert {p.stem for p in (tmp_path / "figures").glob("*.png")} == (
        ALL_FIGURES - OPTIONAL_FIGURES
    )


def test_rewriting_a_folder_removes_stale_parts(result, plain, tmp_path):
    write_report(result, tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "data" / "mine.csv").write_text("a\n1\n")
    assert (tmp_path / "figures" / "emergence.png").is_file()
    write_report(plain, tmp_path)
    assert not (tmp_path / "figures" / "emergence.png").exists()
    assert not (tmp_path / "data" / "adversarial.csv").exists()
    assert not (tmp_path / "data" / "distillation.json").exists()
    # files skvmf did not write are kept
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert (tmp_path / "data" / "mine.csv").is_file()


@pytest.mark.parametrize(
    "extra, match",
    [
        (["not", "a", "dict"], "'extra' parameter of write_report must be"),
        ({"rows": [1, 2]}, r"extra\['rows'\] must be"),
        ({"obj": object()}, r"extra\['obj'\] must be"),
    ],
)
def test_bad_extra(plain, tmp_path, extra, match):
    with pytest.raises(ValueError, match=match):
        write_report(plain, tmp_path, extra=extra)


def test_bad_inputs(plain, tmp_path):
    """Bad arguments are refused before anything is written."""
    out = tmp_path / "report"
    with pytest.raises(ValueError, match="'result' parameter .*AnalysisResult"):
        write_report({"knowledge": []}, out)
    with pytest.raises(ValueError, match="'dpi' parameter .* range \\[10, inf\\)"):
        write_report(plain, out, dpi=0)
    with pytest.raises(ValueError, match="'interactive' parameter .*'bool'"):
        write_report(plain, out, interactive="yes")
    assert not out.exists()
