"""Bad inputs that used to get a poor answer (issue 18, item 6): each is
refused with a ValueError naming the argument, or warned about."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from torch import nn

from skvmf import (
    FeatureSet,
    KnowledgePointCounter,
    RegionalAligner,
    RevisedVMFMixture,
    SampleProjector,
)
from skvmf._numerics.arrays import real_array
from skvmf.saliency import guided_backprop
from skvmf.vmf import fit_vmf

RNG = np.random.default_rng(0)
X = RNG.normal(size=(20, 3))
Y = np.arange(20) % 2
EMPTY = np.zeros((0, 3))


def _counter_data():
    h = RNG.normal(size=(10, 5, 3))
    fs = FeatureSet(h={"h": h}, directions=np.eye(3))
    return fs, np.arange(10) % 3


# --------------------------------------------------------------- 1. weights
BAD_WEIGHTS = [
    pytest.param([np.nan] + [1.0] * 9, "finite", id="nan"),
    pytest.param([-1.0] + [1.0] * 9, "non-negative", id="negative"),
    pytest.param([0.0] * 10, "zero", id="all-zero"),
]


@pytest.mark.parametrize("weights, what", BAD_WEIGHTS)
def test_score_refuses_bad_sample_weight(weights, what):
    # KnowledgePointCounter.score is the one score of skvmf taking weights
    fs, y = _counter_data()
    counter = KnowledgePointCounter().fit(fs, y)
    assert np.isfinite(counter.score(fs, y, sample_weight=np.ones(10)))
    with pytest.raises(ValueError, match=f"sample_weight.*{what}"):
        counter.score(fs, y, sample_weight=np.array(weights))


@pytest.mark.parametrize("weights, what", BAD_WEIGHTS)
def test_fit_vmf_refuses_bad_sample_weight(weights, what):
    with pytest.raises(ValueError, match="sample_weight"):
        fit_vmf(X[:10] / np.linalg.norm(X[:10], axis=1)[:, None], sample_weight=weights)


# ----------------------------------------------------------- 2. nested lists
def test_featureset_from_nested_lists_holds_arrays():
    fs = FeatureSet(
        sample=[[1.0, 2.0], [3.0, 4.0]],
        logits=[[1, 2], [3, 4]],
        h={"a": [[[1.0, 0.0]], [[0.0, 1.0]]]},
    )
    assert isinstance(fs.sample, np.ndarray) and fs.sample.shape == (2, 2)
    assert isinstance(fs.h["a"], np.ndarray) and fs.h["a"].shape == (2, 1, 2)
    assert len(fs) == 2 and fs[[1]].sample.tolist() == [[3.0, 4.0]]


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("sample", [[1.0, 2.0], [3.0]], "FeatureSet.sample.*ragged"),
        ("logits", [["a", "b"], ["c", "d"]], "FeatureSet.logits must be numeric"),
        ("sample", [[1j, 2.0], [3.0, 4.0]], "FeatureSet.sample must be real"),
    ],
)
def test_featureset_refuses_bad_nested_lists(field, value, match):
    with pytest.raises(ValueError, match=match):
        FeatureSet(**{field: value})


# ------------------------------------------------------------ 3. empty input
_EMPTY_MSG = r"is empty.*0 (samples|images)|are empty: 0 images"


def test_mixture_says_x_is_empty():
    with pytest.raises(ValueError, match="X is empty: 0 samples"):
        RevisedVMFMixture(2).fit(EMPTY)
    mixture = RevisedVMFMixture(2, random_state=0).fit(X)
    for method in (mixture.predict, mixture.predict_proba, mixture.score):
        with pytest.raises(ValueError, match="X is empty: 0 samples"):
            method(EMPTY)


def test_projector_says_x_is_empty():
    with pytest.raises(ValueError, match="X is empty: 0 samples"):
        SampleProjector().fit(EMPTY, Y[:0])
    with pytest.raises(ValueError, match="FeatureSet.sample is empty: 0 samples"):
        SampleProjector().fit(FeatureSet(sample=EMPTY, soft_labels=np.zeros((0, 2))))
    projector = SampleProjector(max_iter=5, random_state=0).fit(X, Y)
    for method in (projector.transform, projector.predict):
        with pytest.raises(ValueError, match="X is empty: 0 samples"):
            method(EMPTY)
    with pytest.raises(ValueError, match="X is empty: 0 samples"):
        projector.score(EMPTY, Y[:0])


def test_aligner_says_its_input_is_empty():
    f = RNG.normal(size=(10, 6, 4))
    P = np.full((10, 2), 0.5)
    g = RNG.normal(size=(10, 2))
    with pytest.raises(ValueError, match="is empty"):
        RegionalAligner(n_candidates=4).fit(f[:0], soft_labels=P[:0], g=g[:0])
    aligner = RegionalAligner(
        n_candidates=4, max_epochs=1, weight_steps=2, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # one epoch only
        aligner.fit(f, soft_labels=P, g=g)
    with pytest.raises(ValueError, match=r"regions\['input'\] is empty"):
        aligner.transform(f[:0])


def test_counter_says_the_regions_are_empty():
    fs, y = _counter_data()
    empty = FeatureSet(h={"h": np.zeros((0, 5, 3))}, directions=np.eye(3))
    with pytest.raises(ValueError, match=_EMPTY_MSG):
        KnowledgePointCounter().fit(empty, y[:0])
    counter = KnowledgePointCounter().fit(fs, y)
    with pytest.raises(ValueError, match="layer 'h' are empty: 0 images"):
        counter.predict(empty)
    with pytest.raises(ValueError, match="layer 'h' are empty: 0 images"):
        counter.score(empty, y[:0])


def test_extractor_says_zero_images():
    from skvmf import TorchFeatureExtractor

    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    extractor = TorchFeatureExtractor(model, ["0"], sample_layer="3").fit()
    # an empty list is zero images too, not a rank error
    for images in (torch.zeros(0, 1, 4, 4), np.zeros((0, 1, 4, 4)), [], [[]]):
        with pytest.raises(ValueError, match="X is empty"):
            extractor.transform(images)


def test_real_array_names_an_empty_argument():
    with pytest.raises(ValueError, match="w is empty"):
        real_array([], "w", allow_empty=False)
    assert real_array([], "w").shape == (0,)


# ------------------------------------------- 4. guided backprop, functional relu
class _FunctionalRelus(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(12, 2)

    def forward(self, x):
        x = self.relu(self.conv(x))  # guided
        x = F.relu(x - 0.1)  # not guided
        x = torch.relu(x) + x.relu()  # not guided (two more)
        x = F.relu(x, inplace=True)  # not guided
        return self.fc(x.flatten(1))


def test_guided_backprop_warns_about_functional_relus():
    model = _FunctionalRelus().double()
    x = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    with pytest.warns(UserWarning, match=r"4 time\(s\).*nn\.ReLU") as record:
        guided_backprop(model, x, target=0)
    assert len([w for w in record if "functional relu" in str(w.message)]) == 1
    assert model.relu.inplace is False  # flags restored


def test_guided_backprop_with_relu_modules_only_is_silent():
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3),
        nn.ReLU(inplace=True),
        nn.Conv2d(3, 3, 1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(12, 2),
    ).double()
    x = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        grad = guided_backprop(model, x, target=1)
    assert grad.shape == (2, 1, 4, 4) and model[1].inplace is True
