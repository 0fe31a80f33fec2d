"""The interface every pose model of the inference pipeline has (:class:`PoseModel`), and its input normalisation.

:class:`posecore.inference.runtime.BundleModel` (onnxruntime) and
:class:`posecore.inference.torch_model.TorchModel` (a training checkpoint) both implement
:class:`PoseModel` and both feed their network through :func:`normalize_crops`; they import it
from here, below both of them. Imports no torch.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from posecore.inference.info import ModelInfo

__all__ = ["PoseModel", "normalize_crops"]


class PoseModel(Protocol):
    """A top-down pose model: crops (N, h, w, 3) uint8 RGB -> keypoints (N, K, 2) in crop px, scores (N, K)."""

    info: ModelInfo

    def predict_crops(self, crops: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]: ...


def normalize_crops(crops: np.ndarray, info: ModelInfo) -> np.ndarray:
    """crops (N, h, w, 3) uint8 RGB -> inputs (N, 3, h, w) float32, (x - mean) / std; checks the size."""
    crops = np.asarray(crops)
    w, h = info.input_size
    if crops.ndim != 4 or crops.shape[1:] != (h, w, 3):
        raise ValueError(f"crops must be (N, {h}, {w}, 3) RGB for this model's input size {w}x{h}; got {crops.shape}")
    mean = np.asarray(info.mean, dtype=np.float32)
    inv_std = 1.0 / np.asarray(info.std, dtype=np.float32)
    return np.ascontiguousarray(((crops.astype(np.float32) - mean) * inv_std).transpose(0, 3, 1, 2))
