"""Fixtures for the transform tests: real images, dot painting and finding, a stand-in codec."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest
import torch
from torch import Tensor

from posecore.codecs.base import Codec
from posecore.metainfo import DatasetMeta, load_meta

SRC_SIZE = (320, 240)  # (W, H) every real image is resized to, so they batch together
DOT_SIGMA = 2.5


@dataclass(frozen=True)
class EchoCodec(Codec):
    """A stand-in codec: the targets are the keypoints themselves."""

    input_size: tuple[int, int] = (48, 64)
    target_keys: ClassVar[tuple[str, ...]] = ("coords",)

    def encode(self, keypoints: Tensor, visible: Tensor) -> dict[str, Tensor]:
        return {"coords": keypoints.clone(), "keypoint_weights": visible.clone()}

    def decode(self, outputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        c = outputs["coords"]
        return c, torch.ones(c.shape[:-1])

    def target_shapes(self, num_keypoints: int) -> dict[str, tuple[int, ...]]:
        return {"coords": (num_keypoints, 2)}


@pytest.fixture(scope="session")
def coco_meta() -> DatasetMeta:
    return load_meta("coco")


@pytest.fixture(scope="session")
def echo_codec() -> EchoCodec:
    return EchoCodec()


def _read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="session")
def real_image(shared_data: Path) -> np.ndarray:
    """One full COCO image (H, W, 3) uint8 RGB, unresized."""
    return _read_rgb(sorted((shared_data / "mmpose_samples" / "coco").glob("*.jpg"))[0])


@pytest.fixture(scope="session")
def real_images(shared_data: Path) -> Tensor:
    """(8, 3, 240, 320) uint8 RGB: 4 COCO and 4 LSPet images resized to one size."""
    paths = sorted((shared_data / "mmpose_samples" / "coco").glob("*.jpg"))[:4]
    paths += sorted((shared_data / "lspet" / "images").glob("*.jpg"))[:4]
    assert len(paths) == 8
    arrays = [cv2.resize(_read_rgb(p), SRC_SIZE, interpolation=cv2.INTER_AREA) for p in paths]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def paint_dots(points: Tensor, height: int, width: int, sigma: float = DOT_SIGMA) -> Tensor:
    """points (B, M, 2) -> (B, M, H, W) float32: one gaussian dot (peak 255) per channel at each point."""
    ys = torch.arange(height, dtype=torch.float32)[:, None]
    xs = torch.arange(width, dtype=torch.float32)[None, :]
    dx = xs - points[..., 0, None, None]
    dy = ys - points[..., 1, None, None]
    return 255.0 * torch.exp(-(dx**2 + dy**2) / (2 * sigma**2))


def dot_centroids(channels: Tensor) -> Tensor:
    """(B, M, h, w) -> (B, M, 2) intensity-weighted centroids (x, y)."""
    _, _, h, w = channels.shape
    mass = channels.sum((-1, -2)).clamp_min(1e-9)
    xs = torch.arange(w, dtype=torch.float32)
    ys = torch.arange(h, dtype=torch.float32)
    cx = (channels.sum(-2) * xs).sum(-1) / mass
    cy = (channels.sum(-1) * ys).sum(-1) / mass
    return torch.stack([cx, cy], dim=-1)


def away_from_border(points: Tensor, warp: Tensor, size: tuple[int, int], sigma: float = DOT_SIGMA) -> Tensor:
    """points (B, ..., 2) in output pixels -> bool: the warped dot lies wholly inside the output."""
    scale = warp[:, :, :2].det().abs().sqrt().reshape(-1, *([1] * (points.ndim - 2)))
    margin = 4.0 * sigma * scale + 1.0
    w, h = size
    x, y = points[..., 0], points[..., 1]
    return (x >= margin) & (x <= w - 1 - margin) & (y >= margin) & (y <= h - 1 - margin)


@pytest.fixture(scope="session")
def dots() -> tuple[Callable[..., Tensor], Callable[[Tensor], Tensor], Callable[..., Tensor]]:
    """(paint_dots, dot_centroids, away_from_border)."""
    return paint_dots, dot_centroids, away_from_border
