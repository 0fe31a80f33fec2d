"""ResNet-18/50 backbones (torchvision's, randomly initialised), four stages at strides 4, 8, 16, 32."""

from __future__ import annotations

from collections.abc import Sequence

import torchvision
from torch import nn

from posecore.models.backbones._common import StagedBackbone, finish
from posecore.models.builders import BACKBONES


class ResNetBackbone(StagedBackbone):
    """torchvision ResNet as four stages.

    x (B, 3, H, W) -> up to 4 features: stage 0 = stem + layer1 (stride 4), then layer2..4
    (strides 8, 16, 32); channels (64, 128, 256, 512) for BasicBlock nets, (256, 512, 1024, 2048)
    for Bottleneck nets. Module names: ``stages.0.{conv1,bn1,layer1}``, ``stages.1`` = layer2, ...
    """

    def __init__(self, net: torchvision.models.ResNet, out_indices: Sequence[int] | None = None) -> None:
        stem = nn.Sequential()
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1"):
            stem.add_module(name, getattr(net, name))
        stages = [stem, net.layer2, net.layer3, net.layer4]
        channels = [_block_channels(layer) for layer in (net.layer1, net.layer2, net.layer3, net.layer4)]
        super().__init__(stages, channels, (4, 8, 16, 32), out_indices)


def _block_channels(layer: nn.Sequential) -> int:
    last = layer[-1]
    bn = last.bn3 if hasattr(last, "bn3") else last.bn2
    return bn.num_features


@BACKBONES.register("resnet18")
def resnet18(out_indices: Sequence[int] | None = None, pretrained: str | None = None) -> ResNetBackbone:
    """ResNet-18: channels (64, 128, 256, 512), strides (4, 8, 16, 32); 11.2 M parameters."""
    return finish(ResNetBackbone(torchvision.models.resnet18(weights=None), out_indices), "resnet18", pretrained)


@BACKBONES.register("resnet50")
def resnet50(out_indices: Sequence[int] | None = None, pretrained: str | None = None) -> ResNetBackbone:
    """ResNet-50: channels (256, 512, 1024, 2048), strides (4, 8, 16, 32); 23.5 M parameters."""
    return finish(ResNetBackbone(torchvision.models.resnet50(weights=None), out_indices), "resnet50", pretrained)
