"""Every view on transformer layouts: tiny hand-built transformers whose token
gradients are known in closed form, and torchvision's ViT-B/16 and Swin-T
(random weights, fixed seeds) against a Grad-CAM re-derived with the
hand-written reshape (and pytorch-grad-cam when it is installed)."""

import numpy as np
import pytest
import torch
import torchvision
from _helpers import assert_no_hooks
from torch import nn

from skvmf.extraction import TorchFeatureExtractor
from skvmf.featuremaps import feature_maps, top_activating
from skvmf.saliency import grad_cam, guided_backprop, input_gradient
from skvmf.synthesis import ActivationMaximizer, channel_mean, filter_output

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class TinyViT(nn.Module):
    """Patchify conv -> tokens (class + register tokens in front) -> ``mix``
    (the hooked layer, an identity) -> logits ``W (mean of patch tokens +
    class token) + b``.

    So ``d y_c / d t_pk = W_ck / P`` for each of the P patch tokens and
    ``W_ck`` for the class token: Grad-CAM is ``ReLU(sum_k W_ck t_pk / P)``.
    """

    def __init__(self, dim=5, patch=2, n_classes=3, cls=True, n_registers=0, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Conv2d(1, dim, patch, stride=patch)
        self.n_prefix = (1 + n_registers) if cls else 0
        self.prefix = nn.Parameter(torch.randn(1, self.n_prefix, dim))
        self.mix = nn.Identity()
        self.norm = nn.LayerNorm(dim)  # a transformer holds LayerNorms
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)  # (N, P, dim)
        t = torch.cat([self.prefix.expand(len(x), -1, -1), t], dim=1)
        t = self.mix(t)
        pooled = t[:, self.n_prefix :].mean(dim=1)
        if self.n_prefix:
            pooled = pooled + t[:, 0]
        return self.head(pooled)


class TinySwin(nn.Module):
    """Channels-last maps (N, H, W, C): patchify conv, permute, LayerNorm."""

    def __init__(self, dim=5, patch=2, n_classes=3, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Conv2d(1, dim, patch, stride=patch)
        self.norm = nn.LayerNorm(dim)
        self.mix = nn.Identity()
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x):
        t = self.norm(self.embed(x).permute(0, 2, 3, 1))  # (N, H, W, C)
        t = self.mix(t)
        return self.head(t.mean(dim=(1, 2)))


def _images(n=3, h=8, w=8, seed=1):
    return torch.randn(n, 1, h, w, generator=torch.Generator().manual_seed(seed))


def _patch_maps(model, x):
    """The patch tokens as (N, K, H, W), by hand: the embedding conv's output."""
    with torch.no_grad():
        return model.embed(x).numpy()


# -- tiny transformers: regions and maps -----------------------------------------
@pytest.mark.parametrize(
    "cls, n_registers, size",
    [(True, 0, (8, 8)), (False, 0, (8, 8)), (True, 0, (8, 12)), (True, 4, (8, 8))],
)
def test_tiny_vit_regions_are_patch_tokens(cls, n_registers, size):
    model = TinyViT(cls=cls, n_registers=n_registers)
    model.train()
    x = _images(h=size[0], w=size[1])
    ext = TorchFeatureExtractor(model, "mix", sample_layer=None).fit(x)
    fs = ext.extract(x)
    h, w = size[0] // 2, size[1] // 2
    ref = _patch_maps(model, x).transpose(0, 2, 3, 1).reshape(3, h * w, 5)
    np.testing.assert_allclose(fs.regions["mix"], ref, rtol=1e-6, atol=1e-6)
    assert fs.grid == (h, w)
    assert ext.layer_shapes_["mix"] == (5, h, w)
    assert "tokens" in ext.layer_layouts_["mix"]
    assert model.training and all(m.training for m in model.modules())
    assert_no_hooks(model)
    fm = feature_maps(model, x, "mix")
    np.testing.assert_allclose(fm, _patch_maps(model, x), rtol=1e-6, atol=1e-6)


def test_tiny_swin_channels_last_maps():
    model, x = TinySwin(), _images()
    with torch.no_grad():
        ref = model.norm(model.embed(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    fm = feature_maps(model, x, "norm")
    np.testing.assert_allclose(fm, ref.numpy(), rtol=1e-6, atol=1e-6)
    fs = TorchFeatureExtractor(model, ["norm", "mix"]).fit(x).extract(x)
    rows = ref.permute(0, 2, 3, 1).reshape(3, 16, 5).numpy()
    for key in ("norm", "mix"):  # "mix" (an Identity) decided by geometry: 4x4x5
        np.testing.assert_allclose(fs.regions[key], rows, rtol=1e-6, atol=1e-6)
    # a channels-last sample layer is pooled over its grid, not over (W, C)
    ext = TorchFeatureExtractor(model, [], sample_layer="norm", output="sample")
    sample = ext.fit(x).transform(x)
    np.testing.assert_allclose(sample, ref.mean(dim=(2, 3)).numpy(), rtol=1e-5)


def test_ambiguous_channels_last_is_an_error_naming_reshape():
    # dim 4 and a 4x4 grid: (N, 4, 4, 4) reads either way; an Identity says nothing
    model, x = TinySwin(dim=4), _images()
    with pytest.raises(ValueError, match="reshape="):
        TorchFeatureExtractor(model, "mix").fit(x)
    with pytest.raises(ValueError, match="reshape="):
        grad_cam(model, x, layer="mix")
    assert_no_hooks(model)
    fm = feature_maps(model, x, "mix", reshape="nhwc")
    fs = TorchFeatureExtractor(model, "mix", reshape={"mix": "nhwc"}).fit(x).extract(x)
    np.testing.assert_allclose(
        fs.regions["mix"], fm.transpose(0, 2, 3, 1).reshape(3, 16, 4), rtol=1e-6
    )
    # LayerNorm's own output is channels-last without asking
    np.testing.assert_allclose(feature_maps(model, x, "norm"), fm, rtol=1e-6)


def test_reshape_callable_and_errors():
    model, x = TinyViT(), _images()

    def fold(t):
        return t[:, 1:].reshape(len(t), 4, 4, -1).permute(0, 3, 1, 2)

    np.testing.assert_allclose(
        feature_maps(model, x, "mix", reshape=fold), _patch_maps(model, x), rtol=1e-6
    )
    with pytest.raises(ValueError, match="reshape must be"):
        feature_maps(model, x, "mix", reshape="tokenz")
    with pytest.raises(ValueError, match=r"must return \(N, C, H, W\)"):
        feature_maps(model, x, "mix", reshape=lambda t: t)
    with pytest.raises(ValueError, match="needs a 4-D output"):
        feature_maps(model, x, "mix", reshape="nhwc")
    with pytest.raises(ValueError, match="reshape has entries"):
        TorchFeatureExtractor(model, "mix", reshape={"head": "tokens"}).fit(x)


def test_token_grid_that_cannot_be_told_is_an_error():
    # 6 x 10 px and a 3 x 3 patch conv: 2 x 3 tokens + 1; the stride-3 stem is
    # padded, so it is no patch embedding and 7 tokens fit no grid of 6:10
    class Odd(TinyViT):
        def __init__(self):
            super().__init__()
            self.embed = nn.Conv2d(1, 5, 3, stride=3, padding=1)

    model = Odd()
    x = _images(h=6, w=10)
    with pytest.raises(ValueError, match="token grid.*reshape="):
        TorchFeatureExtractor(model, "mix").fit(x)
    fold = lambda t: t[:, 1:].reshape(len(t), 2, 4, -1).permute(0, 3, 1, 2)  # noqa: E731
    assert feature_maps(model, x, "mix", reshape=fold).shape == (3, 5, 2, 4)


# -- tiny transformers: gradients by hand -----------------------------------------
@pytest.mark.parametrize("cls", [True, False])
def test_grad_cam_on_tokens_by_hand(cls):
    model, x = TinyViT(cls=cls), _images()
    target = np.array([0, 2, 1])
    got = grad_cam(model, x, target, layer="mix", upsample=False)
    A = _patch_maps(model, x)  # (N, K, 4, 4)
    W = model.head.weight.detach().numpy()
    alpha = W[target] / 16.0  # d y_c / d t_pk = W_ck / P, the same at every p
    ref = np.maximum(np.einsum("nk,nkhw->nhw", alpha, A), 0)
    ref = (
        ref / np.where(ref.max(axis=(1, 2)) > 0, ref.max(axis=(1, 2)), 1)[:, None, None]
    )
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    assert_no_hooks(model)


def test_input_gradient_of_one_patch_token_by_hand():
    model, x = TinyViT(), _images()
    k, (i, j) = 3, (1, 2)
    g = input_gradient(model, x, layer="mix", channel=k, position=(i, j))
    ref = np.zeros((3, 1, 8, 8))
    ref[:, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2] = model.embed.weight[k].detach()
    np.testing.assert_allclose(g, ref, rtol=1e-6, atol=1e-7)
    # the channel mean: the conv weight tiled over all 16 patches, / 16
    g = input_gradient(model, x, layer="mix", channel=k)
    tiled = np.tile(model.embed.weight[k].detach().numpy(), (1, 4, 4)) / 16
    np.testing.assert_allclose(g, np.broadcast_to(tiled, g.shape), rtol=1e-6)
    with pytest.raises(ValueError, match="nn.ReLU"):  # GELU-free, ReLU-free model
        guided_backprop(model, x, layer="mix", channel=k)


def test_top_activating_and_synthesis_read_patch_tokens():
    model, x = TinyViT(), _images(n=6)
    A = _patch_maps(model, x)
    res = top_activating(model, x, "mix", channels=[1, 4], k=2)
    np.testing.assert_allclose(
        res.activations, A[:, [1, 4]].mean(axis=(2, 3)), rtol=1e-6
    )
    am = ActivationMaximizer(steps=3, lr=0.1, random_state=0)
    out = am.run(model, channel_mean("mix", 2), start=x[:2])
    np.testing.assert_allclose(
        out.objective_start, A[:2, 2].mean(axis=(1, 2)), rtol=1e-5
    )
    out = am.run(model, filter_output("mix", 2, 3, 1), start=x[:2])
    np.testing.assert_allclose(out.objective_start, A[:2, 2, 3, 1], rtol=1e-5)
    assert out.objective_final.mean() > out.objective_start.mean()


def test_tuple_output_and_class_token_only_are_clear_errors():
    class Pair(nn.Module):
        def forward(self, t):
            return t, t.mean()

    class WithPair(TinyViT):
        def __init__(self):
            super().__init__()
            self.pair = Pair()

        def forward(self, x):
            t = self.embed(x).flatten(2).transpose(1, 2)
            t = torch.cat([self.prefix.expand(len(x), -1, -1), t], dim=1)
            t = self.mix(self.pair(t)[0])
            return self.head(t[:, 0])  # only the class token reaches the logits

    model, x = WithPair(), _images()
    with pytest.raises(ValueError, match="returns a tuple"):
        TorchFeatureExtractor(model, "pair").fit(x)
    with pytest.raises(ValueError, match="returns a tuple"):
        grad_cam(model, x, layer="pair")
    with pytest.raises(ValueError, match="class token"):
        grad_cam(model, x, layer="mix")
    assert_no_hooks(model)
    assert model.training


# -- torchvision ViT-B/16 and Swin-T -----------------------------------------------
def _reference_grad_cam(model, x, module, fold, target):
    """Grad-CAM re-derived with plain hooks and a hand-written reshape."""
    store = {}
    handle = module.register_forward_hook(lambda m, i, o: store.setdefault("a", o))
    try:
        model.eval()
        logits = model(x)
    finally:
        handle.remove()
    score = logits[torch.arange(len(x)), torch.as_tensor(target)].sum()
    (grad,) = torch.autograd.grad(score, store["a"])
    A = fold(store["a"]).detach().double().numpy()
    G = fold(grad).double().numpy()
    cam = np.maximum(np.einsum("nk,nkhw->nhw", G.mean(axis=(2, 3)), A), 0)
    return cam / cam.max(axis=(1, 2), keepdims=True)


def _corr(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(weights=None, num_classes=10)
    # torchvision zero-initialises the head: every class gradient would be 0
    nn.init.normal_(model.heads.head.weight, std=0.5)
    return model.eval()


@pytest.fixture(scope="module")
def swin():
    torch.manual_seed(0)
    return torchvision.models.swin_t(weights=None, num_classes=10).eval()


def _x224(n=2, seed=3):
    return torch.randn(n, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


def _vit_fold(t):
    # the reshape pytorch-grad-cam's documentation asks ViT users to write
    return t[:, 1:].reshape(t.shape[0], 14, 14, t.shape[2]).permute(0, 3, 1, 2)


def _swin_fold(t):
    return t.permute(0, 3, 1, 2)


@pytest.mark.slow
def test_vit_b16_regions_and_grad_cam(vit):
    x = _x224()
    layer = "encoder.layers.encoder_layer_10.ln_1"
    vit.train()
    ext = TorchFeatureExtractor(vit, ["block_6", layer]).fit(x[:1])
    assert ext.layers_[0] == "encoder.layers.encoder_layer_5"
    fs = ext.extract(x[:1])
    assert fs.regions[layer].shape == (1, 196, 768)  # one region per patch token
    assert fs.grid == (14, 14)
    assert all(m.training for m in vit.modules())
    assert_no_hooks(vit)
    target = [3, 7]
    got = grad_cam(vit, x, target, layer=layer, upsample=False)
    module = vit.get_submodule(layer)
    ref = _reference_grad_cam(vit, x, module, _vit_fold, target)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert _corr(got, ref) > 0.9999
    # the tokens of the same layer as regions are the hand-folded map
    fm = feature_maps(vit, x[:1], layer)
    with torch.no_grad():
        store = {}
        h = module.register_forward_hook(lambda m, i, o: store.setdefault("a", o))
        vit(x[:1])
        h.remove()
    np.testing.assert_allclose(fm, _vit_fold(store["a"]).numpy(), rtol=1e-6)
    np.testing.assert_allclose(
        fs.regions[layer][0], fm[0].reshape(768, 196).T, rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="class token"):
        grad_cam(vit, x[:1], layer="encoder.layers.encoder_layer_11")
    with pytest.raises(ValueError, match="returns a tuple"):
        grad_cam(vit, x[:1], layer="encoder.layers.encoder_layer_11.self_attention")
    assert_no_hooks(vit)


@pytest.mark.slow
def test_swin_t_regions_and_grad_cam(swin):
    x = _x224()
    layer = "features.7.1.norm1"
    fs = TorchFeatureExtractor(swin, layer).fit(x[:1]).extract(x[:1])
    # (N, 7, 7, 768), not 5376 "regions" of 7 "channels"
    assert fs.regions[layer].shape == (1, 49, 768)
    target = [1, 8]
    got = grad_cam(swin, x, target, layer=layer, upsample=False)
    ref = _reference_grad_cam(swin, x, swin.get_submodule(layer), _swin_fold, target)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert _corr(got, ref) > 0.9999
    assert_no_hooks(swin)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["vit", "swin"])
def test_grad_cam_agrees_with_pytorch_grad_cam(which, request):
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = request.getfixturevalue(which)
    layer, fold = (
        ("encoder.layers.encoder_layer_10.ln_1", _vit_fold)
        if which == "vit"
        else ("features.7.1.norm1", _swin_fold)
    )
    x, target = _x224(), [3, 7]
    ours = grad_cam(model, x, target, layer=layer)
    with pgc.GradCAM(
        model, target_layers=[model.get_submodule(layer)], reshape_transform=fold
    ) as ref_cam:
        theirs = ref_cam(x, targets=[ClassifierOutputTarget(c) for c in target])
    for n in range(len(x)):
        assert _corr(ours[n], theirs[n]) > 0.99


# -- the small ViT of the digits recipe ---------------------------------------------
def test_small_vit_builds_and_reads_its_blocks():
    from skvmf._torch.layers import detect_architecture
    from skvmf.models import make_vit_classifier

    model = make_vit_classifier(n_classes=3, random_state=0)
    again = make_vit_classifier(n_classes=3, random_state=0)
    assert all(
        torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters())
    )
    assert model.heads.head.weight.abs().sum() > 0  # not torchvision's zero head
    arch = detect_architecture(model)
    assert arch.family == "vit"
    assert arch.default == ("block_1", "block_2", "block_3", "block_4")
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    fs = TorchFeatureExtractor(model).fit(x).extract(x)
    assert fs.grid == (4, 4) and fs.sample.shape == (4, 64)
    assert all(v.shape == (4, 16, 64) for v in fs.regions.values())
    heat = grad_cam(model, x, 1, layer="encoder.layers.encoder_layer_3.ln_1")
    assert heat.shape == (4, 16, 16) and heat.max() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        make_vit_classifier(input_size=15)
    with pytest.raises(ValueError, match="must divide dim"):
        make_vit_classifier(n_heads=3)
    gray = make_vit_classifier(in_channels=1, random_state=0)
    assert gray(torch.zeros(1, 1, 16, 16)).shape == (1, 10)


def test_small_vit_digits_recipe_checkpoints_reload(tmp_path):
    from skvmf.models import list_checkpoints, load_checkpoint, train_digits_classifier

    model, result = train_digits_classifier(
        "vit",
        classes=[0, 1],
        epochs=1,
        checkpoint_dir=tmp_path,
        checkpoint_iterations=[0, 2],
    )
    assert model.skvmf_config["arch"] == "vit" and result.n_iterations >= 2
    found = list_checkpoints(tmp_path)
    assert [it for it, _ in found] == [0, 2]
    last = load_checkpoint(found[-1][1])
    first = load_checkpoint(found[0][1])
    assert type(last).__name__ == "VisionTransformer"
    assert last.skvmf_config == model.skvmf_config
    assert not all(
        torch.equal(a, b) for a, b in zip(first.parameters(), last.parameters())
    )
    with pytest.raises(ValueError, match="unknown option"):
        train_digits_classifier("vit", width=0.5)


@pytest.mark.slow
def test_small_vit_digits_recipe_reaches_95_percent():
    from skvmf.models import train_digits_classifier

    model, result = train_digits_classifier("vit")  # ~40 s on one thread
    assert result.test_accuracy >= 0.95
    assert not model.training
