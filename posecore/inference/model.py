"""The interfaces of the inference pipeline's pose models, and their input preparation.

:class:`posecore.inference.runtime.BundleModel` (onnxruntime) and
:class:`posecore.inference.torch_model.TorchModel` (a training checkpoint) both implement
:class:`PoseModel` (top-down: person crops in) or :class:`OneStageModel` (one-stage: whole images
in, every person out), as ``info.task`` says. Both feed their network through
:func:`normalize_crops`, and one-stage models through :func:`predict_whole_images` (letterbox,
network, decode, back to image pixels); they import them from here, below both of them.
Imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from posecore.codecs.base import Poses
from posecore.inference.info import ModelInfo
from posecore.transforms.geometry import invert_affine_numpy, transform_points_numpy
from posecore.transforms.letterbox import letterbox

__all__ = [
    "OneStageModel",
    "PoseModel",
    "as_rgb",
    "normalize_crops",
    "predict_whole_images",
    "require_task",
]


class PoseModel(Protocol):
    """A top-down pose model: crops (N, h, w, 3) uint8 RGB -> keypoints (N, K, 2) in crop px, scores (N, K)."""

    info: ModelInfo

    def predict_crops(self, crops: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]: ...


class OneStageModel(Protocol):
    """A one-stage pose model (``info.task == "onestage"``): whole images (H, W, 3) uint8 RGB, any
    sizes -> one :class:`~posecore.codecs.base.Poses` per image, NumPy float32, in image pixels."""

    info: ModelInfo

    def predict_images(self, images: Sequence[np.ndarray], batch_size: int = 8) -> list[Poses]: ...


def normalize_crops(crops: np.ndarray, info: ModelInfo) -> np.ndarray:
    """crops (N, h, w, 3) uint8 RGB -> inputs (N, 3, h, w) float32, (x - mean) / std; checks the size."""
    crops = np.asarray(crops)
    w, h = info.input_size
    if crops.ndim != 4 or crops.shape[1:] != (h, w, 3):
        raise ValueError(f"crops must be (N, {h}, {w}, 3) RGB for this model's input size {w}x{h}; got {crops.shape}")
    mean = np.asarray(info.mean, dtype=np.float32)
    inv_std = 1.0 / np.asarray(info.std, dtype=np.float32)
    return np.ascontiguousarray(((crops.astype(np.float32) - mean) * inv_std).transpose(0, 3, 1, 2))


def require_task(info: ModelInfo, task: str, source: object) -> None:
    """Raise ValueError, saying what to call instead, when the model is not of ``task``."""
    if info.task == task:
        return
    if info.task == "onestage":
        raise ValueError(
            f"{source} is a one-stage model: it takes whole images and finds the people itself; "
            "call predict_images(images), not predict_crops"
        )
    raise ValueError(
        f"{source} is a top-down model: it poses person crops cut from boxes; call predict_crops(crops) "
        "(posecore.inference.pipeline.predict_poses crops the boxes), not predict_images"
    )


#: Below this scale the letterbox averages pixel areas instead of sampling bilinearly (as the cache).


def as_rgb(image: np.ndarray) -> np.ndarray:
    """image (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8 -> (H, W, 3) uint8 RGB (grey repeated,
    alpha dropped); raises ValueError for anything else, naming the shape or dtype."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (0..255); got dtype {image.dtype}")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or min(image.shape[:2]) < 1:
        raise ValueError(
            f"an image must be (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA with H, W >= 1; got {image.shape}"
        )
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image[..., :3]


def poses_to_image(poses: Poses, to_image: np.ndarray) -> Poses:
    """People in input pixels -> image pixels through the (2, 3) inverse letterbox warp (a scale and
    a shift, so boxes stay boxes); NumPy float32 out, whatever came in."""
    n = len(poses)
    k = np.shape(poses.keypoint_scores)[-1]
    kp = np.asarray(poses.keypoints, np.float64).reshape(n, k, 2)
    boxes = np.asarray(poses.boxes, np.float64).reshape(n, 2, 2)
    m = to_image[None]
    return Poses(
        boxes=transform_points_numpy(boxes.reshape(1, -1, 2), m).reshape(n, 4).astype(np.float32),
        scores=np.asarray(poses.scores, np.float32).reshape(n),
        keypoints=transform_points_numpy(kp.reshape(1, -1, 2), m).reshape(n, k, 2).astype(np.float32),
        keypoint_scores=np.asarray(poses.keypoint_scores, np.float32).reshape(n, k),
    )


def predict_whole_images(
    run: Callable[[np.ndarray], list[Poses]], images: Sequence[np.ndarray], info: ModelInfo, batch_size: int = 8
) -> list[Poses]:
    """A one-stage model's ``predict_images``: letterbox each image into ``info.input_size``,
    normalise, ``run`` (inputs (B, 3, h, w) float32 -> B :class:`Poses` in input pixels, NumPy)
    in batches of ``batch_size``, and map every person back to its image's pixels."""
    boxed = [letterbox(as_rgb(image), info.input_size) for image in images]
    out: list[Poses] = []
    for start in range(0, len(boxed), max(1, batch_size)):
        chunk = boxed[start : start + max(1, batch_size)]
        inputs = normalize_crops(np.stack([b for b, _ in chunk]), info)
        poses = run(inputs)
        if len(poses) != len(chunk):
            raise ValueError(f"the model returned {len(poses)} results for {len(chunk)} images")
        to_image = invert_affine_numpy(np.stack([w for _, w in chunk]))
        out += [poses_to_image(p, m) for p, m in zip(poses, to_image, strict=True)]
    return out
