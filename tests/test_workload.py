"""The paper's properties on the built-in digits workload (issue: "What must be
shown"), measured with the settings of ``skvmf demo``: the digits VGG-16-bn,
120 held-out test images, the paper's five layers, five training checkpoints,
a PGD attack. The measured figures are in doc/results_digits.md.
"""

import pytest

import skvmf
from skvmf.cli import _spread
from skvmf.datasets import load_digits_images, subset_per_class
from skvmf.models import list_checkpoints

# one worker runs them all: the fixture trains and analyses for ~3 minutes
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("digits_workload")]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("checkpoints")
    model, _ = skvmf.train_digits_classifier(checkpoint_dir=ckpt, random_state=0)
    # the demo's choice: five checkpoints evenly spread over the iterations
    chosen = _spread(list_checkpoints(ckpt), 5)
    data = subset_per_class(load_digits_images("test"), 12, random_state=0)
    return skvmf.analyze(
        model, data, checkpoints=chosen, attack=True, n_jobs=2, random_state=0
    )


def _by_layer(rows):
    return {row["layer"]: row for row in rows}


def test_projection_mimics_the_network(result):
    # 1. argmax of the projected model agrees with the DNN on >= 90 % of images
    assert result.projection["projection_agreement"] >= 0.9
    # 2. strong g means a confident network: Pearson(||g||, H(P)) <= -0.5
    assert result.projection["pearson_strength_entropy"] <= -0.5


def test_reliable_ratio_rises_from_the_shallowest_to_the_deepest_layer(result):
    # 3. quality of knowledge points grows with depth
    rows = result.knowledge
    assert rows[-1]["reliable_ratio"] > rows[0]["reliable_ratio"]


def test_knowledge_points_emerge_during_training(result):
    # 4. the deepest layer's knowledge points grow from an early checkpoint
    deepest = result.layers[-1]
    rows = sorted(
        (r for r in result.emergence if r["layer"] == deepest),
        key=lambda r: r["iteration"],
    )
    assert rows[-1]["mean_count"] > rows[0]["mean_count"]


def test_adversarial_change_grows_with_depth(result):
    # 5. the attack moves the deepest layer's regions more than the shallowest
    rows = _by_layer(result.adversarial)
    first, last = result.layers[0], result.layers[-1]
    assert rows[last]["mean_one_minus_cos"] > rows[first]["mean_one_minus_cos"]
    assert result.attack["success_rate"] > 0.5
