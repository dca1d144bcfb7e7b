"""benchmarks/study_architectures.py at toy size: one architecture trained,
analysed and written up, every figure with its interval and verdict, the
paper's figures beside ours."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "study_architectures.py"


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("skvmf_study_arch", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return module


@pytest.fixture(scope="module")
def toy(study):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():
            return study.run_phase("study", "toy", archs=("vit",))
    finally:
        torch.set_num_threads(before)


@pytest.mark.filterwarnings("ignore")
def test_rows_have_intervals(study, toy):
    (net,) = toy["network"]
    assert set(study.COLUMNS["network"]) <= set(net)
    assert -1 <= net["pearson_low"] <= net["pearson"] <= net["pearson_high"] <= 1
    assert 0 <= net["accuracy"] <= 1 and net["n_held_out"] > 0
    assert toy["layer"], "no layer rows"
    for row in toy["layer"]:
        assert set(study.COLUMNS["layer"]) <= set(row)
        assert row["points_low"] <= row["points"] <= row["points_high"]
        assert 0 <= row["points"] <= row["regions"]
    verdicts = {f["verdict"] for f in toy["findings"]["vit"]}
    assert verdicts <= {"holds", "contradicted", "inconclusive", "not evaluated"}


@pytest.mark.filterwarnings("ignore")
def test_page_states_the_setting_and_the_paper(study, toy):
    text = study.page(toy, "toy")
    assert "toy size, not a result" in text and "Tiny ImageNet" in text
    assert text.count("| ViT (small) |") == 1 + len(toy["layer"]) + len(
        toy["findings"]["vit"]
    )
    # a figure is printed with its interval
    assert f"{toy['network'][0]['pearson']:.2f} [" in text


def test_side_of_paper_figure(study):
    assert study._side(-0.99, -0.95, -0.94) == "above our interval"
    assert study._side(-0.99, -0.95, -0.97) == "inside our interval"
    assert study._side(-0.90, -0.80, -0.94) == "below our interval"
    assert study._side(None, None, -0.94) == "n/a"
    assert math.isclose(study.PAPER_VGG_LAYERS["conv_53"]["reliable_ratio"], 0.63)
