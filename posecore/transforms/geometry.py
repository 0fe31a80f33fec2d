"""Batched geometry in pixel coordinates: boxes, warp matrices, point and image warps.

Pixel convention (MMPose's and OpenCV's): the centre of pixel (i, j) is the point (x=j, y=i);
an image of width W spans x in [-0.5, W - 0.5]. A horizontal flip maps x to W - 1 - x.

Affine matrices are (B, 2, 3) float32 and map source pixels to destination pixels, the way
``cv2.warpAffine`` reads them. Everything is vectorised over the batch and runs on the
device of its inputs.

The box and affine functions the bundle runtime needs have NumPy twins (``*_numpy``, float64)
right below them, plus :func:`crop_boxes`, the NumPy crop of the validation pipeline; so a
crop cut at inference is the crop the model was trained and validated on.
``tests/transforms/test_geometry.py`` checks them against the torch versions. torch is
imported lazily, so the NumPy functions run without it. The twins side by side take the module
a little past our ~400 lines.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from posecore._lazy import lazy_import

if TYPE_CHECKING:
    import torch
    import torch.nn.functional as F
    from torch import Tensor
else:
    torch = lazy_import("torch")
    F = lazy_import("torch.nn.functional")

__all__ = [
    "ImageList",
    "bbox_xyxy_to_center_scale",
    "bbox_xyxy_to_center_scale_numpy",
    "center_scale_to_bbox_xyxy",
    "compose_affine",
    "crop_boxes",
    "fix_aspect_ratio",
    "fix_aspect_ratio_numpy",
    "flip_bbox_xyxy",
    "flip_keypoints",
    "flip_matrix",
    "invert_affine",
    "invert_affine_numpy",
    "points_inside",
    "transform_points",
    "transform_points_numpy",
    "warp_images",
    "warp_matrix",
    "warp_matrix_numpy",
]


def bbox_xyxy_to_center_scale(bbox: Tensor, padding: float = 1.25) -> tuple[Tensor, Tensor]:
    """bbox (..., 4) xyxy -> center (..., 2), scale (..., 2) = (w, h) * padding (MMPose's bbox_xyxy2cs)."""
    center = (bbox[..., :2] + bbox[..., 2:]) * 0.5
    scale = (bbox[..., 2:] - bbox[..., :2]) * padding
    return center, scale


def bbox_xyxy_to_center_scale_numpy(bbox: np.ndarray, padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """:func:`bbox_xyxy_to_center_scale` in NumPy float64."""
    bbox = np.asarray(bbox, dtype=np.float64)
    return (bbox[..., :2] + bbox[..., 2:]) * 0.5, (bbox[..., 2:] - bbox[..., :2]) * padding


def center_scale_to_bbox_xyxy(center: Tensor, scale: Tensor, padding: float = 1.0) -> Tensor:
    """center (..., 2), scale (..., 2) -> bbox (..., 4) xyxy with the padding taken off."""
    half = scale / padding * 0.5
    return torch.cat([center - half, center + half], dim=-1)


def fix_aspect_ratio(scale: Tensor, aspect_ratio: float) -> Tensor:
    """Grow scale (..., 2) = (w, h) to ``w / h == aspect_ratio``, never shrinking a side."""
    w, h = scale[..., 0], scale[..., 1]
    wide = w > h * aspect_ratio
    return torch.stack([torch.where(wide, w, h * aspect_ratio), torch.where(wide, w / aspect_ratio, h)], dim=-1)


def fix_aspect_ratio_numpy(scale: np.ndarray, aspect_ratio: float) -> np.ndarray:
    """:func:`fix_aspect_ratio` in NumPy float64."""
    scale = np.asarray(scale, dtype=np.float64)
    w, h = scale[..., 0], scale[..., 1]
    wide = w > h * aspect_ratio
    return np.stack([np.where(wide, w, h * aspect_ratio), np.where(wide, w / aspect_ratio, h)], axis=-1)


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


def flip_matrix(flip: Tensor, width: int, dtype: torch.dtype | None = None) -> Tensor:
    """(B,) bool -> (B, 2, 3) of ``dtype`` (float32 when None): x -> W - 1 - x where ``flip`` is set, else the identity."""
    dtype = torch.float32 if dtype is None else dtype
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
    dtype: torch.dtype | None = None,
) -> Tensor:
    """The affine (B, 2, 3) taking the box (center (B, 2), scale (B, 2), rotation (B,) degrees) to ``output_size`` (w, h).

    ``use_udp=False`` equals MMPose's ``get_warp_matrix``: a similarity with factor
    ``w / scale_w`` that sends the centre to (w / 2, h / 2), rotating by ``-rotation``
    in the (x right, y down) pixel frame. ``use_udp=True`` equals ``get_udp_warp_matrix``
    (Huang et al., CVPR 2020): factors ``(w - 1) / scale_w`` and ``(h - 1) / scale_h``, the
    centre to ((w - 1) / 2, (h - 1) / 2) and the rotation by ``+rotation``. The two rotate
    in opposite senses, as in MMPose; random rotations are symmetric, so training is unaffected.
    Computed in float64 (the translation is a difference of large numbers), returned as ``dtype``
    (float32 when None).
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
    return m.to(torch.float32 if dtype is None else dtype)


def warp_matrix_numpy(
    center: np.ndarray,
    scale: np.ndarray,
    rotation: np.ndarray | None,
    output_size: tuple[int, int],
    use_udp: bool = False,
) -> np.ndarray:
    """:func:`warp_matrix` in NumPy: (N, 2, 3) float64; ``rotation`` (N,) degrees, or None for 0."""
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


def invert_affine_numpy(m: np.ndarray) -> np.ndarray:
    """:func:`invert_affine` in NumPy float64."""
    m = np.asarray(m, dtype=np.float64)
    a, b, c = m[:, 0, 0], m[:, 0, 1], m[:, 0, 2]
    d, e, f = m[:, 1, 0], m[:, 1, 1], m[:, 1, 2]
    det = a * e - b * d
    ia, ib, id_, ie = e / det, -b / det, -d / det, a / det
    return np.stack(
        [np.stack([ia, ib, -(ia * c + ib * f)], axis=-1), np.stack([id_, ie, -(id_ * c + ie * f)], axis=-1)], axis=1
    )


def transform_points(points: Tensor, m: Tensor) -> Tensor:
    """points (B, ..., 2) through the affine m (B, 2, 3) -> (B, ..., 2)."""
    flat = points.reshape(points.shape[0], -1, 2).to(m.dtype)
    out = flat @ m[:, :, :2].transpose(1, 2) + m[:, None, :, 2]
    return out.reshape(points.shape)


def transform_points_numpy(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """:func:`transform_points` in NumPy: points (N, ..., 2), m (N, 2, 3) -> (N, ..., 2) float64."""
    points = np.asarray(points, dtype=np.float64)
    flat = points.reshape(points.shape[0], -1, 2)
    out = flat @ np.swapaxes(m[:, :, :2], 1, 2) + m[:, None, :, 2]
    return out.reshape(points.shape)


def points_inside(points: Tensor, size: tuple[int, int]) -> Tensor:
    """points (..., 2) -> (...) bool: inside the pixel-centre grid [0, w - 1] x [0, h - 1]."""
    w, h = size
    x, y = points[..., 0], points[..., 1]
    return (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)


def crop_boxes(
    image: np.ndarray,
    bboxes: np.ndarray,
    input_size: tuple[int, int],
    padding: float = 1.25,
    use_udp: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut the model input for each box in NumPy, as the validation pipeline does.

    image (H, W, 3) uint8; bboxes (N, 4) xyxy in image pixels -> crops (N, h, w, 3) uint8 and
    the warps (N, 2, 3) float64 from image pixels to crop pixels (``invert_affine_numpy`` maps
    predictions back). Each box is padded by ``padding``, grown to the input's aspect ratio
    and warped bilinearly with a zero border (``cv2.warpAffine``, as in training).
    """
    w, h = input_size
    bboxes = np.asarray(bboxes, dtype=np.float64).reshape(-1, 4)
    center, scale = bbox_xyxy_to_center_scale_numpy(bboxes, padding)
    scale = np.maximum(fix_aspect_ratio_numpy(scale, w / h), 1e-3)
    mats = warp_matrix_numpy(center, scale, None, (w, h), use_udp=use_udp)
    crops = np.empty((len(bboxes), h, w, 3), dtype=np.uint8)
    for i, m in enumerate(mats):
        crops[i] = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR).reshape(h, w, 3)
    return crops, mats


@dataclass(frozen=True)
class ImageList:
    """B same-size (H, W, C) uint8 images on the CPU, warped where they lie instead of being stacked first.

    For sources that already sit in memory, such as views into the target-encoding cache's
    memory-mapped shards: stacking them into one (B, C, H, W) tensor would copy every pixel
    once more before the warp reads it. Before
    ``TopdownAffine`` it stands in for the images tensor: ``shape`` is (B, C, H, W),
    ``device`` the CPU and ``dtype`` uint8.
    """

    arrays: Sequence[np.ndarray]

    def __post_init__(self) -> None:
        if not self.arrays:
            raise ValueError("ImageList needs at least one image")
        first = self.arrays[0]
        for i, a in enumerate(self.arrays):
            if a.dtype != np.uint8 or a.ndim != 3 or a.shape != first.shape:
                raise ValueError(
                    f"ImageList image {i} is {a.dtype} {a.shape}; all must be uint8 (H, W, C) of one size {first.shape}"
                )

    @property
    def shape(self) -> torch.Size:
        h, w, c = self.arrays[0].shape
        return torch.Size((len(self.arrays), c, h, w))

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.uint8

    def __len__(self) -> int:
        return len(self.arrays)

    def to_tensor(self) -> Tensor:
        """The stacked (B, C, H, W) uint8 tensor (a copy)."""
        return torch.from_numpy(np.stack(self.arrays)).permute(0, 3, 1, 2)


def warp_images(
    images: Tensor | ImageList, m: Tensor, output_size: tuple[int, int], keep_uint8: bool = False
) -> Tensor:
    """Warp images (B, C, H, W) by the source->destination affine m (B, 2, 3) into (B, C, h, w) float32
    (uint8 when ``keep_uint8`` and the images are uint8: 4x less memory to move to the device).

    Equals ``cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR)`` with a zero border,
    up to OpenCV's 1/32-pixel fixed-point interpolation weights. uint8 images on the CPU
    (and every :class:`ImageList`) are warped by exactly that call, one image per thread
    (about 3x faster than ``grid_sample`` on two cores); everything else goes through
    ``grid_sample``, which is what runs on GPUs. The pixel-space inverse is rewritten for
    ``grid_sample``'s normalised coordinates with ``align_corners=False``, where pixel j's
    centre sits at (2 j + 1) / W - 1.
    """
    b, c, src_h, src_w = images.shape
    w, h = output_size
    uint8_out = keep_uint8 and images.dtype == torch.uint8
    if isinstance(images, ImageList) and (m.device.type != "cpu" or c > 4):
        images = images.to_tensor().to(m.device)
    if isinstance(images, ImageList) or (images.device.type == "cpu" and images.dtype == torch.uint8 and c <= 4):
        hwc = images.arrays if isinstance(images, ImageList) else images.permute(0, 2, 3, 1).numpy()
        out = _warp_images_cv2(hwc, m, output_size)
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


_POOL: tuple[int, ThreadPoolExecutor] | None = None  # (threads, pool)


def _run_split(fn: Callable[[int], None], n: int) -> None:
    """fn(0..n-1) on torch.get_num_threads() threads, one interleaved share per thread (inline for one).

    A task per thread rather than per item: handing each image to the pool separately costs
    about as much as a third of its warp.
    """
    global _POOL
    threads = min(n, max(1, torch.get_num_threads()))
    if threads == 1:
        for i in range(n):
            fn(i)
        return
    if _POOL is None or _POOL[0] != threads:  # resized when the thread count changes
        if _POOL is not None:
            _POOL[1].shutdown(wait=False)
        _POOL = (threads, ThreadPoolExecutor(max_workers=threads, thread_name_prefix="posecore-warp"))

    def share(start: int) -> None:
        for i in range(start, n, threads):
            fn(i)

    list(_POOL[1].map(share, range(threads)))


def _warp_images_cv2(hwc: Sequence[np.ndarray] | np.ndarray, m: Tensor, output_size: tuple[int, int]) -> Tensor:
    """B (H, W, C) uint8 sources -> (B, C, h, w) uint8 (stored NHWC), one ``cv2.warpAffine`` per image.

    Three-channel images go through RGBA: OpenCV vectorises its uint8 bilinear warp for 1 and 4
    channels, not for 3, so the detour gives the same pixels about 2x faster (130 instead of
    260 us for a 192x256 crop here). The sources are read where they lie (no stacked copy).
    """
    b = len(hwc)
    c = hwc[0].shape[-1]
    mats = m.detach().to(torch.float64).cpu().numpy()
    w, h = output_size
    out = np.empty((b, h, w, c), dtype=np.uint8)

    def one(i: int) -> None:
        src = np.ascontiguousarray(hwc[i])
        if c == 3:
            warped = cv2.warpAffine(cv2.cvtColor(src, cv2.COLOR_RGB2RGBA), mats[i], (w, h), flags=cv2.INTER_LINEAR)
            cv2.cvtColor(warped, cv2.COLOR_RGBA2RGB, dst=out[i])
        else:
            out[i] = cv2.warpAffine(src, mats[i], (w, h), flags=cv2.INTER_LINEAR).reshape(h, w, c)

    _run_split(one, b)
    return torch.from_numpy(out).permute(0, 3, 1, 2)
