"""HRNet backbones (W32 and a small W18), high-resolution branches at strides 4, 8, 16, 32.

Layout as in MMPose's ``HRNet`` (Sun et al. 2019): a stride-4 stem (two stride-2 3x3 convs), a
stage of Bottleneck blocks, then stages 2-4 with 2, 3, 4 parallel branches of BasicBlocks whose
resolutions halve and channels double; each module ends with fuse layers that add every branch
into every other (1x1 conv + nearest upsampling from lower resolutions, chains of stride-2 3x3
convs from higher ones; any input size works, as upsampling goes to the exact target size). Module names follow MMPose's (``conv1``, ``bn1``, ``layer1``,
``transitionN``, ``stageN.M.branches``, ``stageN.M.fuse_layers``), so its checkpoints map with a
``backbone.`` prefix rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from posecore.models.backbones._common import Backbone, check_out_indices, finish
from posecore.models.builders import BACKBONES


@dataclass(frozen=True)
class HRStage:
    """One HRNet stage: ``num_modules`` HR modules with ``num_blocks[b]`` BasicBlocks on branch b."""

    num_modules: int
    num_blocks: tuple[int, ...]
    num_channels: tuple[int, ...]


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _blocks(block: type[BasicBlock] | type[Bottleneck], in_channels: int, planes: int, num: int) -> nn.Sequential:
    out_channels = planes * block.expansion
    downsample = None
    if in_channels != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
    layers = [block(in_channels, planes, downsample=downsample)]
    layers += [block(out_channels, planes) for _ in range(num - 1)]
    return nn.Sequential(*layers)


class HRModule(nn.Module):
    """Parallel branches, then fusion into the branches in ``out_branches``.

    xs: list of (B, C_b, H / 2^b, W / 2^b) -> list of the same shapes, one per ``out_branches``.
    """

    def __init__(self, channels: Sequence[int], num_blocks: Sequence[int], out_branches: Sequence[int]) -> None:
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList(_blocks(BasicBlock, channels[b], channels[b], num_blocks[b]) for b in range(n))
        self.out_branches = tuple(out_branches)
        self.fuse_layers = nn.ModuleList()
        if n == 1:
            return
        for i in self.out_branches:
            row = nn.ModuleList()
            for j in range(n):
                if j > i:
                    row.append(
                        nn.Sequential(
                            nn.Conv2d(channels[j], channels[i], 1, bias=False),
                            nn.BatchNorm2d(channels[i]),
                        )  # then nearest upsampling to branch i's size (in forward: exact for any input size)
                    )
                elif j == i:
                    row.append(nn.Identity())
                else:
                    steps = [_conv_bn(channels[j], channels[j], 3, 2) for _ in range(i - j - 1)]
                    steps.append(_conv_bn(channels[j], channels[i], 3, 2, relu=False))
                    row.append(nn.Sequential(*steps))
            self.fuse_layers.append(row)
        self.relu = nn.ReLU()

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        if len(xs) == 1:
            return xs
        fused = []
        for i, row in zip(self.out_branches, self.fuse_layers, strict=True):
            y = xs[i]
            for j, layer in enumerate(row):
                if j < i:
                    y = y + layer(xs[j])
                elif j > i:
                    y = y + F.interpolate(layer(xs[j]), size=xs[i].shape[-2:], mode="nearest")
            fused.append(self.relu(y))
        return fused


class HRNet(Backbone):
    """HRNet: x (B, 3, H, W) -> the branches in ``out_indices`` (default: only the stride-4 one).

    Branch b has stride 4 * 2^b and ``stage4.num_channels[b]`` channels (W32: 32, 64, 128, 256).
    """

    def __init__(
        self,
        stage1_blocks: int,
        stages: tuple[HRStage, HRStage, HRStage],
        out_indices: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.out_indices = check_out_indices(out_indices, len(stages[-1].num_channels), (0,))
        self.out_channels = tuple(stages[-1].num_channels[i] for i in self.out_indices)
        self.strides = tuple(4 * 2**i for i in self.out_indices)

        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _blocks(Bottleneck, 64, 64, stage1_blocks)

        previous = [64 * Bottleneck.expansion]
        for s, stage in enumerate(stages, start=2):
            self.add_module(f"transition{s - 1}", self._transition(previous, stage.num_channels))
            modules = []
            for m in range(stage.num_modules):
                last = s == 4 and m == stage.num_modules - 1
                out_branches = self.out_indices if last else range(len(stage.num_channels))
                modules.append(HRModule(stage.num_channels, stage.num_blocks, out_branches))
            self.add_module(f"stage{s}", nn.Sequential(*modules))
            previous = list(stage.num_channels)
        _init_weights(self)

    @staticmethod
    def _transition(previous: Sequence[int], current: Sequence[int]) -> nn.ModuleList:
        layers = nn.ModuleList()
        for i, c in enumerate(current):
            if i < len(previous):
                layers.append(nn.Identity() if previous[i] == c else _conv_bn(previous[i], c, 3))
            else:  # a new, lower-resolution branch grows from the lowest existing one
                steps = [_conv_bn(previous[-1], previous[-1], 3, 2) for _ in range(i - len(previous))]
                steps.append(_conv_bn(previous[-1], c, 3, 2))
                layers.append(nn.Sequential(*steps))
        return layers

    def stage_modules(self) -> list[list[nn.Module]]:
        """MMPose's HRNet stages: stem + layer1, then (transition1, stage2), (transition2, stage3), ..."""
        stem = [self.conv1, self.bn1, self.conv2, self.bn2, self.layer1]
        return [stem] + [[getattr(self, f"transition{s - 1}"), getattr(self, f"stage{s}")] for s in (2, 3, 4)]

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        for transition, stage in (
            (self.transition1, self.stage2),
            (self.transition2, self.stage3),
            (self.transition3, self.stage4),
        ):
            xs = [t(xs[min(i, len(xs) - 1)]) for i, t in enumerate(transition)]
            xs = stage(xs)
        # the last module fused only into the selected branches
        return tuple(xs)


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@BACKBONES.register("hrnet_w32")
def hrnet_w32(out_indices: Sequence[int] | None = None, pretrained: str | None = None) -> HRNet:
    """HRNet-W32 (MMPose layout: 1/4/3 modules in stages 2/3/4, 4 blocks per branch): branch
    channels (32, 64, 128, 256) at strides (4, 8, 16, 32); default output the stride-4 branch."""
    stages = (
        HRStage(1, (4, 4), (32, 64)),
        HRStage(4, (4, 4, 4), (32, 64, 128)),
        HRStage(3, (4, 4, 4, 4), (32, 64, 128, 256)),
    )
    return finish(HRNet(4, stages, out_indices), "hrnet_w32", pretrained)


@BACKBONES.register("hrnet_w18_small")
def hrnet_w18_small(out_indices: Sequence[int] | None = None, pretrained: str | None = None) -> HRNet:
    """HRNet-W18-small (the "small v2" layout: 2 Bottlenecks, then 1/3/2 modules with 2 blocks per
    branch): branch channels (18, 36, 72, 144) at strides (4, 8, 16, 32); default the stride-4 branch."""
    stages = (
        HRStage(1, (2, 2), (18, 36)),
        HRStage(3, (2, 2, 2), (18, 36, 72)),
        HRStage(2, (2, 2, 2, 2), (18, 36, 72, 144)),
    )
    return finish(HRNet(2, stages, out_indices), "hrnet_w18_small", pretrained)
