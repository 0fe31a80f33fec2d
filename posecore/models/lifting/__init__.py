"""2D -> 3D pose lifters: 2D keypoints (one frame or a window) in, root-relative 3D joints out.

====================  ======================  ==================================================
name                  codec                   shapes (N samples, J joints, C = 2 or 3, J' targets)
====================  ======================  ==================================================
``simplebaseline3d``  image_pose_lifting      inputs (N, J, C) -> joints (N, J', 3)
``videopose3d``       video_pose_lifting      inputs (N, T, J, C) -> joints (N, T - RF + 1, J', 3)
====================  ======================  ==================================================

Build with ``build_lifter(name, codec, **options)`` from the
:mod:`posecore.codecs.pose_lifting` codec that encodes the lifter's inputs and targets; the
lifter's outputs are in that codec's target space (root-relative metres) and
``codec.decode({"joints_3d": outputs[, "root": root]})`` turns them into camera millimetres.
Mirrored training samples and flip test-time averaging: :mod:`posecore.models.lifting.flip`.

To add a lifter: see :mod:`posecore.models.lifting.builders`.
"""

from __future__ import annotations

from posecore.models.lifting import simple_baseline, temporal_conv  # noqa: F401  (registers the lifters)
from posecore.models.lifting._base import Lifter
from posecore.models.lifting.builders import LIFTERS, available_lifters, build_lifter, register_lifter
from posecore.models.lifting.flip import (
    flip_joints_3d,
    flip_keypoints_2d,
    flip_lifting_sample,
    flip_scores,
    flip_test,
)
from posecore.models.lifting.simple_baseline import SimpleBaseline3D
from posecore.models.lifting.temporal_conv import TemporalConvNet

__all__ = [
    "LIFTERS",
    "Lifter",
    "SimpleBaseline3D",
    "TemporalConvNet",
    "available_lifters",
    "build_lifter",
    "flip_joints_3d",
    "flip_keypoints_2d",
    "flip_lifting_sample",
    "flip_scores",
    "flip_test",
    "register_lifter",
]
