"""Necks: every registered one builds on a typical pyramid, runs forward and backward, and
declares its outputs truthfully."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import posecore.models.necks  # noqa: F401  (registers the necks)
from posecore.models.builders import NECKS

#: A ResNet-18-like pyramid for a 64 x 48 crop: channels, strides, and feature sizes (H, W).
IN_CHANNELS = (16, 24, 32, 40)
STRIDES = (4, 8, 16, 32)
SIZES = ((16, 12), (8, 6), (4, 3), (2, 2))  # ceil(64 / s), ceil(48 / s)


def _pyramid() -> tuple[Tensor, ...]:
    torch.manual_seed(0)
    return tuple(torch.randn(2, c, h, w, requires_grad=True) for c, (h, w) in zip(IN_CHANNELS, SIZES, strict=True))


@pytest.mark.parametrize("name", NECKS.names())
def test_neck_forward_backward_and_declared_outputs(name: str) -> None:
    neck = NECKS.build(name, in_channels=IN_CHANNELS, strides=STRIDES)
    feats = _pyramid()
    outs = neck(feats)
    assert isinstance(outs, tuple) and len(outs) == len(neck.out_channels) == len(neck.strides)
    for out, channels in zip(outs, neck.out_channels, strict=True):
        assert out.shape[:2] == (2, channels) and torch.isfinite(out).all()
    for out, stride in zip(outs, neck.strides, strict=True):
        if out.ndim == 4:
            assert out.shape[-2:] == SIZES[STRIDES.index(stride)]
    sum(o.square().mean() for o in outs).backward()
    assert all(p.grad is not None for p in neck.parameters())
    assert any(f.grad is not None and f.grad.abs().sum() > 0 for f in feats)


def test_global_average_pooling_is_the_spatial_mean() -> None:
    neck = NECKS.build("global_average_pooling", in_channels=IN_CHANNELS, strides=STRIDES)
    feats = _pyramid()
    outs = neck(feats)
    assert neck.out_channels == IN_CHANNELS
    for out, feat in zip(outs, feats, strict=True):
        assert out.shape == feat.shape[:2]
        torch.testing.assert_close(out, feat.mean(dim=(2, 3)))


def test_fpn_levels_and_top_down_flow() -> None:
    neck = NECKS.build("fpn", in_channels=IN_CHANNELS, strides=STRIDES, out_channels=8)
    assert neck.out_channels == (8, 8, 8, 8) and neck.strides == STRIDES
    feats = _pyramid()
    outs = neck(feats)
    assert [o.shape for o in outs] == [(2, 8, h, w) for h, w in SIZES]
    # top-down: the finest output depends on the coarsest input; the coarsest not on the finest
    outs[0].sum().backward(retain_graph=True)
    assert feats[3].grad is not None and feats[3].grad.abs().sum() > 0
    for f in feats:
        f.grad = None
    outs[3].sum().backward()
    assert feats[0].grad is None
    only_fine = NECKS.build("fpn", in_channels=IN_CHANNELS, strides=STRIDES, out_channels=8, out_indices=(0,))
    assert only_fine.strides == (4,) and len(only_fine(feats)) == 1


def test_fpn_refuses_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="strides"):
        NECKS.build("fpn", in_channels=IN_CHANNELS, strides=STRIDES[:3])
    neck = NECKS.build("fpn", in_channels=IN_CHANNELS, strides=STRIDES)
    with pytest.raises(ValueError, match="4 levels got 3"):
        neck(_pyramid()[:3])


def test_feature_map_processor_select_and_concat() -> None:
    feats = _pyramid()
    select = NECKS.build("feature_map_processor", in_channels=IN_CHANNELS, strides=STRIDES, select_index=(1, 3))
    assert select.out_channels == (24, 40) and select.strides == (8, 32)
    assert all(a is b for a, b in zip(select(feats), (feats[1], feats[3]), strict=True))
    last = NECKS.build("feature_map_processor", in_channels=IN_CHANNELS, strides=STRIDES)
    assert last.out_channels == (40,) and last.strides == (32,)

    concat = NECKS.build(
        "feature_map_processor", in_channels=IN_CHANNELS, strides=STRIDES, select_index=(0, 2), concat=True
    )
    assert concat.out_channels == (48,) and concat.strides == (4,)
    (out,) = concat(feats)
    assert out.shape == (2, 48, 16, 12)
    torch.testing.assert_close(out[:, :16], feats[0])
    torch.testing.assert_close(out[:, 16:], F.interpolate(feats[2], size=(16, 12), mode="bilinear"))
    with pytest.raises(ValueError, match="select_index"):
        NECKS.build("feature_map_processor", in_channels=IN_CHANNELS, strides=STRIDES, select_index=(2, 0))
