"""The README's Python quick start runs as written, and the pipeline it saves
gives identical predictions when loaded in a new process."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _block(name):
    text = README.read_text()
    match = re.search(
        rf"<!-- readme-test: {name} -->\s*```python\n(.*?)```", text, flags=re.S
    )
    assert match, f"README has no python block marked readme-test: {name}"
    return match.group(1)


def _run(code, cwd):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_every_python_block_of_the_readme_is_tested():
    text = README.read_text()
    blocks = re.findall(r"(<!-- readme-test: \w+ -->\s*)?```python\n", text)
    assert blocks and all(marker for marker in blocks), (
        "every ```python block of the README needs a <!-- readme-test: NAME --> "
        "marker and a test that runs it"
    )


@pytest.mark.slow
def test_readme_analysis_block_runs(tmp_path):
    out = _run(_block("analyze"), tmp_path)
    for name in (
        "projection_mimics_network",
        "reliable_ratio_rises_with_depth",
        "emergence_during_training",
        "attack_moves_deep_regions_more",
    ):
        assert name in out
    assert (tmp_path / "findings.png").is_file()


def test_readme_commands_are_the_ci_commands():
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in text and "<!-- test-command -->" in ci
    test_line = re.search(r"<!-- test-command -->\s*```bash\n(.*?)\n```", text, re.S)
    assert "pip install torch==2.14.1 torchvision==0.29.1" in test_line.group(1)
    assert "pytest" in test_line.group(1)
    demo_line = re.search(r"<!-- demo-command -->\s*```bash\n(.*?)\n```", text, re.S)
    assert demo_line.group(1).rstrip().endswith("skvmf demo")


@pytest.mark.slow
def test_readme_quick_start_runs_and_reloads_identically(tmp_path):
    save = "\nimport numpy as np\nnp.save('pred_{}.npy', pipe.predict(X))\n"
    out = _run(_block("fit") + save.format("fit"), tmp_path)
    assert "vote accuracy" in out and "knowledgepointcounter__tau" in out
    _run(_block("load") + save.format("load"), tmp_path)  # a new process
    np.testing.assert_array_equal(
        np.load(tmp_path / "pred_fit.npy"), np.load(tmp_path / "pred_load.npy")
    )
