"""VideoPose3D's temporal convolutional network (Pavllo et al., "3D human pose estimation in video with
temporal convolutions and semi-supervised training", CVPR 2019; MMPose ``TCN`` + ``TemporalRegressionHead``).

inputs (N, T, J, C) -> joints (N, T - receptive_field + 1, J', 3), with a
:class:`~posecore.codecs.pose_lifting.VideoPoseLifting` codec. Layers, for receptive field 3 ** n:

- expand: Conv1d(J * C, channels, 3), BN, ReLU, dropout;
- n - 1 residual blocks with dilations 3, 9, 27, 81: Conv1d(channels, channels, 3, dilation d),
  BN, ReLU, dropout, Conv1d(channels, channels, 1), BN, ReLU, dropout, plus the input cropped
  to the output's frames;
- Conv1d(channels, J' * 3, 1).

Receptive fields 27 (expand + 2 blocks), 81 (+ 3), 243 (+ 4). Convolutions are unpadded, so
output ``i`` sees input frames ``i .. i + receptive_field - 1``. ``causal`` decides which of
those frames output ``i`` stands for, and so where the residual crops: the window's centre
(``i + receptive_field // 2``) or, causal, its last frame (``i + receptive_field - 1``: no
future frames, for real time). :meth:`TemporalConvNet.output_frames` gives that frame index and
:meth:`TemporalConvNet.pad_inputs` edge-pads a sequence so that every frame gets an output
(VideoPose3D's evaluation).

``use_stride_conv`` (MMPose; VideoPose3D's ``TemporalModelOptimized1f``) is the training-time
form for windows of exactly ``receptive_field`` frames and one output: each convolution strides
by its kernel instead of dilating, which skips the intermediate frames that one output never
uses. It is a switch, not a different network: the weights are the same, so train with it on
and run inference on long sequences with it off.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from posecore.codecs.pose_lifting import LiftingCodec
from posecore.models.lifting._base import Lifter, dropout_rate, positive_int, power_of_three
from posecore.models.lifting.builders import register_lifter

__all__ = ["TemporalConvNet", "videopose3d"]

KERNEL = 3


class _ConvBNReLU(nn.Module):
    """Conv1d (no bias), BN, ReLU, dropout; with ``strided`` the conv strides by its kernel instead of dilating."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, dilation=dilation, bias=False)
        self.bn = nn.BatchNorm1d(out_channels)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, strided: bool = False) -> Tensor:
        k = self.conv.kernel_size[0]
        y = F.conv1d(x, self.conv.weight, stride=k) if strided and k > 1 else self.conv(x)
        return self.drop(F.relu(self.bn(y)))


class _TemporalBlock(nn.Module):
    """A dilated kernel-3 layer and a pointwise layer, plus the input cropped to the output frames."""

    def __init__(self, channels: int, dilation: int, dropout: float, causal: bool) -> None:
        super().__init__()
        self.dilated = _ConvBNReLU(channels, channels, KERNEL, dilation, dropout)
        self.pointwise = _ConvBNReLU(channels, channels, 1, 1, dropout)
        self.pad = (KERNEL - 1) * dilation // 2
        self.causal = causal

    def forward(self, x: Tensor, strided: bool = False) -> Tensor:
        y = self.pointwise(self.dilated(x, strided))
        if strided:
            # Each output covers KERNEL consecutive frames of x: its centre, or (causal) last one.
            start = KERNEL - 1 if self.causal else KERNEL // 2
            res = x[:, :, start::KERNEL]
        else:
            shift = self.pad if self.causal else 0
            res = x[:, :, self.pad + shift : x.shape[2] - self.pad + shift]
        return res + y


class TemporalConvNet(Lifter):
    """inputs (N, T, J, C) -> joints (N, T - receptive_field + 1, J', 3) in the codec's target space (module docstring).

    ``receptive_field`` 27, 81 or 243 (any 3 ** n); ``channels`` 1024 as VideoPose3D; ``dropout``
    0.25; ``causal`` outputs stand for the last frame of their window; ``use_stride_conv`` the
    training-time form for T = receptive_field (a plain attribute: switch it freely).
    """

    temporal: ClassVar[bool] = True

    def __init__(
        self,
        codec: LiftingCodec,
        receptive_field: int = 243,
        causal: bool = False,
        channels: int = 1024,
        dropout: float = 0.25,
        use_stride_conv: bool = False,
    ) -> None:
        super().__init__(codec)
        name = type(self).__name__
        layers = power_of_three(name, receptive_field)
        self.receptive_field = receptive_field
        self.causal = bool(causal)
        self.channels = positive_int(name, "channels", channels)
        self.use_stride_conv = bool(use_stride_conv)
        dropout = dropout_rate(name, dropout)
        self.expand = _ConvBNReLU(codec.num_keypoints * codec.in_channels, self.channels, KERNEL, 1, dropout)
        self.blocks = nn.ModuleList(
            _TemporalBlock(self.channels, KERNEL**i, dropout, self.causal) for i in range(1, layers)
        )
        self.final = nn.Conv1d(self.channels, codec.num_targets * 3, 1)
        self.init_weights()

    def forward(self, inputs: Tensor) -> Tensor:
        """inputs (N, T, J, C), T >= receptive_field (== with ``use_stride_conv``) -> joints (N, T_out, J', 3)."""
        j, c, rf = self.codec.num_keypoints, self.codec.in_channels, self.receptive_field
        if inputs.ndim != 4 or tuple(inputs.shape[2:]) != (j, c):
            raise ValueError(
                f"{type(self).__name__} takes inputs (N, T, J={j}, C={c}) from its codec's encode; got {tuple(inputs.shape)}"
            )
        frames = inputs.shape[1]
        if frames < rf or (self.use_stride_conv and frames != rf):
            need = f"exactly {rf}" if self.use_stride_conv else f"at least {rf}"
            raise ValueError(
                f"{type(self).__name__} with receptive field {rf} needs {need} frames; got {frames} "
                f"({'switch use_stride_conv off for longer sequences' if self.use_stride_conv else 'pad_inputs pads a short sequence'})"
            )
        x = inputs.flatten(2).transpose(1, 2)  # (N, J * C, T)
        x = self.expand(x, self.use_stride_conv)
        for block in self.blocks:
            x = block(x, self.use_stride_conv)
        out = self.final(x).transpose(1, 2)  # (N, T_out, J' * 3)
        return out.unflatten(-1, (self.codec.num_targets, 3))

    def output_frames(self, num_frames: int) -> range:
        """The input frame each output of a T = ``num_frames`` sequence stands for (its window's centre or last)."""
        first = self.receptive_field - 1 if self.causal else self.receptive_field // 2
        return range(first, first + num_frames - self.receptive_field + 1)

    def pad_inputs(self, inputs: Tensor) -> Tensor:
        """inputs (N, T, J, C) -> (N, T + receptive_field - 1, J, C), edge frames repeated, so outputs = T frames.

        Centred: receptive_field // 2 copies of the first and of the last frame; causal: receptive_field - 1
        copies of the first frame only (VideoPose3D's evaluation padding).
        """
        before = self.receptive_field - 1 if self.causal else self.receptive_field // 2
        after = self.receptive_field - 1 - before
        parts = [inputs[:, :1].expand(-1, before, -1, -1), inputs, inputs[:, -1:].expand(-1, after, -1, -1)]
        return torch.cat(parts, dim=1)


@register_lifter("videopose3d")
def videopose3d(
    codec: LiftingCodec,
    *,
    receptive_field: int = 243,
    causal: bool = False,
    channels: int = 1024,
    dropout: float = 0.25,
    use_stride_conv: bool = False,
) -> TemporalConvNet:
    """VideoPose3D's TCN for a ``video_pose_lifting`` codec: receptive field 27, 81 or 243, centred or causal."""
    return TemporalConvNet(
        codec,
        receptive_field=receptive_field,
        causal=causal,
        channels=channels,
        dropout=dropout,
        use_stride_conv=use_stride_conv,
    )
