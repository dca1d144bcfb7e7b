"""Every gallery script in ``examples/`` runs to completion as a user runs it.

Each script runs in a fresh interpreter, from an empty temporary working
directory (so it cannot depend on files of the repository's root), with the
non-interactive matplotlib backend and a timeout. The scripts that train a
network take 20 to 30 s each and are marked slow.
"""

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))

# scripts that finish in a few seconds (no network training); any other
# script, including new ones, is treated as slow
FAST = {"plot_vmf_mixture.py", "plot_revised_kappa.py", "plot_feature_extraction.py"}
# scripts that train a network (20 to 30 s) and then analyse it; 30 to 90 s
# each on two CPU cores
SLOW = {
    "plot_saliency_gradcam.py",
    "plot_activation_maximization.py",
    "plot_feature_embedding.py",
    "plot_category_hierarchy.py",
    "plot_filter_prediction_tree.py",
    "plot_knowledge_points.py",
    "plot_pipeline_gridsearch.py",
    "plot_emergence_training.py",
    "plot_adversarial_attack.py",
    "plot_distillation.py",
}
TIMEOUT = 600


def _param(path):
    marks = () if path.name in FAST else (pytest.mark.slow,)
    return pytest.param(path, id=path.stem, marks=marks)


def _environment():
    env = dict(os.environ)
    env["MPLBACKEND"] = "Agg"
    # the scripts import skvmf from this checkout, installed or not
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    # one thread per process unless asked otherwise: on a small shared machine
    # spinning OpenMP/BLAS workers made these scripts several times slower
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, "1")
    return env


def test_gallery_is_not_empty():
    names = {path.name for path in EXAMPLES}
    assert names >= FAST | SLOW, f"missing: {sorted(FAST | SLOW - names)}"
    assert (ROOT / "examples" / "README.rst").is_file()


def test_gallery_order_lists_every_example():
    # doc/_sorting.py puts the method's tutorials before the classic views;
    # a script it does not list would land at the end of the gallery
    spec = importlib.util.spec_from_file_location(
        "_gallery_sorting", ROOT / "doc" / "_sorting.py"
    )
    sorting = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sorting)
    assert set(sorting.ORDER) == {path.name for path in EXAMPLES}
    assert len(sorting.ORDER) == len(set(sorting.ORDER))


@pytest.mark.parametrize("script", [_param(p) for p in EXAMPLES])
def test_example_has_gallery_header(script):
    # sphinx-gallery needs a module docstring whose first line is a title
    # underlined with "=" at least as long as the title
    docstring = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8")))
    assert docstring, f"{script.name} has no module docstring"
    lines = docstring.splitlines()
    assert len(lines) >= 2, f"{script.name}: docstring has no title"
    title, underline = lines[0].strip(), lines[1].strip()
    assert title, f"{script.name}: empty title line"
    assert set(underline) == {"="}, f"{script.name}: title not underlined with '='"
    assert len(underline) >= len(title), f"{script.name}: underline too short"


@pytest.mark.parametrize("script", [_param(p) for p in EXAMPLES])
def test_example_runs(script, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, (
        f"{script.name} exited with {proc.returncode}\n"
        f"--- stdout (end) ---\n{proc.stdout[-3000:]}\n"
        f"--- stderr (end) ---\n{proc.stderr[-6000:]}"
    )
    assert "Traceback" not in proc.stderr, proc.stderr[-6000:]
