"""From the extractor to the counter with no host round trip (issue 16).

Under scikit-learn's ``array_api_dispatch``, torch images go through
TorchFeatureExtractor -> SampleProjector -> RegionalAligner ->
KnowledgePointCounter as tensors on the model's device: no step converts a
tensor to numpy inside fit, transform or predict. On this CPU machine the
"device" is the CPU; the property checked is that no host (numpy) copy is
made, by making ``torch.Tensor.__array__`` and ``torch.Tensor.numpy`` raise
during the calls. ``analyze`` takes the same path off the CPU (or when
forced) and finds what the numpy path finds.
"""

import contextlib
import os
import warnings

import numpy as np
import pytest
import sklearn
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import Pipeline

import skvmf
from skvmf import analysis as analysis_module
from skvmf.alignment import RegionalAligner
from skvmf.analysis._pipeline import _tensor_path
from skvmf.extraction import TorchFeatureExtractor
from skvmf.knowledge import KnowledgePointCounter
from skvmf.models import make_classifier, train_classifier
from skvmf.projection import SampleProjector

# the extractor runs the same float32 forward pass on both paths: its maps
# and logits are bit-identical; FeatureSet computes the soft labels from them
# in float64, in torch (tensor path) or numpy (numpy path): measured apart by
# at most 3e-17
SOFT_LABELS_TOL = {"rtol": 1e-12, "atol": 1e-15}


def _model(seed=0):
    model = make_classifier(
        "vgg16", 4, width=0.0625, input_size=16, batch_norm=True, random_state=seed
    )
    return model.eval()


def _images(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, 16, 16, generator=g)
    y = torch.arange(n) % 4
    X[:, 2] += y[:, None, None].float()  # classes the network can see
    return X, y


@contextlib.contextmanager
def no_host_copies():
    """``torch.Tensor.__array__`` and ``.numpy`` raise inside the block."""

    def refuse(*args, **kwargs):
        raise AssertionError("a tensor was copied to numpy (a host round trip)")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.Tensor, "__array__", refuse)
        patch.setattr(torch.Tensor, "numpy", refuse)
        yield


@pytest.fixture
def dispatch_on():
    with skvmf._array_api.dispatch():
        yield


def _tensor_fields(fs):
    fields = {
        name: getattr(fs, name)
        for name in ("sample", "logits", "soft_labels", "g", "directions", "priors")
        if getattr(fs, name) is not None
    }
    fields.update({f"regions[{k}]": v for k, v in fs.regions.items()})
    fields.update({f"h[{k}]": v for k, v in fs.h.items()})
    return fields


# --------------------------------------------------------------------------
# the extractor


def test_extractor_gives_tensors_on_the_model_device_under_dispatch(dispatch_on):
    model, (X, _) = _model(), _images(10)
    ext = TorchFeatureExtractor(model, ["conv_33", "conv_53"], batch_size=4)
    with no_host_copies():
        fs = ext.fit(X[:1]).transform(X)
        rows = ext.set_params(output="regions").fit().transform(X)
    for name, value in _tensor_fields(fs).items():
        assert isinstance(value, torch.Tensor), name
        assert value.device == ext.device_, name
    assert fs.soft_labels.dtype == torch.float64
    assert (
        isinstance(rows, torch.Tensor)
        and rows.shape[0] == 10 * fs.regions["conv_53"].shape[1]
    )
    # the numpy path's values: the same forward pass (float32 maps from
    # torch kernels: compared to float32 rounding, not bit for bit, so that
    # a different thread split cannot fail it)
    ref = TorchFeatureExtractor(model, ["conv_33", "conv_53"], batch_size=4)
    ref = ref.fit(X[:1].numpy()).transform(X.numpy())
    close = {"rtol": 1e-5, "atol": 1e-6}
    for key in ref.regions:
        assert_allclose(fs.regions[key].numpy(), ref.regions[key], **close)
    assert_allclose(fs.logits.numpy(), ref.logits, **close)
    assert_allclose(fs.sample.numpy(), ref.sample, **close)
    assert_allclose(fs.soft_labels.numpy(), ref.soft_labels, **SOFT_LABELS_TOL)
    assert_array_equal(fs.image_ids, np.arange(10))  # a host index


def test_extractor_without_dispatch_or_with_numpy_images_is_unchanged():
    model, (X, _) = _model(), _images(6)
    ext = TorchFeatureExtractor(model, ["conv_53"]).fit()
    fs = ext.transform(X)  # tensors, but dispatch off: numpy as before
    assert isinstance(fs.regions["conv_53"], np.ndarray)
    assert isinstance(fs.soft_labels, np.ndarray)
    with skvmf._array_api.dispatch():
        fs = ext.transform(X.numpy())  # numpy in, numpy out under dispatch
    assert isinstance(fs.regions["conv_53"], np.ndarray)


def test_memmap_with_tensor_images_under_dispatch_is_refused(tmp_path, dispatch_on):
    model, (X, _) = _model(), _images(4)
    ext = TorchFeatureExtractor(model, ["conv_53"], memmap_dir=tmp_path).fit()
    with pytest.raises(ValueError, match="memmap_dir.*array_api_dispatch"):
        ext.transform(X)
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------
# out of memory


def _failing_above(model, limit, monkeypatch):
    """The model's forward raises torch.OutOfMemoryError above ``limit``
    images, as a GPU that cannot hold the batch does."""
    forward = model.forward

    def limited(x):
        if x.shape[0] > limit:
            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 2.00 GiB"
            )
        return forward(x)

    monkeypatch.setattr(model, "forward", limited)


def test_out_of_memory_names_the_batch_tried_and_one_to_set(monkeypatch, tmp_path):
    model, (X, _) = _model(), _images(20)
    ext = TorchFeatureExtractor(
        model, ["conv_53"], batch_size=16, memmap_dir=tmp_path
    ).fit(X[:1])
    _failing_above(model, 3, monkeypatch)
    with pytest.raises(torch.OutOfMemoryError) as info:
        ext.transform(X)
    message = str(info.value)
    assert "batch of 16 images" in message and "batch_size=8" in message
    assert "Tried to allocate 2.00 GiB" in message  # the device's own words
    assert os.listdir(tmp_path) == []  # the partial memmap files are removed
    # halving as told twice fits: the suggestion leads somewhere
    with pytest.raises(torch.OutOfMemoryError, match="batch_size=4"):
        ext.set_params(batch_size=8).transform(X)
    fs = ext.set_params(batch_size=2).transform(X)
    assert fs.regions["conv_53"].shape[0] == 20


def test_out_of_memory_with_one_image_says_what_else_to_do(monkeypatch):
    model, (X, _) = _model(), _images(3)
    ext = TorchFeatureExtractor(model, ["conv_53"], batch_size=1).fit()
    _failing_above(model, 0, monkeypatch)
    with pytest.raises(torch.OutOfMemoryError, match="even one image.*dtype"):
        ext.transform(X)


# --------------------------------------------------------------------------
# the pipeline: no host round trip


def _pipeline(model):
    return Pipeline(
        [
            ("extract", TorchFeatureExtractor(model, ["conv_33", "conv_53"])),
            ("project", SampleProjector(max_iter=30, n_init=1, random_state=0)),
            (
                "align",
                RegionalAligner(
                    max_epochs=2, weight_steps=2, n_candidates=6, random_state=0
                ),
            ),
            ("count", KnowledgePointCounter(tau=0.4)),
        ]
    )


def test_pipeline_never_converts_a_tensor_to_numpy(dispatch_on):
    model, (X, y) = _model(), _images(16)
    pipe = _pipeline(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # tiny fits
        with no_host_copies():
            pipe.fit(X, y)
            embedded = pipe[:-1].transform(X)
            predicted = pipe.predict(X)
            score = pipe.score(X, y)
            points, categories = pipe[-1].masks(embedded)
    for name, value in _tensor_fields(embedded).items():
        assert isinstance(value, torch.Tensor), name
        assert value.device.type == "cpu", name
    assert set(embedded.h) == {"conv_33", "conv_53"}
    assert isinstance(predicted, torch.Tensor) and predicted.shape == (16,)
    assert isinstance(points, torch.Tensor) and isinstance(categories, torch.Tensor)
    assert isinstance(score, float) and 0.0 <= score <= 1.0


# --------------------------------------------------------------------------
# analyze on the tensor path

# The projection by SGD for 200 steps, which carries a last-bit difference
# of its input through unchanged (the two paths' g differ by ~3e-18). The
# default solver, Adam, normalises its steps by the gradients' size, so near
# a minimum it amplifies any last-bit difference: the soft labels that torch
# and numpy compute from the same logits differ by up to 3e-17, and after
# 200 Adam steps the two paths sat in different optima (g apart by 0.24) on
# a variant of this workload, as a change of thread count would do.
FAST = {
    "aligner_params": {"max_epochs": 2, "weight_steps": 2, "n_candidates": 10},
    "projector_params": {"solver": "sgd", "max_iter": 200},
    "layers": ["conv_33", "conv_53"],
    "n_repeats": 1,
    "n_bootstrap": 200,
    "random_state": 0,
    "n_display": 4,
}
# both paths fit the same float64 objectives from bit-identical features
# (soft labels within 3e-17) and the same seeds: every figure agrees to far
# below its interval's width (measured: the embeddings h agree exactly)
FIGURE_TOL = {"rel": 1e-6, "abs": 1e-9}


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    """tests/_helpers.four_class_workload's recipe, smaller: 40 images, two
    epochs, checkpoints at iterations 0 and 4 (a network that has learnt
    something, so the soft labels are not uniform)."""
    torch.manual_seed(0)
    X, y = _images(40)
    model = _model()
    checkpoints = tmp_path_factory.mktemp("checkpoints")
    train_classifier(
        model,
        (X, y),
        epochs=2,
        batch_size=20,
        lr=4e-3,
        checkpoint_iterations=[0, 4],
        checkpoint_dir=checkpoints,
    )
    return model.eval(), X.numpy(), y.numpy(), checkpoints


def _quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return skvmf.analyze(*args, **kwargs)


def _assert_rows_close(rows_a, rows_b):
    assert len(rows_a) == len(rows_b)
    for a, b in zip(rows_a, rows_b):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], float) and not isinstance(a[key], bool):
                assert a[key] == pytest.approx(b[key], **FIGURE_TOL), key
            else:
                assert a[key] == b[key], key


def test_analyze_tensor_path_finds_what_the_numpy_path_finds(
    workload, one_torch_thread, monkeypatch
):
    model, X, y, checkpoints = workload
    options = {
        "checkpoints": checkpoints,
        "students": {"student": _model(seed=1)},
        "attack": {"n_steps": 2},
        "n_repeats": 2,
    }
    seen = []
    fit = RegionalAligner.fit

    def spy(self, X, y=None, **kwargs):
        seen.append(type(next(iter(X.regions.values()))))
        return fit(self, X, y, **kwargs)

    monkeypatch.setattr(RegionalAligner, "fit", spy)
    options = {**FAST, **options}
    numpy_path = _quiet(model, X, y, **options)
    n_fits = len(seen)  # 2 repeats x (model, 2 checkpoints, student)
    assert n_fits == 8 and set(seen) == {np.ndarray}
    tensor_path = _quiet(model, X, y, array_api_dispatch=True, **options)
    assert seen[n_fits:] == [torch.Tensor] * n_fits  # the aligners got tensors
    assert tensor_path.settings["array_api_dispatch"] is True
    assert numpy_path.settings["array_api_dispatch"] is False
    _assert_rows_close([tensor_path.projection], [numpy_path.projection])
    for table in ("knowledge", "emergence", "distillation", "adversarial"):
        _assert_rows_close(getattr(tensor_path, table), getattr(numpy_path, table))
    _assert_rows_close(tensor_path.findings, numpy_path.findings)
    assert all(row["mean_count"] > 0 for row in tensor_path.knowledge)  # not void
    # the result is host data either way: tables, figures, reuse on numpy
    for name, value in _tensor_fields(tensor_path.features).items():
        assert isinstance(value, np.ndarray), name
    assert_allclose(
        tensor_path.features.h["conv_53"],
        numpy_path.features.h["conv_53"],
        rtol=1e-6,
        atol=1e-9,
    )
    new = tensor_path.counter.predict(tensor_path.features)
    assert isinstance(new, np.ndarray)


def test_analyze_device_checks(workload):
    model, X, y, _ = workload
    assert _tensor_path("cpu", None) is False
    assert _tensor_path("cuda", None) is True
    assert _tensor_path(torch.device("cuda", 1), False) is False
    assert _tensor_path("cpu", True) is True
    with pytest.raises(ValueError, match="scheduler.*array_api_dispatch=False"):
        skvmf.analyze(
            model, X, y, array_api_dispatch=True, scheduler="tcp://x:1", **FAST
        )
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            skvmf.analyze(model, X, y, device="cuda", **FAST)


def test_analyze_on_the_cpu_keeps_the_numpy_path_under_global_dispatch(
    workload, one_torch_thread
):
    model, X, y, _ = workload
    plain = _quiet(model, X, y, **FAST)
    with skvmf._array_api.dispatch():  # the user's global setting
        chosen = _quiet(model, X, y, **FAST)
    assert chosen.settings["array_api_dispatch"] is False
    assert chosen.knowledge == plain.knowledge  # the same arithmetic
    assert isinstance(chosen.features.h["conv_53"], np.ndarray)


def test_cli_device_reaches_analyze(monkeypatch):
    from skvmf import cli

    args = cli._build_parser().parse_args(
        ["analyze", "--arch", "vgg16", "--data", "x", "--device", "cuda"]
    )
    calls = []
    monkeypatch.setattr(
        analysis_module, "analyze", lambda *a, **kw: calls.append(kw) or "result"
    )
    assert cli._analyze_images(args, None, None, []) == "result"
    assert calls[0]["device"] == "cuda"  # analyze(device="cuda"): the tensor path
    assert _tensor_path(calls[0]["device"], None) is True
    assert sklearn.get_config()["array_api_dispatch"] is False  # nothing leaked
    if not torch.cuda.is_available():  # refused before any work, by name
        with pytest.raises(ValueError, match="CUDA is not available"):
            cli._check_device("cuda")
