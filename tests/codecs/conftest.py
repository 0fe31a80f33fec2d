"""Codec test fixtures: real COCO instances mapped into a 192x256 input, seeded random instances,
and the MMPose-style NumPy reference loops."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

INPUT_SIZE = (192, 256)  # (W, H), as MMPose
HEATMAP_SIZE = (48, 64)
BBOX_PADDING = 1.25  # MMPose's GetBBoxCenterScale default


@pytest.fixture(scope="session")
def reference() -> ModuleType:
    """``_mmpose_reference``: per-instance NumPy/OpenCV loops with MMPose's formulas."""
    path = Path(__file__).with_name("_mmpose_reference.py")
    spec = importlib.util.spec_from_file_location("_mmpose_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def coco_instances(shared_data: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Real COCO keypoints, each annotation's box mapped onto the input (top-down crop, no rotation).

    The box is padded by 1.25 and widened to the input's aspect ratio (as MMPose's
    GetBBoxCenterScale + TopdownAffine do), then scaled and translated onto the input.
    Returns keypoints (N, 17, 2) in input pixels and visible (N, 17) in {0, 1}.
    """
    path = shared_data / "mmpose_samples" / "coco" / "test_coco.json"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    anns = [a for a in json.loads(path.read_text())["annotations"] if a["num_keypoints"] > 0]
    w_in, h_in = INPUT_SIZE
    kps, vis = [], []
    for ann in anns:
        x, y, w, h = ann["bbox"]
        centre = np.array([x + w / 2, y + h / 2])
        w, h = w * BBOX_PADDING, h * BBOX_PADDING
        if w / h > w_in / h_in:
            h = w * h_in / w_in
        else:
            w = h * w_in / h_in
        raw = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        kps.append((raw[:, :2] - centre + [w / 2, h / 2]) * [w_in / w, h_in / h])
        vis.append((raw[:, 2] > 0).astype(np.float32))
    keypoints = torch.tensor(np.stack(kps), dtype=torch.float32)
    visible = torch.tensor(np.stack(vis))
    inside = ((keypoints >= 0) & (keypoints <= torch.tensor(INPUT_SIZE) - 1)).all(-1)
    assert bool(inside[visible > 0].all()), "a visible COCO keypoint fell outside its padded box"
    return keypoints, visible


@pytest.fixture(scope="session")
def random_instances() -> tuple[torch.Tensor, torch.Tensor]:
    """1000 seeded instances of 17 keypoints uniform over the central 80% of the input
    (where a 1.25-padded box puts them); about 80% visible."""
    g = torch.Generator().manual_seed(20240611)
    lo = 0.1 * torch.tensor(INPUT_SIZE, dtype=torch.float32)
    span = 0.8 * torch.tensor(INPUT_SIZE, dtype=torch.float32)
    keypoints = lo + span * torch.rand(1000, 17, 2, generator=g)
    visible = (torch.rand(1000, 17, generator=g) < 0.8).float()
    return keypoints, visible
