"""NumPy box and crop geometry for the bundle runtime (no torch), with the training conventions.

The formulas are those of :mod:`posecore.transforms.geometry` (MMPose's ``bbox_xyxy2cs``,
``get_warp_matrix`` and ``get_udp_warp_matrix``, rotation 0), so a crop cut here is the crop
the model was trained and validated on. Matrices are (N, 2, 3) float64 and map source-image
pixels to input pixels, the way ``cv2.warpAffine`` reads them; pixel centres sit at integer
coordinates.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "bbox_xyxy_to_center_scale",
    "crop_boxes",
    "fix_aspect_ratio",
    "invert_affine",
    "transform_points",
    "warp_matrix",
]


def bbox_xyxy_to_center_scale(bbox: np.ndarray, padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """bbox (..., 4) xyxy -> center (..., 2), scale (..., 2) = (w, h) * padding."""
    bbox = np.asarray(bbox, dtype=np.float64)
    return (bbox[..., :2] + bbox[..., 2:]) * 0.5, (bbox[..., 2:] - bbox[..., :2]) * padding


def fix_aspect_ratio(scale: np.ndarray, aspect_ratio: float) -> np.ndarray:
    """Grow scale (..., 2) = (w, h) to ``w / h == aspect_ratio``, never shrinking a side."""
    scale = np.asarray(scale, dtype=np.float64)
    w, h = scale[..., 0], scale[..., 1]
    wide = w > h * aspect_ratio
    return np.stack([np.where(wide, w, h * aspect_ratio), np.where(wide, w / aspect_ratio, h)], axis=-1)


def warp_matrix(
    center: np.ndarray,
    scale: np.ndarray,
    output_size: tuple[int, int],
    rotation: np.ndarray | None = None,
    use_udp: bool = False,
) -> np.ndarray:
    """(N, 2, 3) float64 affine taking each box (center (N, 2), scale (N, 2)) to ``output_size`` (w, h).

    Non-UDP: factor ``w / scale_w``, centre -> (w / 2, h / 2); UDP: factors ``(w - 1) / scale_w``,
    ``(h - 1) / scale_h``, centre -> ((w - 1) / 2, (h - 1) / 2). ``rotation`` (N,) in degrees,
    with the senses of :func:`posecore.transforms.geometry.warp_matrix`.
    """
    center = np.asarray(center, dtype=np.float64).reshape(-1, 2)
    scale = np.asarray(scale, dtype=np.float64).reshape(-1, 2)
    n = center.shape[0]
    rad = np.deg2rad(np.zeros(n) if rotation is None else np.asarray(rotation, dtype=np.float64).reshape(n))
    cos, sin = np.cos(rad), np.sin(rad)
    w, h = output_size
    m = np.zeros((n, 2, 3), dtype=np.float64)
    if use_udp:
        sx, sy = (w - 1.0) / scale[:, 0], (h - 1.0) / scale[:, 1]
        m[:, 0, 0], m[:, 0, 1] = sx * cos, -sx * sin
        m[:, 1, 0], m[:, 1, 1] = sy * sin, sy * cos
        dst = np.array([(w - 1.0) / 2.0, (h - 1.0) / 2.0])
    else:
        s = w / scale[:, 0]
        m[:, 0, 0], m[:, 0, 1] = s * cos, s * sin
        m[:, 1, 0], m[:, 1, 1] = -s * sin, s * cos
        dst = np.array([w / 2.0, h / 2.0])
    m[:, :, 2] = dst - np.einsum("bij,bj->bi", m[:, :, :2], center)
    return m


def invert_affine(m: np.ndarray) -> np.ndarray:
    """(N, 2, 3) -> its inverse (N, 2, 3), in closed form."""
    m = np.asarray(m, dtype=np.float64)
    a, b, c = m[:, 0, 0], m[:, 0, 1], m[:, 0, 2]
    d, e, f = m[:, 1, 0], m[:, 1, 1], m[:, 1, 2]
    det = a * e - b * d
    ia, ib, id_, ie = e / det, -b / det, -d / det, a / det
    return np.stack(
        [np.stack([ia, ib, -(ia * c + ib * f)], axis=-1), np.stack([id_, ie, -(id_ * c + ie * f)], axis=-1)], axis=1
    )


def transform_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """points (N, ..., 2) through the affines m (N, 2, 3) -> (N, ..., 2) float64."""
    points = np.asarray(points, dtype=np.float64)
    flat = points.reshape(points.shape[0], -1, 2)
    out = flat @ np.swapaxes(m[:, :, :2], 1, 2) + m[:, None, :, 2]
    return out.reshape(points.shape)


def crop_boxes(
    image: np.ndarray,
    bboxes: np.ndarray,
    input_size: tuple[int, int],
    padding: float = 1.25,
    use_udp: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut the model input for each box, as the validation pipeline does.

    image (H, W, 3) uint8; bboxes (N, 4) xyxy in image pixels -> crops (N, h, w, 3) uint8 and
    the warps (N, 2, 3) float64 from image pixels to crop pixels (``invert_affine`` maps
    predictions back). Each box is padded by ``padding``, grown to the input's aspect ratio
    and warped bilinearly with a zero border (``cv2.warpAffine``, as in training).
    """
    w, h = input_size
    bboxes = np.asarray(bboxes, dtype=np.float64).reshape(-1, 4)
    center, scale = bbox_xyxy_to_center_scale(bboxes, padding)
    scale = np.maximum(fix_aspect_ratio(scale, w / h), 1e-3)
    mats = warp_matrix(center, scale, (w, h), use_udp=use_udp)
    crops = np.empty((len(bboxes), h, w, 3), dtype=np.uint8)
    for i, m in enumerate(mats):
        crops[i] = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR).reshape(h, w, 3)
    return crops, mats
