"""SimpleBaseline3D (Martinez et al., "A simple yet effective baseline for 3d human pose estimation", ICCV 2017).

inputs (N, J, C) (or flattened (N, J * C)) -> joints (N, J', 3): one frame at a time, with an
:class:`~posecore.codecs.pose_lifting.ImagePoseLifting` codec. Linear(J * C, channels), BN,
ReLU, dropout; ``num_blocks`` residual blocks of two (Linear, BN, ReLU, dropout); Linear to J' * 3.
MMPose builds the same network as a TCN with kernel size 1 (``kernel_sizes=(1, 1, 1)``); its
H36M config: 1024 channels, 2 blocks, dropout 0.5, remove_root=True.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from posecore.codecs.pose_lifting import LiftingCodec
from posecore.models.lifting._base import Lifter, dropout_rate, positive_int
from posecore.models.lifting.builders import register_lifter

__all__ = ["SimpleBaseline3D", "simplebaseline3d"]


def _linear_bn_relu(in_features: int, out_features: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_features, out_features, bias=False),
        nn.BatchNorm1d(out_features),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
    )


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            _linear_bn_relu(channels, channels, dropout), _linear_bn_relu(channels, channels, dropout)
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.layers(x)


class SimpleBaseline3D(Lifter):
    """inputs (N, J, C) or (N, J * C) -> joints (N, J', 3) in the codec's target space (module docstring)."""

    temporal: ClassVar[bool] = False

    def __init__(self, codec: LiftingCodec, channels: int = 1024, num_blocks: int = 2, dropout: float = 0.5) -> None:
        super().__init__(codec)
        name = type(self).__name__
        self.channels = positive_int(name, "channels", channels)
        self.num_blocks = positive_int(name, "num_blocks", num_blocks)
        dropout = dropout_rate(name, dropout)
        self.stem = _linear_bn_relu(codec.num_keypoints * codec.in_channels, self.channels, dropout)
        self.blocks = nn.Sequential(*(_ResidualBlock(self.channels, dropout) for _ in range(self.num_blocks)))
        self.final = nn.Linear(self.channels, codec.num_targets * 3)
        self.init_weights()

    def forward(self, inputs: Tensor) -> Tensor:
        """inputs (N, J, C) or (N, J * C) -> joints (N, J', 3)."""
        width = self.codec.num_keypoints * self.codec.in_channels
        if inputs.ndim == 3:
            inputs = inputs.flatten(1)
        if inputs.ndim != 2 or inputs.shape[1] != width:
            raise ValueError(
                f"{type(self).__name__} takes inputs (N, J={self.codec.num_keypoints}, C={self.codec.in_channels}) "
                f"or (N, {width}) from its codec's encode; got {tuple(inputs.shape)}"
            )
        out = self.final(self.blocks(self.stem(inputs)))
        return out.view(out.shape[0], self.codec.num_targets, 3)


@register_lifter("simplebaseline3d")
def simplebaseline3d(
    codec: LiftingCodec, *, channels: int = 1024, num_blocks: int = 2, dropout: float = 0.5
) -> SimpleBaseline3D:
    """SimpleBaseline3D for an ``image_pose_lifting`` codec (MMPose H36M: 1024 channels, 2 blocks, dropout 0.5)."""
    return SimpleBaseline3D(codec, channels=channels, num_blocks=num_blocks, dropout=dropout)
