"""Figure sampling: joint angles within their anatomical limits, a fixed yaw kept."""

from __future__ import annotations

import math

import numpy as np

from posecore.datasets.synthetic import sample_figure
from posecore.datasets.synthetic.figure import _ARM_LIMITS, _DEG, _LEG_LIMITS


def test_sampled_limbs_stay_within_their_joint_limits() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        pose = sample_figure(rng).pose
        for limbs, limits in ((pose.arms, _ARM_LIMITS), (pose.legs, _LEG_LIMITS)):
            for limb in limbs:
                angles = (limb.flexion, limb.abduction, limb.bend, limb.twist)
                for angle, (lo, hi) in zip(angles, limits, strict=True):
                    assert lo * _DEG - 1e-9 <= angle <= hi * _DEG + 1e-9


def test_a_given_yaw_is_kept() -> None:
    assert sample_figure(np.random.default_rng(1), yaw=math.pi).yaw == math.pi
