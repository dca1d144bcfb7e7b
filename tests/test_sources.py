"""Networks, checkpoints and images from files: skvmf.sources."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from skvmf.datasets import ImageArrayDataset, load_digits_images
from skvmf.models import make_classifier
from skvmf.sources import (
    ARCH_NAMES,
    check_model,
    detect_data_format,
    load_checkpoints,
    load_data,
    load_model,
    load_weights,
    resolve_model,
    select_images,
)

TINY = {"width": 0.0625, "input_size": 16, "batch_norm": True}


class _System:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def tiny_vgg(n_classes=3, seed=0):
    return make_classifier("vgg16", n_classes, random_state=seed, **TINY)


def skvmf_checkpoint(model, iteration, accuracy=0.5):
    """What skvmf.training writes: weights, step, accuracy and config."""
    return {
        "state_dict": model.state_dict(),
        "iteration": iteration,
        "accuracy": accuracy,
        "config": dict(model.skvmf_config),
    }


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------- checkpoints
def test_load_weights_layouts_and_mismatches(tmp_path):
    trained = tiny_vgg(seed=1)
    state = trained.state_dict()
    for name, obj in {
        "bare.pt": state,
        "model.pt": {"model": state, "epoch": 3},
        "skvmf.pt": skvmf_checkpoint(trained, 4),
        "parallel.pt": {f"module.{k}": v for k, v in state.items()},
    }.items():
        torch.save(obj, tmp_path / name)
        assert same_weights(load_weights(tiny_vgg(seed=2), tmp_path / name), trained)
    with pytest.raises(ValueError, match=r"bare\.pt.*shape mismatches.*classifier"):
        load_weights(tiny_vgg(n_classes=5), tmp_path / "bare.pt")
    plain = make_classifier("vgg16", 3, width=0.0625, input_size=16)
    with pytest.raises(ValueError, match=r"bare\.pt.*missing keys.*unexpected keys"):
        load_weights(plain, tmp_path / "bare.pt")
    torch.save({"epoch": 3}, tmp_path / "meta.pt")
    with pytest.raises(ValueError, match=r"meta\.pt' holds no weights"):
        load_weights(tiny_vgg(), tmp_path / "meta.pt")


def test_load_checkpoints_reads_each_file_with_its_iteration(tmp_path):
    models = {it: tiny_vgg(seed=it) for it in (0, 7, 30)}
    torch.save(models[30].state_dict(), tmp_path / "step_30.pt")  # from the name
    torch.save({"model": models[7].state_dict(), "epoch": 7}, tmp_path / "b.pth")
    torch.save(skvmf_checkpoint(models[0], 0), tmp_path / "checkpoint_iter0.pt")
    pairs = load_checkpoints(tmp_path, build=tiny_vgg)
    assert [it for it, _ in pairs] == [0, 7, 30]
    assert all(same_weights(m, models[it]) and not m.training for it, m in pairs)
    assert pairs[0][1].skvmf_iteration == 0 and pairs[0][1].skvmf_accuracy == 0.5
    # a list of files; skvmf checkpoints need no build
    only = load_checkpoints([tmp_path / "checkpoint_iter0.pt"])
    assert [it for it, _ in only] == [0]
    with pytest.raises(ValueError, match=r"(b\.pth|step_30\.pt)' holds plain weights"):
        load_checkpoints(tmp_path)
    torch.save(models[7].state_dict(), tmp_path / "again_7.pt")
    with pytest.raises(ValueError, match="share an iteration"):
        load_checkpoints(tmp_path, build=tiny_vgg)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"no \*\.pt or \*\.pth"):
        load_checkpoints(empty)
    with pytest.raises(ValueError, match="does not exist"):
        load_checkpoints(tmp_path / "missing")


@pytest.mark.parametrize("bad", ["crafted", "truncated", "noise", "other_arch"])
def test_a_bad_file_in_a_checkpoint_folder_is_named(tmp_path, bad):
    marker = tmp_path / "marker"
    folder = tmp_path / "run"
    folder.mkdir()
    torch.save(tiny_vgg().state_dict(), folder / "step_0.pt")
    path = folder / "step_5.pt"
    if bad == "crafted":
        torch.save({"state_dict": tiny_vgg().state_dict(), "x": _System(marker)}, path)
    elif bad == "truncated":
        raw = (folder / "step_0.pt").read_bytes()
        path.write_bytes(raw[: len(raw) // 3])
    elif bad == "noise":
        path.write_bytes(b"not a checkpoint")
    else:
        torch.save(tiny_vgg(n_classes=4).state_dict(), path)
    with pytest.raises(ValueError, match=r"step_5\.pt") as info:
        load_checkpoints(folder, build=tiny_vgg)
    assert "\n" not in str(info.value)
    assert not marker.exists()


# ---------------------------------------------------------------- the network
def test_resolve_model_from_a_skvmf_checkpoint_alone(tmp_path):
    trained = make_classifier("vgg16", 3, width=0.0625, input_size=24, random_state=3)
    torch.save(skvmf_checkpoint(trained, 12, 0.75), tmp_path / "c.pt")
    source = resolve_model(checkpoint=tmp_path / "c.pt")
    assert source.input_size == 24 and source.config["n_classes"] == 3
    assert source.description == "skvmf vgg16 from c.pt"
    model = source.load()
    assert same_weights(model, trained) and not model.training
    assert model.skvmf_iteration == 12 and model.skvmf_accuracy == 0.75
    with pytest.raises(ValueError, match="n_classes=5 contradicts the 3 classes"):
        source.build(5)
    torch.save(trained.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(ValueError, match=r"plain\.pt' is not a skvmf checkpoint"):
        resolve_model(checkpoint=tmp_path / "plain.pt")
    with pytest.raises(ValueError, match=r"none\.pt' does not exist"):
        resolve_model(checkpoint=tmp_path / "none.pt")


def test_resolve_model_by_name_and_factory(tmp_path):
    trained = tiny_vgg(seed=4)
    torch.save({"model": trained.state_dict()}, tmp_path / "w.pt")
    model = load_model(
        "skvmf:vgg16_bn", checkpoint=tmp_path / "w.pt", n_classes=3, **TINY_SIZE
    )
    assert same_weights(model, trained) and not model.training
    source = resolve_model("skvmf:vgg16", width=0.125)
    assert source.input_size == 32 and source.description == "skvmf:vgg16 (width 0.125)"
    assert resolve_model("vit_b_16").input_size == 224
    assert resolve_model("resnet18").input_size is None  # any size
    assert resolve_model("skvmf:vit").input_size == 16
    # a callable or a file.py:function factory, called with num_classes
    by_callable = resolve_model(model_factory=tiny_vgg, checkpoint=tmp_path / "w.pt")
    assert same_weights(by_callable.load(3), trained)
    (tmp_path / "nets.py").write_text(
        "from skvmf.models import make_classifier\n"
        "def build(num_classes):\n"
        "    return make_classifier('vgg16', num_classes, width=0.0625,\n"
        "                           input_size=16, batch_norm=True)\n"
        "def broken():\n"
        "    return 'not a network'\n"
    )
    by_file = resolve_model(model_factory=f"{tmp_path / 'nets.py'}:build")
    assert by_file.build(4).classifier[-1].out_features == 4
    with pytest.raises(ValueError, match="must return a torch.nn.Module"):
        resolve_model(model_factory=f"{tmp_path / 'nets.py'}:broken").build(3)
    with pytest.raises(ImportError, match="no function 'nothing'"):
        resolve_model(model_factory=f"{tmp_path / 'nets.py'}:nothing")
    with pytest.raises(ValueError, match="n_classes must be a positive integer"):
        resolve_model("resnet18").build()


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({}, "give the network"),
        ({"arch": "resnet18", "model_factory": tiny_vgg}, "not both"),
        ({"arch": "resnet18", "width": 0.5}, "width and input_size apply"),
        ({"arch": "skvmf:vit", "width": 0.5}, "not to skvmf:vit"),
        ({"arch": "vgg19"}, "arch"),
        ({"arch": "skvmf:vgg16", "width": 0.0}, "width"),
        ({"model_factory": "nocolon"}, "MODULE:FUNCTION"),
    ],
)
def test_resolve_model_refuses_contradictions(kwargs, words):
    with pytest.raises(ValueError, match=words):
        resolve_model(**kwargs)


TINY_SIZE = {"width": 0.0625, "input_size": 16}


def test_architecture_names():
    assert "resnet18" in ARCH_NAMES and "skvmf:vit" in ARCH_NAMES
    assert len(set(ARCH_NAMES)) == len(ARCH_NAMES) == 9 + 7
    # every network skvmf builds has its skvmf: name
    from skvmf.architectures import ARCHITECTURES

    assert {f"skvmf:{name}" for name in ARCHITECTURES} < set(ARCH_NAMES)


def test_renamed_names_still_work_with_a_future_warning(tmp_path):
    import skvmf.extraction
    import skvmf.sources

    with pytest.warns(FutureWarning, match="ARCH_NAMES.*removed in 0.2"):
        assert skvmf.sources.ARCHITECTURES is ARCH_NAMES
    with pytest.warns(FutureWarning, match="ARCH_NAMES"):
        from skvmf.sources import ARCHITECTURES  # noqa: F401
    assert "ARCHITECTURES" not in skvmf.sources.__all__
    trained = tiny_vgg(seed=1)
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    with pytest.warns(FutureWarning, match="load_weights.*removed in 0.2"):
        loaded = skvmf.sources.load_checkpoint(tiny_vgg(seed=2), tmp_path / "w.pt")
    assert same_weights(loaded, trained)
    with pytest.warns(FutureWarning, match="sources.load_weights.*removed in 0.2"):
        assert skvmf.extraction.load_checkpoint is load_weights
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        skvmf.sources.nothing  # noqa: B018


def test_check_model_before_any_work():
    data = load_digits_images("test", size=16, classes=[0, 1, 2])
    model = tiny_vgg()
    model.features[1].train()  # a mixed-mode network comes back as it was
    flags = [m.training for m in model.modules()]
    assert check_model(model, data, ["conv_53", "features.0"]) == [
        "features.42",
        "features.0",
    ]
    assert [m.training for m in model.modules()] == flags
    with pytest.raises(ValueError, match="has 5 outputs but the data has 3 classes"):
        check_model(tiny_vgg(n_classes=5), data)
    with pytest.raises(ValueError, match="closest valid names"):
        check_model(model, data, ["conv_35"])
    gray = ImageArrayDataset(np.zeros((3, 1, 16, 16), np.uint8), [0, 1, 2], "abc")
    with pytest.raises(
        ValueError, match=r"cannot process the images \(\(1, 16, 16\)\)"
    ):
        check_model(model, gray)
    bare = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(768, 3))
    with pytest.raises(ValueError, match="name the layers"):
        check_model(bare, data)


# ---------------------------------------------------------------- the images
def _folder(root, classes, n=3):
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (20, 20), (40 * i, 0, 0)).save(root / name / f"{i}.png")
    return root


def test_load_data_image_folder_and_split(tmp_path):
    _folder(tmp_path / "imgs" / "val", ["b", "a"])
    assert detect_data_format(tmp_path / "imgs") == "imagefolder"
    data = load_data(tmp_path / "imgs", split="val", size=12, normalize="none")
    assert data.classes == ["a", "b"] and tuple(data[0][0].shape) == (3, 12, 12)
    assert float(data[0][0].max()) <= 1.0 and data.mean == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match=r"split folder .*train' does not exist"):
        load_data(tmp_path / "imgs", split="train")
    with pytest.raises(ValueError, match="data folder .* does not exist"):
        load_data(tmp_path / "missing")


def test_a_one_class_folder_is_refused_in_the_user_s_terms(tmp_path):
    _folder(tmp_path / "one", ["cats"])
    with pytest.raises(ValueError) as info:
        load_data(tmp_path / "one")
    assert str(info.value) == (
        f"the image folder {str(tmp_path / 'one')!r} has 1 class (cats); analysis "
        "needs at least 2 classes, one sub-folder per class"
    )
    assert "n_classes" not in str(info.value)


def test_select_images():
    data = load_digits_images("test", size=8)
    assert select_images(data) is data
    sub = select_images(data, n_per_class=2, random_state=1)
    assert np.bincount(sub.targets.numpy()).tolist() == [2] * 10
    some = select_images(data, n_images=17, random_state=1)
    assert len(some) == 17 and np.all(np.diff(some.indices) > 0)
    assert set(some.indices) <= set(data.indices)
    with pytest.raises(ValueError, match="not both"):
        select_images(data, n_images=3, n_per_class=1)
    with pytest.raises(ValueError, match="exceeds the 450 images"):
        select_images(data, n_images=451)
