"""Bottom-up transforms (all people of an image per row), batched over same-size images, MMPose 1.x conventions.

Each warp builds one matrix per image, folds a pending ``RandomFlip`` into it, samples the
whole batch in one ``grid_sample`` call and moves every person's keypoints (B, N, K, 2) and
boxes (B, N, 4) with it.

:func:`image_train_pipeline` is the one-stage training recipe on whole (cached) images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from posecore.codecs.base import Codec
from posecore.metainfo import DatasetMeta

from ._base import Compose, Transform, register_transform, require, require_rng
from .common import PhotometricDistortion, RandomFlip, check_prob, check_range
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
from .topdown import TopdownAugmentation, check_size

__all__ = ["BottomupRandomAffine", "BottomupResize", "GenerateOneStageTarget", "image_train_pipeline"]


def _apply_warp(batch: Any, m: Tensor, size: tuple[int, int], zero_outside: bool, keep_uint8: bool = False) -> Any:
    """Warp images, keypoints and boxes by m (B, 2, 3) (geometry already in flipped coordinates)."""
    images = batch["images"]
    total = compose_affine(m, flip_matrix(batch["flip"], images.shape[-1], m.dtype))
    kp = transform_points(batch["keypoints"], m).to(torch.float32)
    vis = batch["visible"]
    if zero_outside:
        vis = vis * points_inside(kp, size).to(vis.dtype)
    out = dict(batch)
    out.update(images=warp_images(images, total, size, keep_uint8), keypoints=kp, visible=vis, warp=total.float())
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
    visible 0 with ``zero_outside``. Adds ``warp`` (B, 2, 3) source -> input pixels. With
    ``keep_uint8`` uint8 images stay uint8 (rounded), for a trainer that normalises on its device.
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
    keep_uint8: bool = False

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
        return _apply_warp(batch, m, (w, h), self.zero_outside, self.keep_uint8)


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


def _compact(mask: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Per row, the columns where ``mask`` (B, R) holds, first ``size`` of them in order:
    index (B, size) int64 into R and keep (B, size) bool (False past a row's count)."""
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
    if order.shape[1] < size:
        order = torch.cat([order, order.new_zeros(order.shape[0], size - order.shape[1])], dim=1)
    keep = torch.arange(size, device=mask.device) < mask.sum(1, keepdim=True)
    return order[:, :size], keep


def _take(values: Tensor, index: Tensor, keep: Tensor) -> Tensor:
    """values (B, R, ...) gathered at index (B, S) along R, zero where not ``keep``."""
    if values.shape[1] == 0:
        return values.new_zeros(index.shape + values.shape[2:])
    idx = index.reshape(*index.shape, *([1] * (values.ndim - 2))).expand(*index.shape, *values.shape[2:])
    taken = values.gather(1, idx)
    return taken * keep.reshape(*keep.shape, *([1] * (values.ndim - 2))).to(taken.dtype)


@dataclass(frozen=True)
class GenerateOneStageTarget:
    """Rows of whole images after the warp -> a one-stage codec's training targets (input px).

    Reads keypoints (B, R, K, 2), visible (B, R, K), bbox (B, R, 4) and, optionally, present
    (B, R) bool (False: padding; default all True) and crowd (B, R) bool (crowd regions;
    default none). Boxes are clipped to the input; a person whose clipped box is under
    ``min_box_side`` pixels a side (pushed out of view) is invalid and enters the codec as
    zeros. Adds ``targets``: ``codec.encode(keypoints, visible, clipped boxes)`` reshaped to
    (B, N, ...) (boxes (B, N, 4), keypoints (B, N, K, 2), visible (B, N, K), areas (B, N): the
    clipped boxes' areas, the OKS scale), plus valid (B, N) bool, ignore_boxes (B, M, 4)
    float32 (crowd regions, clipped) and ignore_valid (B, M) bool. People keep their order and come first in each row;
    N is the most people of any row and M the most crowd regions (both >= 1, zero-padded).

    Not in the transform registry: it needs a one-stage codec and crowd-marked rows, which the
    registry's generic contract test does not build; :func:`image_train_pipeline` adds it.
    """

    codec: Codec
    min_box_side: float = 2.0

    def __post_init__(self) -> None:
        if getattr(self.codec, "task", "topdown") != "onestage" or getattr(self.codec, "input_size", None) is None:
            raise ValueError(
                f"GenerateOneStageTarget needs a one-stage codec with an input_size, got {type(self.codec).__name__}; "
                "top-down codecs use GenerateTarget"
            )
        if self.min_box_side < 0:
            raise ValueError(f"GenerateOneStageTarget.min_box_side must be >= 0, got {self.min_box_side}")

    def __call__(self, batch: Any, rng: KeyedRNG | None = None) -> Any:
        require(batch, "GenerateOneStageTarget", "keypoints", "visible", "bbox")
        kp, vis, bbox = batch["keypoints"], batch["visible"], batch["bbox"].to(torch.float32)
        (b, r), k, dev = bbox.shape[:2], kp.shape[-2], bbox.device
        present = batch.get("present", torch.ones(b, r, dtype=torch.bool, device=dev))
        crowd = batch.get("crowd", torch.zeros(b, r, dtype=torch.bool, device=dev)) & present
        person = present & ~crowd
        w, h = self.codec.input_size  # type: ignore[attr-defined]
        limit = torch.tensor([w, h, w, h], dtype=torch.float32, device=dev)
        boxes = torch.minimum(bbox.clamp_min(0.0), limit)
        side = boxes[..., 2:] - boxes[..., :2]

        n = max(1, int(person.sum(1).max())) if r else 1
        index, keep = _compact(person, n)
        valid = keep & (_take(side, index, keep) >= self.min_box_side).all(-1)
        # invalid people and padding enter the codec as zeros: zero box, nothing visible
        encoded = self.codec.encode(  # type: ignore[call-arg]
            _take(kp, index, valid).reshape(b * n, k, 2),
            _take(vis, index, valid).reshape(b * n, k),
            _take(boxes, index, valid).reshape(b * n, 4),
        )
        targets = {name: value.reshape(b, n, *value.shape[1:]) for name, value in encoded.items()}

        m = max(1, int(crowd.sum(1).max())) if r else 1
        index, keep = _compact(crowd, m)
        ignore_valid = keep & (_take(side, index, keep) > 0).all(-1)
        targets.update(valid=valid, ignore_boxes=_take(boxes, index, ignore_valid), ignore_valid=ignore_valid)
        out = dict(batch)
        out["targets"] = targets
        return out


def image_train_pipeline(meta: DatasetMeta, codec: Codec, aug: TopdownAugmentation) -> Compose:
    """The one-stage training recipe on whole images, uint8 in and out, ending in ``codec``'s targets.

    RandomFlip -> BottomupRandomAffine into ``codec.input_size`` -> [PhotometricDistortion]
    -> GenerateOneStageTarget, with the flip, shift, scale and rotation settings of ``aug``
    (params.yaml's ``augment:``; its half-body settings have no meaning for whole images).
    Images stay uint8: the trainer normalises on its device, as for top-down with ``keep_uint8``.
    """
    input_size = getattr(codec, "input_size", None)
    if input_size is None:
        raise ValueError(f"{type(codec).__name__} has no input_size; a one-stage codec must define (w, h)")
    steps: list[Transform] = [
        RandomFlip(tuple(meta.flip_indices), prob=aug.flip_prob),
        BottomupRandomAffine(
            tuple(input_size),  # type: ignore[arg-type]
            shift_factor=aug.shift_factor,
            shift_prob=aug.shift_prob,
            scale_factor=aug.scale_factor,
            scale_prob=aug.scale_prob,
            rotate_factor=aug.rotate_factor,
            rotate_prob=aug.rotate_prob,
            keep_uint8=True,
        ),
    ]
    if aug.photometric:
        steps.append(PhotometricDistortion())
    steps.append(GenerateOneStageTarget(codec))
    return Compose(steps)
