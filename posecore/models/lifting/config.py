"""``LifterParams``: one lifter as params.yaml describes it (``lift.model``, ``lift.baseline``), and building it.

The lifter's name fixes its codec (``videopose3d`` reads windows: ``video_pose_lifting``;
``simplebaseline3d`` reads frames: ``image_pose_lifting``), so the two cannot disagree. The
options that a lifter does not take (``receptive_field`` and ``causal`` for the per-frame
``simplebaseline3d``, ``num_blocks`` for ``videopose3d``) are ignored by it, and
:meth:`LifterParams.to_dict` records only those it uses, which is what ``model.json`` keeps so
that evaluation, export and inference rebuild the same network.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from posecore.codecs.pose_lifting import LiftingCodec, build_lifting_codec
from posecore.models.lifting._base import Lifter
from posecore.models.lifting.builders import available_lifters, build_lifter

__all__ = ["LIFTER_CODECS", "LifterParams"]

#: lifter name -> the lifting codec it reads (its ``temporal`` must match the lifter's).
LIFTER_CODECS = {"videopose3d": "video_pose_lifting", "simplebaseline3d": "image_pose_lifting"}
_OPTIONS = {
    "videopose3d": ("receptive_field", "causal", "channels", "dropout"),
    "simplebaseline3d": ("channels", "num_blocks", "dropout"),
}


@dataclass(frozen=True)
class LifterParams:
    """A 2D -> 3D lifter and its codec (module docstring)."""

    name: str = field(default="videopose3d", metadata={"choices": available_lifters})
    receptive_field: int = field(default=27, metadata={"range": (3, 2187)})
    """Frames behind one output (videopose3d): 27, 81 or 243."""
    causal: bool = False
    """videopose3d: outputs stand for the window's last frame (no future frames; real time)."""
    channels: int = field(default=128, metadata={"range": (1, 65536)})
    """Conv / linear width (VideoPose3D and SimpleBaseline3D use 1024; 128 trains a TCN-27 in minutes on a CPU)."""
    num_blocks: int = field(default=2, metadata={"range": (1, 64)})
    """simplebaseline3d: residual blocks."""
    dropout: float = field(default=0.1, metadata={"range": (0.0, 0.99)})
    """VideoPose3D uses 0.25 for its 1024 channels; the narrow CPU model underfits with it."""
    use_scores: bool = True
    """Feed the 2D detector's scores as a third input channel (they flag outliers and dropped joints)."""

    def options(self) -> dict[str, Any]:
        """The builder options this lifter takes."""
        if self.name not in _OPTIONS:
            raise ValueError(f"lifter {self.name!r} has no params mapping; known: {', '.join(_OPTIONS)}")
        return {k: getattr(self, k) for k in _OPTIONS[self.name]}

    def to_dict(self) -> dict[str, Any]:
        """What ``model.json`` records: name, codec, use_scores and the options this lifter uses."""
        return {"name": self.name, "codec": LIFTER_CODECS[self.name], "use_scores": self.use_scores, **self.options()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LifterParams:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @property
    def temporal(self) -> bool:
        return self.name == "videopose3d"

    def build_codec(self, num_keypoints: int, root_index: int = 0) -> LiftingCodec:
        return build_lifting_codec(
            LIFTER_CODECS[self.name], num_keypoints=num_keypoints, root_index=root_index, use_scores=self.use_scores
        )

    def build(self, num_keypoints: int, root_index: int = 0, *, use_stride_conv: bool = False) -> Lifter:
        """The lifter for ``num_keypoints`` joints; ``use_stride_conv`` (videopose3d) the training form."""
        codec = self.build_codec(num_keypoints, root_index)
        extra = {"use_stride_conv": use_stride_conv} if self.temporal else {}
        return build_lifter(self.name, codec, **self.options(), **extra)
