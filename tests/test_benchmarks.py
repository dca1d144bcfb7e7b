"""Every benchmark phase runs at toy size, on public API only.

The scripts in benchmarks/ are run by hand at full size; here each of their
phases runs in-process at toy size (``run_phase(phase, "toy", workdir)``)
and its output is checked: the columns of the full run are there, times
are positive and finite, and what the phase measures is sane (a loss fell,
an agreement lies in [0, 1], a memory figure matches its closed form). No
toy run may write outside its temporary folder: the measured pages in doc/
stay as they are. A static check (``ast``) keeps private skvmf names out of
the benchmarks, since those move when the package is restructured.
"""

from __future__ import annotations

import ast
import importlib.util
import math
import re
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
DOC_PAGES = [ROOT / "doc" / "benchmarks.md", ROOT / "doc" / "sensitivity.md"]


@cache
def load(name):
    """Import benchmarks/<name>.py by path (it imports its sibling _doc)."""
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(
            f"skvmf_benchmark_{name}", BENCH / f"{name}.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


def positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def has_columns(row, columns):
    missing = set(columns) - set(row)
    assert not missing, f"missing columns {sorted(missing)} in {sorted(row)}"


# -- checks of each phase's output ---------------------------------------------
def check_aligner(phase, result, module):
    has_columns(result, module.COLUMNS[phase])
    assert positive(result["seconds"]), result
    assert positive(result["peak_mib"])
    assert result["work_mib"] >= -1.0  # peak minus current RSS, both rounded
    share = result["matmul_share"]
    assert share is None if phase == "fit" else 0.0 <= share <= 1.0
    if "gflops" in result:
        assert positive(result["gflops"])
    if phase == "importance":
        # every step costs the same: 20 steps from the measured 2
        assert result["seconds_20"] == pytest.approx(10 * result["seconds"])
    if phase == "epoch":
        assert result["ms_per_step"] == pytest.approx(1e3 * result["seconds"] / 16)
    if "loss_first_last" in result:
        first, last = result["loss_first_last"]
        assert math.isfinite(first) and math.isfinite(last)
        if phase in ("importance", "fit"):
            # step-controlled weights never rise; a whole fit lowers its loss
            assert last <= first + 1e-9 if phase == "importance" else last < first


def check_mixture(phase, rows, module):
    models = {r["model"].split(" (")[0] for r in rows}
    assert models >= {"RevisedVMFMixture learned", "GaussianMixture spherical"}
    assert len(rows) == (3 if phase == "equal" else 2)
    for r in rows:
        has_columns(r, module.COLUMNS)
        assert positive(r["wall"]) and r["n_iter"] >= 1
        assert -1.0 <= r["ari"] <= 1.0 and -1.0 <= r["oracle"] <= 1.0
        if phase == "equal":
            assert positive(r["per_iter"]) and positive(r["matmul"])
        else:
            # kappa = 50 in d = 16: well separated, every model recovers it
            assert np.isnan(r["per_iter"]) and r["oracle"] == 1.0
            assert r["ari"] > 0.9


def check_extractor(phase, rows, module):
    for r in rows:
        has_columns(r, module.COLUMNS[phase])
    if phase == "overhead":
        (r,) = rows
        for key in ("bare_cpu_s", "extract_cpu_s", "bare_wall_s", "extract_wall_s"):
            assert positive(r[key]), (key, r)
        for key in ("overhead_cpu_pct", "overhead_wall_pct"):
            assert math.isfinite(r[key])
        assert r["layers"] and re.fullmatch(r"\d+x\d+", r["grid"])
        return
    assert [r["storage"] for r in rows] == ["memmap", "in memory"]
    for r in rows:
        # conv 64 + conv 32 channels on a 16 x 16 grid, float32: 96 KiB/image
        assert r["regions_mib"] == pytest.approx(r["n"] * 96 / 1024)
        assert positive(r["peak_mib"]) and math.isfinite(r["growth_mib"])


def check_gpu(phase, row, module):
    has_columns(row, module.COLUMNS)
    assert row["phase"].startswith(phase)
    assert positive(row["seconds"]) and positive(row["rate"])
    assert positive(row["rate_before"]) and positive(row["rate_after"])
    assert row["rate"] == pytest.approx((row["rate_before"] + row["rate_after"]) / 2)
    assert len(row["load"]) == 3 and positive(row["peak_mib"])
    if phase == "analysis":
        assert row["flops"] is None
    else:
        assert positive(row["flops"])
        assert math.isfinite(row["seconds"] / (row["flops"] / row["rate"]))
    if phase == "precision":
        assert 0.0 <= row["index_agreement"] <= 1.0
        for key in ("loss_float32", "loss_bfloat16"):
            # a mean KL per point: the start and one value per step
            assert len(row[key]) == module.SIZES["toy"]["precision_steps"] + 1
            assert all(0.0 <= x < math.inf for x in row[key])


def check_batch_size(phase, rows, module):
    plan = module.SIZES["toy"]
    assert len(rows) == len(plan["seeds"]) * len(module.BATCH_SIZES)
    assert sorted({r["batch_size"] for r in rows}) == sorted(module.BATCH_SIZES)
    for r in rows:
        has_columns(r, module.COLUMNS)
        assert positive(r["seconds"])
        assert r["sim"] >= -1e-9  # a KL divergence
        assert -1.0 - 1e-6 <= r["align"] <= 1.0 + 1e-6  # -sum_r w cos
    assert "| 32 |" in module.table(rows, "toy")


def check_importance_sweep(phase, rows, module):
    variants = set(module.VARIANTS)
    plan = module.SIZES["toy"]
    if phase == "planted":
        assert len(rows) == len(plan["K"]) * len(variants)
    else:
        assert {r["layer"] for r in rows} == set(module.DIGITS_LAYERS)
    for r in rows:
        has_columns(r, module.COLUMNS[phase])
        assert r["variant"] in variants and positive(r["seconds"])
        # a mean KL divergence: finite and non-negative
        assert 0.0 <= r["loss_start"] < np.inf and 0.0 <= r["loss_end"] < np.inf
        if r["variant"] in ("step control", "both"):
            assert r["loss_end"] <= r["loss_start"] + 1e-9  # rising steps refused
        if phase == "planted":
            assert 0.0 <= r["recovery"] <= plan["R"]  # mean weight x R, w sums to 1
        else:
            assert r["R"] >= 1 and r["K"] >= 1


def check_align_weight(phase, rows, module):
    layers = module.SIZES["toy"]["layers"]
    assert [r["align_weight"] for r in rows] == list(module.WEIGHTS)
    for r in rows:
        has_columns(r, module.columns(layers))
        assert positive(r["seconds"])
        for layer in layers:
            assert r[f"{layer} sim"] >= -1e-9  # a KL divergence
            assert -1.0 - 1e-6 <= r[f"{layer} align"] <= 1e-6  # -sum_r w cos
    # a heavier alignment term gives a lower held-out alignment loss
    mean = [np.mean([r[f"{layer} align"] for layer in layers]) for r in rows]
    assert mean[-1] <= mean[0]


def check_projection_quality(phase, rows, module):
    assert {r["setting"] for r in rows} == set(module.SETTINGS)
    for r in rows:
        has_columns(r, module.COLUMNS)
        assert 0.0 <= r["held_kl"] < np.inf
        assert 0.0 <= r["held_agreement"] <= 1.0 and 0.0 <= r["fit_agreement"] <= 1.0
        assert -1.0 <= r["pearson_r"] <= 1.0
        assert r["loss_end"] < r["loss_start"]  # the fit lowered its own loss
        assert positive(r["seconds"])


_CELL = re.compile(
    r"(\S+) \[(\S+), (\S+)\] "
    r"(holds|\*\*(?:contradicted|inconclusive|does not hold)\*\*|\?)"
)


def check_sensitivity(phase, rows, module):
    assert rows[0]["setting"].startswith("defaults") and len(rows) == 2
    for r in rows:
        has_columns(r, module.COLUMNS)
        assert positive(r["seconds"])
        bad, total = map(int, r["stages not falling"].split("/"))
        assert 0 <= bad <= total and total > 0
        for key in module.SHORT.values():
            if r[key] == "not evaluated":
                continue
            value, low, high = map(float, _CELL.fullmatch(r[key]).groups()[:3])
            assert all(map(math.isfinite, (value, low, high))) and low <= high
        agreement = float(_CELL.fullmatch(r["agreement"]).group(1))
        assert 0.0 <= agreement <= 1.0
        pearson = r["Pearson(‖g‖, H)"]
        assert -1.0 <= float(_CELL.fullmatch(pearson).group(1)) <= 1.0


def check_attack_default(phase, rows, module):
    plan = module.SIZES["toy"]
    assert len(rows) == 2 * len(plan["epsilons"]) * len(plan["steps"])
    for r in rows:
        has_columns(r, module.COLUMNS)
        assert positive(r["seconds"])
        assert 0 <= r["n_fooled"] <= r["n_attacked"]
        assert r["success_rate"] == pytest.approx(r["n_fooled"] / r["n_attacked"])
        assert 0 <= r["low"] <= r["success_rate"] <= r["high"] <= 1
    assert module.choose(rows, plan) in {
        None, *((r["epsilon"], r["n_steps"]) for r in rows)
    }  # fmt: skip


CHECKS = {
    "bench_attack_default": check_attack_default,
    "bench_aligner": check_aligner,
    "bench_mixture": check_mixture,
    "bench_extractor": check_extractor,
    "bench_gpu": check_gpu,
    "bench_batch_size": check_batch_size,
    "bench_importance_sweep": check_importance_sweep,
    "bench_align_weight": check_align_weight,
    "bench_projection_quality": check_projection_quality,
    "bench_sensitivity": check_sensitivity,
}
PHASES = {
    "bench_attack_default": ("success",),
    "bench_aligner": ("matching", "importance", "epoch", "fit"),
    "bench_mixture": ("equal", "hard"),
    "bench_extractor": ("overhead", "memory"),
    "bench_importance_sweep": ("planted", "digits"),
    "bench_align_weight": ("held_out",),
    "bench_projection_quality": ("settings",),
    "bench_sensitivity": ("findings",),
    "bench_batch_size": ("held_out",),
}
CASES = [
    *[
        pytest.param(name, phase, {}, id=f"{name}-{phase}")
        for name, phases in PHASES.items()
        for phase in phases
    ],
    *[
        pytest.param(
            "bench_gpu", phase, {"device": device}, id=f"bench_gpu-{phase}-{device}"
        )
        for device in ("cpu", "cuda")
        for phase in (
            "matching",
            "importance",
            "epochs",
            "alignment",
            "precision",
            "analysis",
        )
    ],
]


@pytest.fixture
def doc_pages_kept():
    """The measured pages in doc/ are not touched by a toy run."""
    before = {p: p.read_bytes() for p in DOC_PAGES if p.exists()}
    yield
    assert {p: p.read_bytes() for p in DOC_PAGES if p.exists()} == before


def test_every_phase_is_covered():
    for name in CHECKS:
        covered = {c.values[1] for c in CASES if c.values[0] == name}
        assert set(load(name).PHASES) <= covered, name
    assert {p.stem for p in BENCH.glob("bench_*.py")} == set(CHECKS)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(("name", "phase", "options"), CASES)
def test_phase_at_toy_size(
    name, phase, options, tmp_path, monkeypatch, one_torch_thread, doc_pages_kept
):
    import torch

    if options.get("device") == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    module = load(name)
    monkeypatch.chdir(tmp_path)  # anything written relative lands in tmp_path
    workdir = tmp_path / "work"
    workdir.mkdir()
    with torch.random.fork_rng():  # a phase may seed torch's global generator
        result = module.run_phase(phase, "toy", str(workdir), **options)
    CHECKS[name](phase, result, module)
    # temporary files (memory maps, checkpoints) are cleaned up
    assert [p.name for p in workdir.iterdir()] in ([], ["digits_fs.npz"])


def test_doc_helper_replaces_only_its_own_section(tmp_path):
    write_section = load("bench_mixture").write_section  # benchmarks/_doc.py
    page = tmp_path / "page.md"
    page.write_text("# Benchmarks\n\nintro\n")
    write_section("a", "## Title\nfirst", path=page)
    write_section("b", "other", path=page)
    write_section("a", "## Title\nsecond", path=page)
    text = page.read_text()
    # the script's headings nest under the page's level-2 sections
    assert "<!-- a:start -->\n### Title\nsecond\n<!-- a:end -->" in text
    assert "first" not in text and text.count("<!-- a:start -->") == 1
    assert text.startswith("# Benchmarks\n\nintro") and "other" in text


# -- public API only -------------------------------------------------------------
def _private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _dotted(node):
    """'a.b.c' of an Attribute chain on a Name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def private_uses(source):
    """Every private skvmf name a source uses, and every ``obj._name``.

    Flags ``import skvmf._x``, ``from skvmf._x import ...``, ``from skvmf.y
    import _z``, ``skvmf.y._z`` (also through an alias of an skvmf module)
    and, since a private method of an estimator is private API too, any
    attribute access ``obj._name`` at all.
    """
    tree = ast.parse(source)
    found, skvmf_names = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "skvmf":
                    if any(map(_private, a.name.split("."))):
                        found.append(f"import {a.name}")
                    skvmf_names[a.asname or a.name.split(".")[0]] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] != "skvmf":
                continue
            if any(map(_private, node.module.split("."))):
                found.append(f"from {node.module} import ...")
            for a in node.names:
                if _private(a.name):
                    found.append(f"from {node.module} import {a.name}")
                skvmf_names[a.asname or a.name] = f"{node.module}.{a.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            dotted = _dotted(node) or f"<expr>.{node.attr}"
            root = dotted.split(".")[0]
            if root in skvmf_names:
                dotted = skvmf_names[root] + dotted[len(root) :]
            found.append(dotted)
    return found


@pytest.mark.parametrize(
    "source",
    [
        "from skvmf._kernels.matching import unit_rows",
        "import skvmf._kernels.kappa",
        "from skvmf.alignment import _align_epoch",
        "from skvmf import _hooks as h",
        "import skvmf\nskvmf.cli._spread([], 1)",
        "from skvmf import analysis as a\na._split(1, 2, 3)",
        "from skvmf.mixture import RevisedVMFMixture as M\nM()._prepare(1)",
    ],
)
def test_private_check_finds_private_names(source):
    assert private_uses(source)


def test_public_check_passes_public_names():
    source = (
        "import skvmf\nfrom skvmf.alignment import match_regions\n"
        "skvmf.vmf.sample\nx.__class__\nfrom _doc import write_section"
    )
    assert private_uses(source) == []


@pytest.mark.parametrize("path", sorted(BENCH.glob("*.py")), ids=lambda p: p.name)
def test_benchmarks_use_only_public_skvmf_api(path):
    assert private_uses(path.read_text()) == []


def test_attack_success_rate_without_a_correct_image():
    """No image classified correctly before the attack: no rate (not 0 / 0),
    shown as such, and never chosen as the default."""
    import numpy as np

    module = load("bench_attack_default")
    none = np.zeros(5, dtype=bool)
    assert module.success_interval(none, none) == (None, None, None)
    rate, low, high = module.success_interval(
        np.array([1, 0, 1, 1], dtype=bool), np.ones(4, dtype=bool)
    )
    assert rate == 0.75 and 0 <= low <= rate <= high <= 1
    row = {"success_rate": None, "low": None, "high": None}
    assert "no image correct" in module._rate_text(row)
    plan = {"epsilons": [0.1], "steps": [10]}
    rows = [{"epsilon": 0.1, "n_steps": 10, "success_rate": r} for r in (None, 1.0)]
    assert module.choose(rows, plan) is None
