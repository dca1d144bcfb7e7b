"""The layout reader: which (N, K, H, W) map a layer's output is."""

import pytest
import torch
import torchvision
from torch import nn

from skvmf._torch.layers import detect_architecture
from skvmf._torch.layout import check_reshape, resolve_layout, to_maps


def _with_norm():
    # a model that may hold channels-last tensors (it has a LayerNorm)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.LayerNorm(8))


def test_convolutional_models_keep_nchw_even_when_shapes_tie():
    cnn = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
    # (N, 8, 8, 8) from 8 x 8 images reads either way; a CNN has no LayerNorm
    assert resolve_layout((2, 8, 8, 8), (8, 8), model=cnn, module=cnn[1]).kind == "nchw"
    assert resolve_layout((2, 3, 5, 9), (8, 8), model=cnn).kind == "nchw"


@pytest.mark.parametrize(
    "shape, module, kind",
    [
        ((2, 7, 7, 768), None, "nhwc"),  # Swin's last stage: only (7, 7) is a grid
        ((2, 768, 7, 7), None, "nchw"),
        ((2, 768, 1, 1), nn.AdaptiveAvgPool2d(1), "nchw"),
        ((2, 8, 8, 8), nn.LayerNorm(8), "nhwc"),  # the module decides a tie
        ((2, 8, 8, 8), nn.Conv2d(8, 8, 1), "nchw"),
        ((2, 8, 8, 8), nn.Linear(4, 8), "nhwc"),
        ((2, 8, 8, 8), torchvision.ops.Permute([0, 3, 1, 2]), "nchw"),
        ((2, 8, 8, 8), nn.Sequential(nn.Linear(4, 8), nn.GELU()), "nhwc"),
    ],
)
def test_four_d_layouts(shape, module, kind):
    got = resolve_layout(
        shape, (224, 224) if 768 in shape else (8, 8), model=_with_norm(), module=module
    )
    assert got.kind == kind


def test_four_d_tie_without_a_hint_names_reshape():
    with pytest.raises(ValueError, match=r"could be \(N, C, H, W\) or \(N, H, W, C\)"):
        resolve_layout((2, 8, 8, 8), (8, 8), model=_with_norm(), module=nn.Identity())
    got = resolve_layout((2, 8, 8, 8), (8, 8), model=_with_norm(), reshape="nhwc")
    assert got.kind == "nhwc"


def test_tokens_from_the_patch_embedding():
    with torch.device("meta"):
        vit = torchvision.models.vit_b_16(weights=None)
    layout = resolve_layout((2, 197, 768), (224, 224), model=vit)
    assert (layout.kind, layout.n_prefix, layout.grid) == ("tokens", 1, (14, 14))
    # a patchify stem (kernel == stride) gives the grid of any model
    stem = nn.Sequential(nn.Conv2d(3, 6, 4, stride=4), nn.LayerNorm(6))
    layout = resolve_layout((2, 4 + 6 * 8, 6), (24, 32), model=stem)
    assert (layout.n_prefix, layout.grid) == (4, (6, 8))  # class + 3 registers


@pytest.mark.parametrize(
    "n_tokens, size, prefix, grid",
    [(49, (7, 7), 0, (7, 7)), (50, (7, 7), 1, (7, 7)), (7, (6, 9), 1, (2, 3))],
)
def test_tokens_from_the_aspect_ratio(n_tokens, size, prefix, grid):
    layout = resolve_layout((1, n_tokens, 4), size, model=nn.LayerNorm(4))
    assert (layout.n_prefix, layout.grid) == (prefix, grid)


def test_tokens_that_fit_no_grid_or_several_are_errors():
    with pytest.raises(ValueError, match="no grid of the image's aspect ratio"):
        resolve_layout((1, 203, 4), (224, 224), model=nn.LayerNorm(4))
    # a patch grid that leaves too many tokens in front is not trusted either
    stem = nn.Sequential(nn.Conv2d(3, 6, 4, stride=4), nn.LayerNorm(6))
    with pytest.raises(ValueError, match="patch embedding gives a 2x2 grid"):
        resolve_layout((1, 4 + 30, 6), (8, 8), model=stem)


def test_to_maps_and_check_reshape():
    t = torch.arange(2 * 5 * 3.0).reshape(2, 5, 3)
    layout = resolve_layout(t.shape, (2, 2), model=nn.LayerNorm(3))
    maps = to_maps(t, layout)
    assert maps.shape == (2, 3, 2, 2)
    assert torch.equal(maps[1, 2].flatten(), t[1, 1:, 2])
    assert check_reshape("auto") is None and check_reshape(None) is None
    with pytest.raises(ValueError, match="reshape must be"):
        check_reshape(3)
    with pytest.raises(ValueError, match="not a map"):
        resolve_layout((2, 3, 4, 5, 6), (8, 8))


def test_transformer_aliases():
    with torch.device("meta"):
        vit32 = torchvision.models.vit_b_32(weights=None)
        swin = torchvision.models.swin_t(weights=None)
    arch = detect_architecture(vit32)
    assert arch.family == "vit"
    assert arch.default == ("block_3", "block_6", "block_9", "block_12")
    assert arch.aliases["block_12"] == "encoder.layers.encoder_layer_11"
    arch = detect_architecture(swin)
    assert arch.family == "swin"
    assert [arch.aliases[a] for a in arch.default] == [
        "features.3.0",
        "features.5.1",
        "features.5.4",
        "features.7.1",
    ]
    assert arch.aliases["stage_2"] == "features.3"
    assert len([a for a in arch.aliases if a.startswith("block_")]) == 12


def test_four_d_grid_of_no_layout_names_reshape():
    # (N, 6, 6, 6) from 8 x 8 px (an unpadded 3x3 conv) in a model with a
    # LayerNorm: neither pair of axes is the image downsampled; a ReLU says nothing
    with pytest.raises(ValueError, match="is neither an .* reshape="):
        resolve_layout((2, 6, 6, 6), (8, 8), model=_with_norm(), module=nn.ReLU())
    # the convolution itself is channels-first
    got = resolve_layout(
        (2, 6, 6, 6), (8, 8), model=_with_norm(), module=nn.Conv2d(3, 6, 3)
    )
    assert got.kind == "nchw"


@pytest.mark.parametrize(
    ("grid", "expected"),
    [(None, None), (3, (3, 3)), ((2, 5), (2, 5)), ([1, 1], (1, 1))],
)
def test_check_grid_accepts_an_int_or_a_pair(grid, expected):
    from skvmf._torch.layout import check_grid

    assert check_grid(grid) == expected


@pytest.mark.parametrize("grid", [0, (2, 0), (2, 2, 2), "4", (2.5, 2), True, (1j, 2)])
def test_check_grid_refuses_everything_else(grid):
    from skvmf._torch.layout import check_grid

    with pytest.raises(ValueError, match="grid must be None, a positive int"):
        check_grid(grid)
