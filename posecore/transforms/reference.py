"""The per-sample numpy/OpenCV path, MMPose's way: one image at a time, flip the pixels, then ``cv2.warpAffine``.

It is the reference the batched torch transforms are tested against and benchmarked with,
and the fallback for tools that work on single images. Images are (H, W, C) uint8 arrays;
matrices (2, 3) float32 source -> destination pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

__all__ = [
    "flip_keypoints_np",
    "get_warp_matrix_np",
    "topdown_affine_cv2",
    "topdown_sample_cv2",
    "transform_points_np",
    "warp_affine_cv2",
]


def _rotate(v: np.ndarray, rad: float) -> np.ndarray:
    c, s = np.cos(rad), np.sin(rad)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """b plus (a - b) turned a quarter anticlockwise: fixes the affine from two points."""
    d = a - b
    return b + np.array([-d[1], d[0]])


def get_warp_matrix_np(
    center: Sequence[float], scale: Sequence[float], rot: float, output_size: tuple[int, int], use_udp: bool = False
) -> np.ndarray:
    """(2, 3) float32 box -> output matrix, built the way MMPose builds it.

    Non-UDP: three point pairs (centre, centre + the rotated half-width vector pointing up,
    and a third at right angles) into ``cv2.getAffineTransform``, as ``get_warp_matrix``.
    UDP: ``get_udp_warp_matrix``'s closed form.
    """
    cx, cy = float(center[0]), float(center[1])
    sw, sh = float(scale[0]), float(scale[1])
    w, h = output_size
    rad = np.deg2rad(rot)
    if use_udp:
        sx, sy = (w - 1) / sw, (h - 1) / sh
        c, s = np.cos(rad), np.sin(rad)
        return np.array(
            [
                [c * sx, -s * sx, sx * (-cx * c + cy * s + 0.5 * sw)],
                [s * sy, c * sy, sy * (-cx * s - cy * c + 0.5 * sh)],
            ],
            dtype=np.float32,
        )
    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0] = (cx, cy)
    src[1] = src[0] + _rotate(np.array([0.0, -0.5 * sw]), rad)
    src[2] = _third_point(src[0], src[1])
    dst[0] = (w * 0.5, h * 0.5)
    dst[1] = dst[0] + np.array([0.0, -0.5 * w])
    dst[2] = _third_point(dst[0], dst[1])
    return cv2.getAffineTransform(src, dst).astype(np.float32)


def warp_affine_cv2(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """image (H, W, C) uint8 -> (h, w, C): ``cv2.warpAffine`` bilinear with a zero border, size = (w, h)."""
    out = cv2.warpAffine(image, np.asarray(matrix, np.float32), (int(size[0]), int(size[1])), flags=cv2.INTER_LINEAR)
    return out if out.ndim == 3 else out[..., None]


def transform_points_np(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """points (..., 2) through a (2, 3) affine."""
    m = np.asarray(matrix, np.float64)
    return (points @ m[:, :2].T + m[:, 2]).astype(np.float32)


def flip_keypoints_np(
    keypoints: np.ndarray, visible: np.ndarray, width: int, flip_indices: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """MMPose's flip_keypoints: keypoint k becomes keypoint flip_indices[k] mirrored, x -> width - 1 - x."""
    kp = keypoints[..., list(flip_indices), :].copy()
    kp[..., 0] = width - 1 - kp[..., 0]
    return kp, visible[..., list(flip_indices)].copy()


def topdown_affine_cv2(
    image: np.ndarray,
    keypoints: np.ndarray,
    visible: np.ndarray,
    center: Sequence[float],
    scale: Sequence[float],
    rotation: float,
    input_size: tuple[int, int],
    use_udp: bool = False,
    zero_outside: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MMPose's TopdownAffine on one sample -> (crop (h, w, C), keypoints (K, 2), visible (K,), matrix (2, 3)).

    scale is grown to the input aspect ratio first; ``zero_outside`` as in the batched version.
    """
    w, h = input_size
    sw, sh = float(scale[0]), float(scale[1])
    sw, sh = (sw, sw * h / w) if sw > sh * w / h else (sh * w / h, sh)
    m = get_warp_matrix_np(center, (sw, sh), rotation, (w, h), use_udp)
    kp = transform_points_np(keypoints, m)
    vis = visible.astype(np.float32).copy()
    if zero_outside:
        inside = (kp[:, 0] >= 0) & (kp[:, 0] <= w - 1) & (kp[:, 1] >= 0) & (kp[:, 1] <= h - 1)
        vis *= inside
    return warp_affine_cv2(image, m, (w, h)), kp, vis, m


def topdown_sample_cv2(
    image: np.ndarray,
    keypoints: np.ndarray,
    visible: np.ndarray,
    center: Sequence[float],
    scale: Sequence[float],
    rotation: float,
    flip: bool,
    flip_indices: Sequence[int],
    input_size: tuple[int, int],
    use_udp: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MMPose's literal order on one sample: mirror the pixels, keypoints and centre, then crop.

    ``center`` is given in the unflipped image and mirrored here. Returns (crop, keypoints, visible).
    """
    if flip:
        width = image.shape[1]
        image = np.ascontiguousarray(cv2.flip(image, 1))
        keypoints, visible = flip_keypoints_np(keypoints, visible, width, flip_indices)
        center = (width - 1 - float(center[0]), float(center[1]))
    crop, kp, vis, _ = topdown_affine_cv2(image, keypoints, visible, center, scale, rotation, input_size, use_udp)
    return crop, kp, vis
