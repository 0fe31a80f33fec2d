"""The camera convention: the person's left is on the image right when they face the viewer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from posecore.datasets.synthetic import SceneOptions, render_image
from posecore.metainfo import load_meta

K = {name: i for i, name in enumerate(load_meta("coco").keypoint_names)}


@pytest.mark.parametrize(("yaw", "sign"), [(0.0, 1), (math.pi, -1)])
def test_left_and_right_are_on_the_anatomical_side(yaw: float, sign: int) -> None:
    """Facing the viewer (yaw 0) the person's left is on the image right; from behind, on the left."""
    facing = SceneOptions(clutter=False, occluders=False, yaw=yaw)
    pairs = [
        ("left_shoulder", "right_shoulder"),
        ("left_hip", "right_hip"),
        ("left_eye", "right_eye"),
        ("left_ear", "right_ear"),
    ]
    checked = 0
    for seed in range(15):
        _, anns = render_image(np.random.default_rng(seed), 256, 256, 1, 1, facing)
        for ann in anns:
            kps = ann.keypoints
            for left, right in pairs:
                a, b = kps[K[left]], kps[K[right]]
                if a[2] > 0 and b[2] > 0:
                    assert sign * (a[0] - b[0]) > 0, (seed, left, a, b)
                    checked += 1
            if yaw == math.pi:
                assert kps[K["nose"], 2] == kps[K["left_eye"], 2] == kps[K["right_eye"], 2] == 0
    assert checked >= 30
