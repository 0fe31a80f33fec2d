"""CSPNeXt-PAFPN neck: declared outputs, both information paths, options, RTMDet module layout, checks."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import posecore.models.necks  # noqa: F401  (registers the necks)
from posecore.models.builders import NECKS
from posecore.models.necks.pafpn import CSPNeXtPAFPN

IN_CHANNELS = (24, 40, 80)
STRIDES = (8, 16, 32)
SIZES = ((8, 6), (4, 3), (2, 2))  # a 64 x 48 input: ceil(64 / s), ceil(48 / s)


def _pyramid(sizes=SIZES) -> tuple[Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    return tuple(
        torch.randn(2, c, h, w, generator=g).requires_grad_(True) for c, (h, w) in zip(IN_CHANNELS, sizes, strict=True)
    )


def _neck(**options) -> CSPNeXtPAFPN:
    return NECKS.build("pafpn", in_channels=IN_CHANNELS, strides=STRIDES, **{"out_channels": 16, **options})


def test_every_level_out_with_out_channels_at_its_stride():
    neck = _neck(num_csp_blocks=1)
    assert neck.out_channels == (16, 16, 16) and neck.strides == STRIDES
    assert isinstance(neck.out_channels, tuple) and isinstance(neck.strides, tuple)
    outs = neck(_pyramid())
    assert [tuple(o.shape) for o in outs] == [(2, 16, h, w) for h, w in SIZES]
    square = neck(_pyramid(((32, 32), (16, 16), (8, 8))))  # a 256 x 256 input
    assert [tuple(o.shape[-2:]) for o in square] == [(32, 32), (16, 16), (8, 8)]


def test_top_down_and_bottom_up_paths_connect_every_level():
    neck = _neck(num_csp_blocks=1)
    neck.eval()  # BatchNorm statistics would couple the samples
    feats = _pyramid()
    outs = neck(feats)
    # top-down: the finest output sees the coarsest input; bottom-up: the coarsest output sees the finest
    (fine_from_coarse,) = torch.autograd.grad(outs[0].sum(), feats[-1], retain_graph=True)
    (coarse_from_fine,) = torch.autograd.grad(outs[-1].sum(), feats[0])
    assert fine_from_coarse.abs().sum() > 0 and coarse_from_fine.abs().sum() > 0


def test_module_layout_follows_rtmdet():
    neck = _neck(num_csp_blocks=2)
    names = set(neck.state_dict())
    for key in (
        "reduce_layers.0.conv.weight",  # 80 -> 40, 1x1
        "reduce_layers.1.bn.running_mean",
        "top_down_blocks.0.main_conv.conv.weight",
        "top_down_blocks.1.blocks.1.conv2.depthwise_conv.conv.weight",
        "downsamples.1.conv.weight",
        "bottom_up_blocks.0.final_conv.bn.weight",
        "out_convs.2.conv.weight",
    ):
        assert key in names, key
    assert not any("attention" in key for key in names)  # RTMDet's neck has no channel attention
    assert neck.reduce_layers[0].conv.weight.shape == (40, 80, 1, 1)
    assert neck.top_down_blocks[0].main_conv.conv.weight.shape == (20, 80, 1, 1)  # cat 2 x 40 -> 40 * 0.5
    assert neck.bottom_up_blocks[1].final_conv.conv.weight.shape == (80, 80, 1, 1)
    assert neck.downsamples[0].conv.stride == (2, 2)


def test_expand_ratio_and_depthwise_options():
    wide = _neck(num_csp_blocks=1, expand_ratio=1.0)
    assert wide.top_down_blocks[0].main_conv.conv.out_channels == 40
    dw = _neck(num_csp_blocks=1, use_depthwise=True)
    plain = _neck(num_csp_blocks=1)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(dw) < count(plain)
    assert dw.downsamples[0].depthwise_conv.conv.stride == (2, 2)
    assert dw.top_down_blocks[0].blocks[0].conv1.depthwise_conv.conv.groups == 20
    outs = dw(_pyramid())
    assert [tuple(o.shape) for o in outs] == [(2, 16, h, w) for h, w in SIZES]


def test_refuses_what_it_cannot_merge():
    with pytest.raises(ValueError, match="double"):
        NECKS.build("pafpn", in_channels=IN_CHANNELS, strides=(8, 16, 64))
    with pytest.raises(ValueError, match="one stride per input"):
        NECKS.build("pafpn", in_channels=IN_CHANNELS, strides=STRIDES[:2])
    with pytest.raises(ValueError, match="out_channels"):
        NECKS.build("pafpn", in_channels=IN_CHANNELS, strides=STRIDES, out_channels=0)
    with pytest.raises(ValueError, match="3 levels got 2"):
        _neck(num_csp_blocks=1)(_pyramid()[:2])


def test_pass_through_levels_come_out_first_unchanged():
    fine = torch.randn(2, 12, 16, 12)
    neck = NECKS.build(
        "pafpn",
        in_channels=(12, *IN_CHANNELS),
        strides=(4, *STRIDES),
        out_channels=16,
        num_csp_blocks=1,
        pass_through=1,
    )
    assert neck.out_channels == (12, 16, 16, 16) and neck.strides == (4, *STRIDES)
    outs = neck((fine, *_pyramid()))
    assert outs[0] is fine and [tuple(o.shape) for o in outs[1:]] == [(2, 16, h, w) for h, w in SIZES]
    merged = _neck(num_csp_blocks=1)
    merged.load_state_dict(neck.state_dict())  # the merging part is the plain neck's
    merged.eval(), neck.eval()
    feats = _pyramid()
    for a, b in zip(neck((fine, *feats))[1:], merged(feats), strict=True):
        torch.testing.assert_close(a, b)
    for bad in (-1, 3, True):
        with pytest.raises(ValueError, match="pass_through"):
            _neck(pass_through=bad)
    with pytest.raises(ValueError, match="at least 2 levels"):
        _neck(pass_through=2)
