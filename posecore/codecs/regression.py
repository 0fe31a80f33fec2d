"""Direct coordinate regression (DeepPose-style; also RLE, whose head adds "sigmas")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from posecore._lazy import lazy_import

from ._utils import check_encode_inputs, check_size, get_output, get_output_numpy
from .base import Codec, register_codec

if TYPE_CHECKING:
    import torch
    from torch import Tensor
else:
    torch = lazy_import("torch")


@register_codec("regression")
@dataclass(frozen=True)
class Regression(Codec):
    """Normalised coordinates: keypoints (N, K, 2) float32 in input pixels <-> coords (N, K, 2) in [0, 1].

    Targets: "coords" (N, K, 2) = keypoints / (W, H); "keypoint_weights" (N, K), 1 where
    visible > 0.5 and 0 <= keypoint <= (W - 1, H - 1), else 0 (MMPose 1.x ``RegressionLabel``).
    Decode reads "coords" (N, K, 2) and returns coords * (W, H) and scores (N, K): ones, or
    mean(1 - sigmas) when the outputs carry RLE's "sigmas" (N, K, 2) (already through the sigmoid).
    """

    input_size: tuple[int, int]
    """(W, H) of the network input in pixels."""

    target_keys: ClassVar[tuple[str, ...]] = ("coords",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", check_size(type(self).__name__, "input_size", self.input_size))

    def _size(self, like: Tensor) -> Tensor:
        return torch.tensor(self.input_size, device=like.device, dtype=like.dtype)

    def target_shapes(self, num_keypoints: int) -> dict[str, tuple[int, ...]]:
        return {"coords": (num_keypoints, 2)}

    def encode(self, keypoints: Tensor, visible: Tensor) -> dict[str, Tensor]:
        """keypoints (N, K, 2), visible (N, K) -> {"coords": (N, K, 2), "keypoint_weights": (N, K)}."""
        kp, vis = check_encode_inputs(type(self).__name__, keypoints, visible)
        size = self._size(kp)
        valid = ((kp >= 0) & (kp <= size - 1)).all(dim=-1) & (vis > 0.5)
        return {"coords": kp / size, "keypoint_weights": valid.to(torch.float32)}

    def decode(self, outputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """{"coords": (N, K, 2)[, "sigmas": (N, K, 2)]} -> keypoints (N, K, 2) in input pixels, scores (N, K)."""
        name = type(self).__name__
        coords = get_output(name, outputs, "coords", (2,))
        if "sigmas" in outputs:
            scores = (1 - get_output(name, outputs, "sigmas", (2,))).mean(dim=-1)
        else:
            scores = coords.new_ones(coords.shape[:2])
        return (coords * self._size(coords)).float(), scores.float()

    def decode_numpy(self, outputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``decode`` in NumPy: {"coords"[, "sigmas"]} -> keypoints (N, K, 2), scores (N, K), float32."""
        name = type(self).__name__
        coords = get_output_numpy(name, outputs, "coords", (2,))
        if "sigmas" in outputs:
            scores = (1 - get_output_numpy(name, outputs, "sigmas", (2,))).mean(axis=-1)
        else:
            scores = np.ones(coords.shape[:2], dtype=coords.dtype)
        size = np.asarray(self.input_size, dtype=coords.dtype)
        return (coords * size).astype(np.float32), scores.astype(np.float32)
