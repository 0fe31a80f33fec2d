"""Batched geometry in pixel coordinates: boxes, warp matrices, point and image warps.

Pixel convention (MMPose's and OpenCV's): the centre of pixel (i, j) is the point (x=j, y=i);
an image of width W spans x in [-0.5, W - 0.5]. A horizontal flip maps x to W - 1 - x.

Affine matrices are (B, 2, 3) float32 and map source pixels to destination pixels, the way
``cv2.warpAffine`` reads them. Everything is vectorised over the batch and runs on the
device of its inputs.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "bbox_xyxy_to_center_scale",
    "center_scale_to_bbox_xyxy",
    "compose_affine",
    "fix_aspect_ratio",
    "flip_bbox_xyxy",
    "flip_keypoints",
    "flip_matrix",
    "invert_affine",
    "points_inside",
    "transform_points",
    "warp_images",
    "warp_matrix",
]


def bbox_xyxy_to_center_scale(bbox: Tensor, padding: float = 1.25) -> tuple[Tensor, Tensor]:
    """bbox (..., 4) xyxy -> center (..., 2), scale (..., 2) = (w, h) * padding (MMPose's bbox_xyxy2cs)."""
    center = (bbox[..., :2] + bbox[..., 2:]) * 0.5
    scale = (bbox[..., 2:] - bbox[..., :2]) * padding
    return center, scale


def center_scale_to_bbox_xyxy(center: Tensor, scale: Tensor, padding: float = 1.0) -> Tensor:
    """center (..., 2), scale (..., 2) -> bbox (..., 4) xyxy with the padding taken off."""
    half = scale / padding * 0.5
    return torch.cat([center - half, center + half], dim=-1)


def fix_aspect_ratio(scale: Tensor, aspect_ratio: float) -> Tensor:
    """Grow scale (..., 2) = (w, h) to ``w / h == aspect_ratio``, never shrinking a side."""
    w, h = scale[..., 0], scale[..., 1]
    wide = w > h * aspect_ratio
    return torch.stack([torch.where(wide, w, h * aspect_ratio), torch.where(wide, w / aspect_ratio, h)], dim=-1)


def flip_keypoints(
    keypoints: Tensor, visible: Tensor, width: int | Tensor, flip_indices: Tensor
) -> tuple[Tensor, Tensor]:
    """Mirror keypoints (..., K, 2) in an image of ``width`` and swap left/right (MMPose's flip_keypoints).

    Keypoint k of the result is keypoint ``flip_indices[k]`` of the input with x -> width - 1 - x;
    visible (..., K) is swapped the same way.
    """
    kp = keypoints.index_select(-2, flip_indices)
    x = width - 1 - kp[..., 0]
    return torch.stack([x, kp[..., 1]], dim=-1), visible.index_select(-1, flip_indices)


def flip_bbox_xyxy(bbox: Tensor, width: int | Tensor) -> Tensor:
    """Mirror boxes (..., 4) xyxy: x1' = W - 1 - x2, x2' = W - 1 - x1."""
    x1, y1, x2, y2 = bbox.unbind(-1)
    return torch.stack([width - 1 - x2, y1, width - 1 - x1, y2], dim=-1)


def flip_matrix(flip: Tensor, width: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """(B,) bool -> (B, 2, 3): x -> W - 1 - x where ``flip`` is set, the identity elsewhere."""
    b = flip.shape[0]
    m = torch.zeros(b, 2, 3, dtype=dtype, device=flip.device)
    sign = 1.0 - 2.0 * flip.to(dtype)
    m[:, 0, 0] = sign
    m[:, 0, 2] = flip.to(dtype) * (width - 1)
    m[:, 1, 1] = 1.0
    return m


def warp_matrix(
    center: Tensor,
    scale: Tensor,
    rotation: Tensor,
    output_size: tuple[int, int],
    use_udp: bool = False,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """The affine (B, 2, 3) taking the box (center (B, 2), scale (B, 2), rotation (B,) degrees) to ``output_size`` (w, h).

    ``use_udp=False`` equals MMPose's ``get_warp_matrix``: a similarity with factor
    ``w / scale_w`` that sends the centre to (w / 2, h / 2), rotating by ``-rotation``
    in the (x right, y down) pixel frame. ``use_udp=True`` equals ``get_udp_warp_matrix``
    (Huang et al., CVPR 2020): factors ``(w - 1) / scale_w`` and ``(h - 1) / scale_h``, the
    centre to ((w - 1) / 2, (h - 1) / 2) and the rotation by ``+rotation``. The two rotate
    in opposite senses, as in MMPose; random rotations are symmetric, so training is unaffected.
    Computed in float64 (the translation is a difference of large numbers), returned as ``dtype``.
    """
    w, h = output_size
    f64 = torch.float64
    center, scale = center.to(f64), scale.to(f64)
    rad = torch.deg2rad(rotation.to(f64))
    cos, sin = torch.cos(rad), torch.sin(rad)
    b = center.shape[0]
    m = torch.zeros(b, 2, 3, dtype=f64, device=center.device)
    if use_udp:
        sx = (w - 1.0) / scale[:, 0]
        sy = (h - 1.0) / scale[:, 1]
        m[:, 0, 0], m[:, 0, 1] = sx * cos, -sx * sin
        m[:, 1, 0], m[:, 1, 1] = sy * sin, sy * cos
        dst = torch.tensor([(w - 1.0) / 2.0, (h - 1.0) / 2.0], dtype=f64, device=center.device)
    else:
        s = w / scale[:, 0]
        m[:, 0, 0], m[:, 0, 1] = s * cos, s * sin
        m[:, 1, 0], m[:, 1, 1] = -s * sin, s * cos
        dst = torch.tensor([w / 2.0, h / 2.0], dtype=f64, device=center.device)
    m[:, :, 2] = dst - torch.einsum("bij,bj->bi", m[:, :, :2], center)
    return m.to(dtype)


def _homogeneous(m: Tensor) -> Tensor:
    bottom = torch.zeros(m.shape[0], 1, 3, dtype=m.dtype, device=m.device)
    bottom[:, 0, 2] = 1.0
    return torch.cat([m, bottom], dim=1)


def compose_affine(outer: Tensor, inner: Tensor) -> Tensor:
    """(B, 2, 3) x (B, 2, 3) -> (B, 2, 3): apply ``inner`` first, then ``outer``."""
    return (_homogeneous(outer) @ _homogeneous(inner))[:, :2]


def invert_affine(m: Tensor) -> Tensor:
    """(B, 2, 3) -> its inverse (B, 2, 3), in closed form."""
    a, b, c = m[:, 0, 0], m[:, 0, 1], m[:, 0, 2]
    d, e, f = m[:, 1, 0], m[:, 1, 1], m[:, 1, 2]
    det = a * e - b * d
    ia, ib, id_, ie = e / det, -b / det, -d / det, a / det
    return torch.stack(
        [
            torch.stack([ia, ib, -(ia * c + ib * f)], dim=-1),
            torch.stack([id_, ie, -(id_ * c + ie * f)], dim=-1),
        ],
        dim=1,
    )


def transform_points(points: Tensor, m: Tensor) -> Tensor:
    """points (B, ..., 2) through the affine m (B, 2, 3) -> (B, ..., 2)."""
    flat = points.reshape(points.shape[0], -1, 2).to(m.dtype)
    out = flat @ m[:, :, :2].transpose(1, 2) + m[:, None, :, 2]
    return out.reshape(points.shape)


def points_inside(points: Tensor, size: tuple[int, int]) -> Tensor:
    """points (..., 2) -> (...) bool: inside the pixel-centre grid [0, w - 1] x [0, h - 1]."""
    w, h = size
    x, y = points[..., 0], points[..., 1]
    return (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)


def warp_images(images: Tensor, m: Tensor, output_size: tuple[int, int], keep_uint8: bool = False) -> Tensor:
    """Warp images (B, C, H, W) by the source->destination affine m (B, 2, 3) into (B, C, h, w) float32
    (uint8 when ``keep_uint8`` and the images are uint8: 4x less memory to move to the device).

    Equals ``cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR)`` with a zero border,
    up to OpenCV's 1/32-pixel fixed-point interpolation weights. uint8 images on the CPU are
    warped by exactly that call, one image per thread (about 3x faster than ``grid_sample``
    on two cores); everything else goes through ``grid_sample``, which is what runs on GPUs. The pixel-space inverse is
    rewritten for ``grid_sample``'s normalised coordinates with ``align_corners=False``, where
    pixel j's centre sits at (2 j + 1) / W - 1.
    """
    b, c, src_h, src_w = images.shape
    w, h = output_size
    uint8_out = keep_uint8 and images.dtype == torch.uint8
    if images.device.type == "cpu" and images.dtype == torch.uint8 and c <= 4:
        out = _warp_images_cv2(images, m, output_size)
        return out if uint8_out else out.to(torch.float32)
    dev = m.device
    f64 = torch.float64
    inv = _homogeneous(invert_affine(m.to(f64)))
    # normalised output -> output pixels
    out_px = torch.tensor(
        [[w / 2.0, 0.0, (w - 1) / 2.0], [0.0, h / 2.0, (h - 1) / 2.0], [0.0, 0.0, 1.0]], dtype=f64, device=dev
    )
    # source pixels -> normalised source
    src_norm = torch.tensor(
        [[2.0 / src_w, 0.0, 1.0 / src_w - 1.0], [0.0, 2.0 / src_h, 1.0 / src_h - 1.0], [0.0, 0.0, 1.0]],
        dtype=f64,
        device=dev,
    )
    theta = (src_norm @ inv @ out_px)[:, :2].to(torch.float32)
    grid = F.affine_grid(theta, [b, c, h, w], align_corners=False)
    src = images if images.is_floating_point() else images.to(torch.float32)
    out = F.grid_sample(src.to(torch.float32), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8) if uint8_out else out


_POOL: ThreadPoolExecutor | None = None


def _warp_images_cv2(images: Tensor, m: Tensor, output_size: tuple[int, int]) -> Tensor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads()), thread_name_prefix="posecore-warp")
    hwc = images.permute(0, 2, 3, 1).numpy()
    mats = m.detach().to(torch.float64).cpu().numpy()
    w, h = output_size
    out = np.empty((images.shape[0], h, w, images.shape[1]), dtype=np.uint8)

    def one(i: int) -> None:
        warped = cv2.warpAffine(np.ascontiguousarray(hwc[i]), mats[i], (w, h), flags=cv2.INTER_LINEAR)
        out[i] = warped.reshape(h, w, -1)

    list(_POOL.map(one, range(images.shape[0])))
    return torch.from_numpy(out).permute(0, 3, 1, 2)
