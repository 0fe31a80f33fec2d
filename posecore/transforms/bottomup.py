"""Bottom-up transforms (all people of an image per row), batched over same-size images, MMPose 1.x conventions.

Each warp builds one matrix per image, folds a pending ``RandomFlip`` into it, samples the
whole batch in one ``grid_sample`` call and moves every person's keypoints (B, N, K, 2) and
boxes (B, N, 4) with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from ._base import register_transform, require, require_rng
from .common import check_prob, check_range
from .geometry import (
    compose_affine,
    fix_aspect_ratio,
    flip_matrix,
    points_inside,
    transform_points,
    warp_images,
    warp_matrix,
)
from .rng import KeyedRNG, truncated_normal
from .topdown import check_size

__all__ = ["BottomupRandomAffine", "BottomupResize"]


def _apply_warp(batch: Any, m: Tensor, size: tuple[int, int], zero_outside: bool) -> Any:
    """Warp images, keypoints and boxes by m (B, 2, 3) (geometry already in flipped coordinates)."""
    images = batch["images"]
    total = compose_affine(m, flip_matrix(batch["flip"], images.shape[-1], m.dtype))
    kp = transform_points(batch["keypoints"], m).to(torch.float32)
    vis = batch["visible"]
    if zero_outside:
        vis = vis * points_inside(kp, size).to(vis.dtype)
    out = dict(batch)
    out.update(images=warp_images(images, total, size), keypoints=kp, visible=vis, warp=total.float())
    if "bbox" in batch:
        x1, y1, x2, y2 = batch["bbox"].to(torch.float32).unbind(-1)
        corners = torch.stack([torch.stack(c, dim=-1) for c in ((x1, y1), (x2, y1), (x1, y2), (x2, y2))], dim=-2)
        moved = transform_points(corners, m).to(torch.float32)
        out["bbox"] = torch.cat([moved.amin(-2), moved.amax(-2)], dim=-1)
    return out


@register_transform("bottomup_random_affine", batches=("bottomup",))
@dataclass(frozen=True)
class BottomupRandomAffine:
    """Randomly shift, scale and rotate whole images into ``input_size`` (w, h) (MMPose's BottomupRandomAffine).

    images (B, C, H, W) -> (B, C, h, w) float32; keypoints (B, N, K, 2) -> input pixels. Per
    image, with t ~ N(0, 1) truncated to [-1, 1]: shift = t2 * ``shift_factor`` * (W, H)
    (probability ``shift_prob``), scale = lo + (hi - lo) * (t + 1) / 2 of ``scale_factor``
    times (W, H) (probability ``scale_prob``), grown or cut to the input's aspect ratio at
    the ``scale_type`` side, rotation t * ``rotate_factor`` degrees (probability
    ``rotate_prob``); the box is centred at the image centre (W / 2, H / 2), or
    ((W - 1) / 2, (H - 1) / 2) with UDP, plus the shift. Keypoints outside the input get
    visible 0 with ``zero_outside``. Adds ``warp`` (B, 2, 3) source -> input pixels.
    """

    input_size: tuple[int, int]
    shift_factor: float = 0.2
    shift_prob: float = 1.0
    scale_factor: tuple[float, float] = (0.75, 1.5)
    scale_prob: float = 1.0
    scale_type: Literal["short", "long"] = "short"
    rotate_factor: float = 30.0
    rotate_prob: float = 1.0
    use_udp: bool = False
    zero_outside: bool = True
    stream: int = 5

    def __post_init__(self) -> None:
        name = "BottomupRandomAffine"
        object.__setattr__(self, "input_size", check_size(name, "input_size", self.input_size))
        object.__setattr__(self, "scale_factor", check_range(name, "scale_factor", self.scale_factor))
        for p in ("shift_prob", "scale_prob", "rotate_prob"):
            check_prob(name, p, getattr(self, p))
        if self.scale_type not in ("short", "long"):
            raise ValueError(f"{name}.scale_type must be 'short' or 'long', got {self.scale_type!r}")

    def __call__(self, batch: Any, rng: KeyedRNG | None = None) -> Any:
        require(batch, "BottomupRandomAffine", "images", "keypoints", "visible", "flip", "keys")
        images = batch["images"]
        dev = images.device
        src_h, src_w = images.shape[-2:]
        w, h = self.input_size
        u = require_rng(rng, "BottomupRandomAffine").uniform(batch["keys"], self.stream, 7).to(dev)
        t = truncated_normal(u[:, [0, 1, 3, 5]])
        size = torch.tensor([src_w, src_h], dtype=torch.float32, device=dev)
        offset = torch.where(u[:, 2:3] < self.shift_prob, t[:, :2] * self.shift_factor, 0.0) * size
        lo, hi = self.scale_factor
        factor = torch.where(u[:, 4:5] < self.scale_prob, lo + (hi - lo) * (t[:, 2:3] + 1) / 2, 1.0)
        rotation = torch.where(u[:, 6] < self.rotate_prob, t[:, 3] * self.rotate_factor, 0.0)
        scale = _fit_aspect(factor * size, w / h, self.scale_type)
        if self.use_udp:
            center = torch.tensor([(src_w - 1) / 2, (src_h - 1) / 2], dtype=torch.float32, device=dev)
        else:
            center = torch.tensor([src_w / 2, src_h / 2], dtype=torch.float32, device=dev)
        m = warp_matrix(center + offset, scale, rotation, (w, h), self.use_udp, dtype=torch.float64)
        return _apply_warp(batch, m, (w, h), self.zero_outside)


def _fit_aspect(scale: Tensor, aspect_ratio: float, scale_type: str) -> Tensor:
    """MMPose's bottom-up aspect fix: 'long' grows the short side (as top-down), 'short' cuts the long one."""
    if scale_type == "long":
        return fix_aspect_ratio(scale, aspect_ratio)
    w, h = scale[:, 0], scale[:, 1]
    wide = w > h * aspect_ratio
    return torch.stack([torch.where(wide, h * aspect_ratio, w), torch.where(wide, h, w / aspect_ratio)], dim=-1)


def _ceil_to(size: tuple[float, float], base: int) -> tuple[int, int]:
    return int(math.ceil(size[0] / base) * base), int(math.ceil(size[1] / base) * base)


@register_transform("bottomup_resize", batches=("bottomup",))
@dataclass(frozen=True)
class BottomupResize:
    """Resize whole images keeping their aspect ratio and pad to the model input (MMPose's BottomupResize).

    images (B, C, H, W) -> (B, C, h', w') float32, keypoints (B, N, K, 2) -> input pixels,
    adds ``warp`` (B, 2, 3). ``resize_mode='fit'``: the image fits inside ``input_size``
    (which must be a multiple of ``size_factor``) and (h', w') = input size; ``'expand'``: the
    image covers ``input_size`` and (h', w') is its size rounded up to ``size_factor``. As in
    MMPose the resized image is centred in the padded input, or placed at the top-left with
    UDP. Keypoints outside the input get visible 0 with ``zero_outside``.
    """

    input_size: tuple[int, int]
    size_factor: int = 32
    resize_mode: Literal["fit", "expand"] = "fit"
    use_udp: bool = False
    zero_outside: bool = True

    def __post_init__(self) -> None:
        name = "BottomupResize"
        object.__setattr__(self, "input_size", check_size(name, "input_size", self.input_size))
        if self.resize_mode not in ("fit", "expand"):
            raise ValueError(f"{name}.resize_mode must be 'fit' or 'expand', got {self.resize_mode!r}")
        if self.resize_mode == "fit" and _ceil_to(self.input_size, self.size_factor) != self.input_size:
            raise ValueError(
                f"{name}: with resize_mode='fit' the input_size {self.input_size} must be a multiple of "
                f"size_factor={self.size_factor}"
            )

    def sizes(self, image_size: tuple[int, int]) -> tuple[tuple[float, float], tuple[int, int]]:
        """(W, H) of a source image -> (resized size (w, h), padded input size (w', h'))."""
        img_w, img_h = image_size
        ratio = img_w / img_h
        pad_w, pad_h = _ceil_to(self.input_size, self.size_factor)
        if self.resize_mode == "fit":
            resized = (min(pad_w, pad_h * ratio), min(pad_h, pad_w / ratio))
            return resized, (pad_w, pad_h)
        resized = (max(pad_w, pad_h * ratio), max(pad_h, pad_w / ratio))
        return resized, _ceil_to(resized, self.size_factor)

    def __call__(self, batch: Any, rng: KeyedRNG | None = None) -> Any:
        require(batch, "BottomupResize", "images", "keypoints", "visible", "flip")
        images = batch["images"]
        b, dev = images.shape[0], images.device
        src_h, src_w = images.shape[-2:]
        (rsz_w, rsz_h), padded = self.sizes((src_w, src_h))
        zero = torch.zeros(b, dtype=torch.float32, device=dev)
        if self.use_udp:
            center = torch.tensor([(src_w - 1) / 2, (src_h - 1) / 2], dtype=torch.float32, device=dev).expand(b, 2)
            scale = torch.tensor([src_w, src_h], dtype=torch.float32, device=dev).expand(b, 2)
            m = warp_matrix(center, scale, zero, (rsz_w, rsz_h), use_udp=True, dtype=torch.float64)  # type: ignore[arg-type]
        else:
            center = torch.tensor([round(src_w / 2), round(src_h / 2)], dtype=torch.float32, device=dev).expand(b, 2)
            scale = torch.tensor(
                [src_w * padded[0] / rsz_w, src_h * padded[1] / rsz_h], dtype=torch.float32, device=dev
            ).expand(b, 2)
            m = warp_matrix(center, scale, zero, padded, dtype=torch.float64)
        return _apply_warp(batch, m, padded, self.zero_outside)
