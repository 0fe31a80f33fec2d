"""CSPNeXt path-aggregation FPN (RTMDet's ``CSPNeXtPAFPN``): top-down then bottom-up, CSP blocks at each merge."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from posecore.models.backbones.cspnext import ConvBNSiLU, CSPNeXtBlock, DepthwiseSeparableConv
from posecore.models.builders import NECKS


def _separable(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> DepthwiseSeparableConv:
    """The backbone's depthwise-separable conv, strided in its depthwise part (MMCV's ``DepthwiseSeparableConvModule``)."""
    conv = DepthwiseSeparableConv(in_channels, out_channels, kernel_size)
    if stride != 1:
        conv.depthwise_conv = ConvBNSiLU(in_channels, in_channels, kernel_size, stride=stride, groups=in_channels)
    return conv


class NeckCSPLayer(nn.Module):
    """The CSP layer of RTMDet's neck: (B, C_in, H, W) -> (B, C_out, H, W).

    The backbone's ``CSPLayer`` less its channel attention, with a free ``expand_ratio`` (main /
    short path width over C_out) and, with ``use_depthwise``, depthwise-separable 3x3 convs in the
    blocks (MMDetection's ``CSPLayer(use_cspnext_block=True, channel_attention=False)``; module
    names as there, so RTMDet neck weights map one to one).
    """

    def __init__(
        self, in_channels: int, out_channels: int, num_blocks: int, expand_ratio: float, use_depthwise: bool
    ) -> None:
        super().__init__()
        mid = int(out_channels * expand_ratio)
        self.main_conv = ConvBNSiLU(in_channels, mid, 1)
        self.short_conv = ConvBNSiLU(in_channels, mid, 1)
        self.final_conv = ConvBNSiLU(2 * mid, out_channels, 1)
        blocks = [CSPNeXtBlock(mid, add_identity=False) for _ in range(num_blocks)]
        if use_depthwise:
            for block in blocks:
                block.conv1 = _separable(mid, mid, 3)
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        return self.final_conv(torch.cat((self.blocks(self.main_conv(x)), self.short_conv(x)), dim=1))


class CSPNeXtPAFPN(nn.Module):
    """feats: tuple of (B, in_channels[i], H_i, W_i), each stride twice the previous
    -> tuple of (B, out_channels, H_i, W_i), one per level, strides unchanged.

    Top-down: the coarser level is reduced by a 1x1 conv to the finer level's channels,
    upsampled (nearest, to the finer map's exact size) and merged with it by a CSP layer.
    Bottom-up: the finer result is downsampled by a stride-2 3x3 conv and merged with the
    coarser top-down result by a CSP layer. Each level ends in a 3x3 conv to ``out_channels``.
    As MMDetection's ``CSPNeXtPAFPN`` (SiLU, BN eps 1e-3 / momentum 0.03, module names alike).

    ``pass_through``: the first N inputs skip the merging and come out first, unchanged (their
    channels and strides kept), so that a head can read finer backbone features beside the
    merged levels (the one-stage head's stride-4 heatmap skip).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        strides: Sequence[int],
        out_channels: int = 128,
        num_csp_blocks: int = 3,
        expand_ratio: float = 0.5,
        use_depthwise: bool = False,
        pass_through: int = 0,
    ) -> None:
        super().__init__()
        in_channels, strides = tuple(in_channels), tuple(strides)
        if isinstance(pass_through, bool) or not isinstance(pass_through, int) or not 0 <= pass_through < len(strides):
            raise ValueError(
                f"pafpn pass_through must be an int from 0 to {len(strides) - 1} (inputs passed on unmerged, finest "
                f"first); got {pass_through!r}"
            )
        self.pass_through = pass_through
        kept_channels, kept_strides = in_channels[:pass_through], strides[:pass_through]
        in_channels, strides = in_channels[pass_through:], strides[pass_through:]
        if len(in_channels) != len(strides) or len(in_channels) < 2:
            raise ValueError(
                f"pafpn needs one stride per input and at least 2 levels; got {len(in_channels)} in_channels "
                f"and {len(strides)} strides (select backbone levels with its out_indices)"
            )
        if any(b != 2 * a for a, b in zip(strides, strides[1:], strict=False)):
            raise ValueError(
                f"pafpn merges levels by 2x up/downsampling, so each stride must double the previous; got {strides} "
                "(pick consecutive backbone levels with out_indices, e.g. strides (8, 16, 32))"
            )
        for name, value in (("out_channels", out_channels), ("num_csp_blocks", num_csp_blocks)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"pafpn {name} must be a positive int; got {value!r}")
        if not 0 < expand_ratio <= 4:
            raise ValueError(f"pafpn expand_ratio must be in (0, 4]; got {expand_ratio!r}")
        conv = _separable if use_depthwise else ConvBNSiLU
        n = len(in_channels)

        def csp(c_in: int, c_out: int) -> NeckCSPLayer:
            return NeckCSPLayer(c_in, c_out, num_csp_blocks, expand_ratio, use_depthwise)

        # index j of the top-down lists merges level n-1-j into level n-2-j (coarse to fine)
        self.reduce_layers = nn.ModuleList(
            ConvBNSiLU(in_channels[i], in_channels[i - 1], 1) for i in range(n - 1, 0, -1)
        )
        self.top_down_blocks = nn.ModuleList(
            csp(2 * in_channels[i - 1], in_channels[i - 1]) for i in range(n - 1, 0, -1)
        )
        self.downsamples = nn.ModuleList(conv(in_channels[i], in_channels[i], 3, stride=2) for i in range(n - 1))
        self.bottom_up_blocks = nn.ModuleList(csp(2 * in_channels[i], in_channels[i + 1]) for i in range(n - 1))
        self.out_convs = nn.ModuleList(conv(c, out_channels, 3) for c in in_channels)
        self.in_channels = in_channels
        self.out_channels: tuple[int, ...] = kept_channels + (out_channels,) * n
        self.strides: tuple[int, ...] = kept_strides + strides

    def forward(self, feats: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        n = len(self.in_channels)
        if len(feats) != n + self.pass_through:
            raise ValueError(f"pafpn built for {n + self.pass_through} levels got {len(feats)} features")
        kept, feats = tuple(feats[: self.pass_through]), tuple(feats[self.pass_through :])
        inner = [feats[-1]]  # top-down results, finest first
        for j, i in enumerate(range(n - 1, 0, -1)):
            coarse = self.reduce_layers[j](inner[0])
            inner[0] = coarse
            up = F.interpolate(coarse, size=feats[i - 1].shape[-2:], mode="nearest")
            inner.insert(0, self.top_down_blocks[j](torch.cat((up, feats[i - 1]), dim=1)))
        outs = [inner[0]]
        for i in range(n - 1):
            down = self.downsamples[i](outs[-1])
            outs.append(self.bottom_up_blocks[i](torch.cat((down, inner[i + 1]), dim=1)))
        return kept + tuple(conv(x) for conv, x in zip(self.out_convs, outs, strict=True))


@NECKS.register("pafpn")
def pafpn(
    in_channels: Sequence[int],
    strides: Sequence[int],
    out_channels: int = 128,
    num_csp_blocks: int = 3,
    expand_ratio: float = 0.5,
    use_depthwise: bool = False,
    pass_through: int = 0,
) -> CSPNeXtPAFPN:
    """RTMDet's CSPNeXt-PAFPN: every level with ``out_channels`` channels, strides unchanged (each double
    the last); the first ``pass_through`` inputs come out first, unmerged."""
    return CSPNeXtPAFPN(in_channels, strides, out_channels, num_csp_blocks, expand_ratio, use_depthwise, pass_through)
