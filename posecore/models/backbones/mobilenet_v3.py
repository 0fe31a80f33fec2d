"""MobileNetV3 small/large backbones (torchvision's, randomly initialised), strides 4, 8, 16, 32."""

from __future__ import annotations

from collections.abc import Sequence

import torchvision
from torch import nn

from posecore.models.backbones._common import StagedBackbone, finish
from posecore.models.builders import BACKBONES


def _downsamples(layer: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) and m.stride != (1, 1) for m in layer.modules())


def _out_channels(layer: nn.Module) -> int:
    convs = [m for m in layer.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


class MobileNetV3Backbone(StagedBackbone):
    """torchvision ``MobileNetV3.features`` cut into four stages ending at strides 4, 8, 16, 32.

    A stage ends just before the next layer that downsamples (found from the convolutions'
    strides, not hard-coded); the stride-2 stem is folded into the first stage and the final 1x1
    conv (576 / 960 channels) into the last. Small: channels (16, 24, 48, 576); large: (24, 40, 112, 960).
    """

    def __init__(self, net: torchvision.models.MobileNetV3, out_indices: Sequence[int] | None = None) -> None:
        groups: list[list[nn.Module]] = []
        for layer in net.features:
            if not groups or _downsamples(layer):
                groups.append([])
            groups[-1].append(layer)
        # groups: stride 2 (stem), 4, 8, 16, 32; the stem joins the stride-4 stage
        if len(groups) != 5:
            raise ValueError(f"expected 5 resolutions in MobileNetV3 features, found {len(groups)}")
        groups = [groups[0] + groups[1], *groups[2:]]
        stages = [nn.Sequential(*g) for g in groups]
        super().__init__(stages, [_out_channels(s) for s in stages], (4, 8, 16, 32), out_indices)


@BACKBONES.register("mobilenetv3_small")
def mobilenetv3_small(out_indices: Sequence[int] | None = None, pretrained: str | None = None) -> MobileNetV3Backbone:
    """MobileNetV3-Small: channels (16, 24, 48, 576), strides (4, 8, 16, 32)."""
    net = torchvision.models.mobilenet_v3_small(weights=None)
    return finish(MobileNetV3Backbone(net, out_indices), "mobilenetv3_small", pretrained)


@BACKBONES.register("mobilenetv3_large")
def mobilenetv3_large(out_indices: Sequence[int] | None = None, pretrained: str | None = None) -> MobileNetV3Backbone:
    """MobileNetV3-Large: channels (24, 40, 112, 960), strides (4, 8, 16, 32)."""
    net = torchvision.models.mobilenet_v3_large(weights=None)
    return finish(MobileNetV3Backbone(net, out_indices), "mobilenetv3_large", pretrained)
