"""Lifting fixtures: Human3.6M's joint order and flip pairs, a mirror-symmetric body, and a camera."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from posecore.datasets.pose3d.format import Camera

# H36M: 0 root, 1-3 right leg, 4-6 left leg, 7 spine, 8 thorax, 9 neck, 10 head, 11-13 left arm, 14-16 right arm;
# flip pairs (1, 4), (2, 5), (3, 6), (11, 14), (12, 15), (13, 16).
H36M_FLIP_INDICES = [0, 4, 5, 6, 1, 2, 3, 7, 8, 9, 10, 14, 15, 16, 11, 12, 13]


@pytest.fixture(scope="session")
def flip_indices() -> list[int]:
    return list(H36M_FLIP_INDICES)


@pytest.fixture(scope="session")
def symmetric_body() -> torch.Tensor:
    """(17, 3) camera mm: a standing body facing the camera 5 m away on the optical axis, mirror-symmetric under
    x -> -x with the H36M flip pairs."""
    body = [
        [0, 0, 0], [-130, 0, 0], [-130, 450, 0], [-130, 880, 0], [130, 0, 0], [130, 450, 0], [130, 880, 0],
        [0, -230, 0], [0, -480, 0], [0, -580, 0], [0, -700, 0],
        [170, -480, 0], [170, -230, 0], [170, 20, 0], [-170, -480, 0], [-170, -230, 0], [-170, 20, 0],
    ]  # fmt: skip
    return torch.tensor(body, dtype=torch.float64) + torch.tensor([0.0, 0.0, 5000.0], dtype=torch.float64)


@pytest.fixture(scope="session")
def centred_camera() -> Camera:
    """H36M-like intrinsics with the principal point on the image centre line (c_x = W / 2)."""
    return Camera(f=(1145.0, 1144.0), c=(500.0, 515.5), width=1000, height=1002)


@pytest.fixture()
def random_poses(symmetric_body: torch.Tensor):
    """poses(*lead, seed) -> (*lead, 17, 3) float64 camera mm: the body jittered by 50 mm and moved about."""

    def poses(*lead: int, seed: int = 0) -> torch.Tensor:
        rng = np.random.default_rng(seed)
        jitter = rng.normal(0, 50, (*lead, 17, 3))
        shift = rng.normal(0, 300, (*lead, 1, 3))
        return symmetric_body + torch.from_numpy(jitter + shift)

    return poses
