"""Shared pieces of the backbones: the base class, ``out_indices`` checking, conv-BN-act."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from torch import Tensor, nn

from posecore.models.pretrained import LoadReport, get_weights, load_pretrained

#: ImageNet RGB mean / std on 0..255 pixel values (torchvision's, scaled by 255).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


B = TypeVar("B", bound="Backbone")


def check_out_indices(
    out_indices: Sequence[int] | None, num_stages: int, default: Sequence[int], what: str = "out_indices"
) -> tuple[int, ...]:
    """``None`` -> ``default``; negative indices count from the end; strictly increasing, in range."""
    if out_indices is None:
        out_indices = default
    if isinstance(out_indices, int):
        out_indices = (out_indices,)
    resolved = tuple(i + num_stages if i < 0 else i for i in out_indices)
    if not resolved or any(not 0 <= i < num_stages for i in resolved) or list(resolved) != sorted(set(resolved)):
        raise ValueError(
            f"{what} {tuple(out_indices)} must be distinct, increasing stage indices in 0..{num_stages - 1}"
        )
    return resolved


class Backbone(nn.Module):
    """Base of every backbone: multi-scale features and what a caller must know about them.

    forward: x (B, 3, H, W) float32, normalised as ``(pixels - mean) / std`` (RGB, 0..255)
        -> tuple of (B, out_channels[i], H / strides[i], W / strides[i]), strides increasing.
    """

    out_channels: tuple[int, ...]
    strides: tuple[int, ...]
    out_indices: tuple[int, ...]
    #: Input normalisation (RGB, 0..255 pixel values); ImageNet's unless a family's weights differ.
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    #: What the last ``load_pretrained`` did (None for a random initialisation).
    pretrained_report: LoadReport | None = None
    #: How many stages, from the input, are frozen (see :meth:`freeze_stages`).
    frozen_stages: int = 0
    #: Images per pass through the frozen stages in training, 0: the whole batch (see :meth:`freeze_stages`).
    frozen_chunk: int = 0
    #: Whether ``forward`` honours ``frozen_chunk``.
    supports_frozen_chunk: bool = False

    def stage_modules(self) -> list[list[nn.Module]]:
        """The modules of each stage still in the network, from the input: entry 0 holds the
        stem and everything up to the first stage's output (stride 4)."""
        raise NotImplementedError(f"{type(self).__name__} does not list its stages")

    def freeze_stages(self, n: int, chunk: int = 0) -> None:
        """Freeze the first ``n`` stages (stem included), like MMPose's ``frozen_stages`` for
        n >= 1: their parameters stop training and their BatchNorm layers keep their running
        statistics (eval mode whatever :meth:`train` is asked). Fine-tuning from pretrained
        weights; it also skips the backward pass through the high-resolution early layers.

        ``chunk`` > 0 (backbones with ``supports_frozen_chunk``): in training, the frozen stages
        run without autograd on ``chunk`` images at a time. The same numbers per image (their
        BatchNorm is in eval mode), but the high-resolution activations of a CPU batch then fit
        the allocator's reusable heap instead of fresh pages that the kernel zeroes on every step.
        """
        stages = self.stage_modules()
        if not 0 <= n <= len(stages):
            raise ValueError(
                f"frozen_stages {n}: {type(self).__name__} here has {len(stages)} stages "
                f"(out_indices {self.out_indices}); use 0..{len(stages)}"
            )
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 0:
            raise ValueError(f"frozen_chunk must be an int >= 0 (images per pass; 0: whole batch), got {chunk!r}")
        if chunk and not self.supports_frozen_chunk:
            raise ValueError(
                f"frozen_chunk: {type(self).__name__} runs its frozen stages on the whole batch; remove frozen_chunk"
            )
        self.frozen_stages, self.frozen_chunk = n, chunk
        for group in stages[:n]:
            for module in group:
                module.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        if self.frozen_stages:
            for group in self.stage_modules()[: self.frozen_stages]:
                for module in group:
                    module.train(False)
        return self

    def load_weights(self, backbone_name: str, tag: str) -> LoadReport:
        """Load the registered weights ``tag`` (see ``posecore.models.pretrained``); exact fit or error."""
        weights = get_weights(backbone_name, tag)
        if (tuple(weights.mean), tuple(weights.std)) != (tuple(self.mean), tuple(self.std)):
            raise ValueError(
                f"weights {weights.name!r} expect mean {weights.mean} / std {weights.std}, "
                f"but {type(self).__name__} declares {self.mean} / {self.std}"
            )
        self.pretrained_report = load_pretrained(self, weights)
        return self.pretrained_report

    def truncate(self) -> None:
        """Drop the layers that no selected output depends on (after loading weights)."""


def finish(backbone: B, name: str, pretrained: str | None) -> B:
    """What every builder ends with: load ``pretrained`` weights if asked, then drop unused layers.

    Weights are loaded into the full network so that a file is checked to fit exactly.
    """
    if pretrained is not None:
        backbone.load_weights(name, pretrained)
    backbone.truncate()
    return backbone


class StagedBackbone(Backbone):
    """A backbone that is a chain of stages; returns the outputs of the stages in ``out_indices``.

    Stages after the last selected one are dropped by :meth:`truncate` (once pretrained weights
    are loaded), so every parameter takes part in the forward pass.
    """

    def __init__(
        self,
        stages: Sequence[nn.Module],
        stage_channels: Sequence[int],
        stage_strides: Sequence[int],
        out_indices: Sequence[int] | None,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self._stage_channels = tuple(stage_channels)
        self._stage_strides = tuple(stage_strides)
        self.out_indices = check_out_indices(out_indices, len(stages), range(len(stages)))
        self.out_channels = tuple(self._stage_channels[i] for i in self.out_indices)
        self.strides = tuple(self._stage_strides[i] for i in self.out_indices)
        self.mean, self.std = mean, std

    def truncate(self) -> None:
        """Drop the stages after the last selected one."""
        del self.stages[self.out_indices[-1] + 1 :]

    def stage_modules(self) -> list[list[nn.Module]]:
        return [[stage] for stage in self.stages]

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


class ConvBNAct(nn.Module):
    """conv (no bias) -> BatchNorm -> activation; submodules ``conv``, ``bn``, ``act``.

    While the BatchNorm uses its running statistics (eval mode: inference, validation, frozen
    stages, ``freeze_bn``), the forward folds it into the convolution, conv(x, w * a) + (beta -
    mean * a) with a = gamma / sqrt(var + eps): the same function in one pass over the output
    instead of two (eval-mode BatchNorm on channels_last CPU tensors is slower than the 1x1
    convolution before it). Gradients reach the same parameters; the state dict is unchanged.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        act: Callable[[], nn.Module] | None = nn.ReLU,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
        conv: type[nn.Conv2d] = nn.Conv2d,
    ) -> None:
        super().__init__()
        self.conv = conv(
            in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum)
        self.act = act() if act is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        bn = self.bn
        if bn.training or bn.running_mean is None or bn.running_var is None:
            return self.act(bn(self.conv(x)))
        scale = bn.running_var.add(bn.eps).rsqrt()
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias
        weight = self.conv.weight * scale.reshape(-1, *([1] * (self.conv.weight.dim() - 1)))
        return self.act(self.conv._conv_forward(x, weight, shift))
