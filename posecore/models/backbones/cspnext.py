"""CSPNeXt backbones (the RTMDet / RTMPose backbone), stages at strides 4, 8, 16, 32.

Architecture as in MMDetection's ``CSPNeXt`` (P5 arch) with ``CSPLayer`` of ``CSPNeXtBlock``s
and channel attention: a 3-conv stem (stride 2), then four stages, each a stride-2 3x3 conv and
a CSP layer; the last stage has a spatial-pyramid-pooling bottleneck before its CSP layer and no
identity shortcuts in its blocks. SiLU, BatchNorm eps 1e-3 / momentum 0.03. Inside the stages
module names follow MMPose's (``main_conv``, ``short_conv``, ``final_conv``, ``blocks``,
``attention.fc``, ``conv1``/``conv2``, ``depthwise_conv``/``pointwise_conv``; conv-BN pairs as
``conv``/``bn``), so an RTMPose checkpoint maps with three prefix rules in a ``PretrainedWeights``
key map: ``backbone.stem.`` -> ``stages.0.0.``, ``backbone.stage1.`` -> ``stages.0.1.``,
``backbone.stage(N).`` -> ``stages.(N-1).``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from posecore.models.backbones._common import ConvBNAct, StagedBackbone, finish
from posecore.models.builders import BACKBONES

ConvBNSiLU = functools.partial(ConvBNAct, act=nn.SiLU, bn_eps=1e-3, bn_momentum=0.03)

#: P5 arch: (in channels, out channels, blocks, identity shortcuts, SPP) per stage, before scaling.
P5_STAGES: tuple[tuple[int, int, int, bool, bool], ...] = (
    (64, 128, 3, True, False),
    (128, 256, 6, True, False),
    (256, 512, 6, True, False),
    (512, 1024, 3, False, True),
)


class DepthwiseSeparableConv(nn.Module):
    """kxk depthwise conv-BN-SiLU then 1x1 pointwise conv-BN-SiLU (``depthwise_conv``, ``pointwise_conv``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.depthwise_conv = ConvBNSiLU(in_channels, in_channels, kernel_size, groups=in_channels)
        self.pointwise_conv = ConvBNSiLU(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


class CSPNeXtBlock(nn.Module):
    """3x3 conv then 5x5 depthwise-separable conv, plus the input when ``add_identity``. (B, C, H, W) -> same."""

    def __init__(self, channels: int, add_identity: bool, kernel_size: int = 5) -> None:
        super().__init__()
        self.conv1 = ConvBNSiLU(channels, channels, 3)
        self.conv2 = DepthwiseSeparableConv(channels, channels, kernel_size)
        self.add_identity = add_identity

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.conv1(x))
        return out + x if self.add_identity else out


class ChannelAttention(nn.Module):
    """x * hardsigmoid(1x1 conv(global average of x)), per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, 1, bias=True)
        self.act = nn.Hardsigmoid()

    def forward(self, x: Tensor) -> Tensor:
        return x * self.act(self.fc(x.mean((2, 3), keepdim=True)))


class CSPLayer(nn.Module):
    """Cross-stage-partial layer: a 1x1 "main" path through the blocks and a 1x1 "short" path,
    concatenated, reweighted by channel attention, fused by a 1x1 conv. (B, C_in, H, W) -> (B, C_out, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, add_identity: bool) -> None:
        super().__init__()
        mid = int(out_channels * 0.5)
        self.main_conv = ConvBNSiLU(in_channels, mid, 1)
        self.short_conv = ConvBNSiLU(in_channels, mid, 1)
        self.final_conv = ConvBNSiLU(2 * mid, out_channels, 1)
        self.blocks = nn.Sequential(*(CSPNeXtBlock(mid, add_identity) for _ in range(num_blocks)))
        self.attention = ChannelAttention(2 * mid)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.cat((self.blocks(self.main_conv(x)), self.short_conv(x)), dim=1)
        return self.final_conv(self.attention(x))


class SPPFBottleneck(nn.Module):
    """Spatial pyramid pooling: 1x1 conv to C/2, max-pools of 5, 9, 13 (as three chained 5x5
    pools, which give the same maxima), concat, 1x1 conv. (B, C_in, H, W) -> (B, C_out, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, pool_size: int = 5, num_pools: int = 3) -> None:
        super().__init__()
        mid = in_channels // 2
        self.conv1 = ConvBNSiLU(in_channels, mid, 1)
        self.conv2 = ConvBNSiLU(mid * (num_pools + 1), out_channels, 1)
        self.pool_size, self.num_pools = pool_size, num_pools

    def forward(self, x: Tensor) -> Tensor:
        feats = [self.conv1(x)]
        for _ in range(self.num_pools):
            feats.append(F.max_pool2d(feats[-1], self.pool_size, 1, self.pool_size // 2))
        return self.conv2(torch.cat(feats, dim=1))


class CSPNeXt(StagedBackbone):
    """CSPNeXt with ``deepen_factor`` / ``widen_factor`` scaling.

    x (B, 3, H, W) -> up to 4 features at strides (4, 8, 16, 32) with channels
    ``int(c * widen_factor)`` for c in (128, 256, 512, 1024). Stage 0 includes the stem.
    """

    def __init__(self, deepen_factor: float, widen_factor: float, out_indices: Sequence[int] | None = None) -> None:
        stem_channels = int(P5_STAGES[0][0] * widen_factor)
        stem = nn.Sequential(
            ConvBNSiLU(3, stem_channels // 2, 3, stride=2),
            ConvBNSiLU(stem_channels // 2, stem_channels // 2, 3),
            ConvBNSiLU(stem_channels // 2, stem_channels, 3),
        )
        stages: list[nn.Module] = []
        channels: list[int] = []
        for in_c, out_c, blocks, add_identity, use_spp in P5_STAGES:
            in_c, out_c = int(in_c * widen_factor), int(out_c * widen_factor)
            blocks = max(round(blocks * deepen_factor), 1)
            layers: list[nn.Module] = [ConvBNSiLU(in_c, out_c, 3, stride=2)]
            if use_spp:
                layers.append(SPPFBottleneck(out_c, out_c))
            layers.append(CSPLayer(out_c, out_c, blocks, add_identity))
            stages.append(nn.Sequential(*layers))
            channels.append(out_c)
        stages[0] = nn.Sequential(stem, stages[0])
        super().__init__(stages, channels, (4, 8, 16, 32), out_indices)


@BACKBONES.register("cspnext_tiny")
def cspnext_tiny(out_indices: Sequence[int] | None = None, pretrained: str | None = None) -> CSPNeXt:
    """CSPNeXt-tiny (deepen 0.167, widen 0.375): channels (48, 96, 192, 384), strides (4, 8, 16, 32)."""
    return finish(CSPNeXt(0.167, 0.375, out_indices), "cspnext_tiny", pretrained)


@BACKBONES.register("cspnext_s")
def cspnext_s(out_indices: Sequence[int] | None = None, pretrained: str | None = None) -> CSPNeXt:
    """CSPNeXt-s (deepen 0.33, widen 0.5): channels (64, 128, 256, 512), strides (4, 8, 16, 32)."""
    return finish(CSPNeXt(0.33, 0.5, out_indices), "cspnext_s", pretrained)


@BACKBONES.register("cspnext_m")
def cspnext_m(out_indices: Sequence[int] | None = None, pretrained: str | None = None) -> CSPNeXt:
    """CSPNeXt-m (deepen 0.67, widen 0.75): channels (96, 192, 384, 768), strides (4, 8, 16, 32)."""
    return finish(CSPNeXt(0.67, 0.75, out_indices), "cspnext_m", pretrained)
