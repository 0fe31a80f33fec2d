"""Shared plumbing of the lifters: the :class:`Lifter` base (codec checks) and argument checks."""

from __future__ import annotations

import math
from typing import ClassVar

from torch import nn

from posecore.codecs.pose_lifting import LiftingCodec


def positive_int(owner: str, name: str, value: object, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive int{hint}; got {value!r}")
    return value


def dropout_rate(owner: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ValueError(f"{owner}: dropout must be a number in [0, 1); got {value!r}")
    return float(value)


class Lifter(nn.Module):
    """Base of every 2D -> 3D lifter: built from the :class:`LiftingCodec` that encodes its inputs and targets.

    ``forward(codec.encode(...)["inputs"]) -> joints (..., J', 3)``, in the codec's target space
    (root-relative metres), so that ``codec.decode({"joints_3d": lifter(inputs)})`` gives camera mm.
    ``receptive_field`` is the number of input frames behind one output frame (1 for a per-frame
    lifter); ``causal`` says whether that output frame is the window's last (True) or centre frame.
    """

    #: Whether the lifter reads windows of frames (``VideoPoseLifting``) or single frames (``ImagePoseLifting``).
    temporal: ClassVar[bool]
    receptive_field: int = 1
    causal: bool = False

    def __init__(self, codec: LiftingCodec) -> None:
        super().__init__()
        name = type(self).__name__
        if not isinstance(codec, LiftingCodec):
            raise ValueError(
                f"{name}: codec must be a lifting codec (posecore.codecs.pose_lifting.build_lifting_codec(...)); "
                f"got {type(codec).__name__}"
            )
        if codec.temporal != self.temporal:
            want, kind = (
                ("video_pose_lifting", "windows of frames")
                if self.temporal
                else ("image_pose_lifting", "single frames")
            )
            raise ValueError(
                f"{name} lifts {kind}, but its codec {type(codec).__name__} encodes "
                f"{'windows of frames' if codec.temporal else 'single frames'}: build it with "
                f"build_lifting_codec({want!r}, ...), or pick the lifter made for that codec "
                f"({'videopose3d' if codec.temporal else 'simplebaseline3d'})"
            )
        self.codec = codec

    def init_weights(self) -> None:
        """He (fan-in, ReLU) weights for the convolutions and linear layers, as MMPose's lifters; biases 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv1d | nn.Linear):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm1d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def extra_repr(self) -> str:
        return f"joints={self.codec.num_keypoints}->{self.codec.num_targets}, receptive_field={self.receptive_field}"


def power_of_three(owner: str, value: object) -> int:
    """The number of kernel-3 layers giving receptive field ``value`` (3 ** n, n >= 1)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 3
    n = round(math.log(value, 3)) if ok else 0  # type: ignore[arg-type]
    if not ok or 3**n != value:
        raise ValueError(
            f"{owner}: receptive_field must be a power of 3 (kernel 3, dilations 1, 3, 9, ...): "
            f"27, 81 or 243 as VideoPose3D; got {value!r}"
        )
    return n
