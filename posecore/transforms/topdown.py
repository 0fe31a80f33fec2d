"""Top-down transforms (one person per row), batched, with MMPose 1.x conventions and defaults.

The standard recipe (:func:`topdown_train_pipeline`)::

    GetBBoxCenterScale -> RandomFlip -> RandomHalfBody -> RandomBBoxTransform
        -> TopdownAffine -> [PhotometricDistortion] -> Normalize -> GenerateTarget

Up to ``TopdownAffine`` only the geometry (keypoints, center, scale, rotation, flip) changes;
``TopdownAffine`` then warps the whole batch of images in one ``grid_sample`` call with the
flip folded into the per-sample matrices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from posecore.codecs.base import Codec
from posecore.metainfo import DatasetMeta

from ._base import Compose, TopdownBatch, Transform, register_transform, require, require_rng
from .common import GenerateTarget, Normalize, PhotometricDistortion, RandomFlip, check_indices, check_prob, check_range
from .geometry import (
    ImageList,
    bbox_xyxy_to_center_scale,
    compose_affine,
    fix_aspect_ratio,
    flip_matrix,
    points_inside,
    transform_points,
    warp_images,
    warp_matrix,
)
from .rng import KeyedRNG, truncated_normal

__all__ = [
    "GetBBoxCenterScale",
    "RandomBBoxTransform",
    "RandomHalfBody",
    "TopdownAffine",
    "TopdownAugmentation",
    "make_topdown_batch",
    "topdown_train_pipeline",
    "topdown_val_pipeline",
]


def check_size(owner: str, name: str, value: Sequence[int]) -> tuple[int, int]:
    if len(value) != 2 or any(int(v) != v or int(v) < 1 for v in value):
        raise ValueError(f"{owner}.{name} must be (width, height) in whole pixels >= 1, got {value!r}")
    return int(value[0]), int(value[1])


def make_topdown_batch(
    images: Tensor | ImageList,
    keypoints: Tensor,
    visible: Tensor,
    keys: Tensor | Sequence[int],
    *,
    bbox: Tensor | None = None,
    center: Tensor | None = None,
    scale: Tensor | None = None,
) -> TopdownBatch:
    """Assemble a :class:`TopdownBatch` on ``images.device``: rotation 0, flip False.

    ``images`` is a (B, C, H, W) tensor or an :class:`~posecore.transforms.geometry.ImageList`
    of same-size (H, W, C) uint8 arrays, which ``TopdownAffine`` warps without stacking them.

    Give either ``bbox`` (B, 4) xyxy (then run ``GetBBoxCenterScale``) or ``center`` and
    ``scale`` (B, 2); with only a bbox, center/scale start as the unpadded box.
    """
    dev = images.device
    b = images.shape[0]
    kp = keypoints.to(dev, torch.float32)
    if bbox is None and (center is None or scale is None):
        raise ValueError("make_topdown_batch needs bbox (B, 4) xyxy or both center and scale (B, 2)")
    if center is None or scale is None:
        center, scale = bbox_xyxy_to_center_scale(bbox.to(dev, torch.float32), padding=1.0)  # type: ignore[union-attr]
    batch: TopdownBatch = {
        "images": images,
        "keypoints": kp,
        "visible": visible.to(dev, torch.float32),
        "center": center.to(dev, torch.float32),
        "scale": scale.to(dev, torch.float32),
        "rotation": torch.zeros(b, dtype=torch.float32, device=dev),
        "flip": torch.zeros(b, dtype=torch.bool, device=dev),
        "keys": torch.as_tensor(keys, dtype=torch.int64).to(dev),
    }
    if bbox is not None:
        batch["bbox"] = bbox.to(dev, torch.float32)
    return batch


@register_transform("get_bbox_center_scale")
@dataclass(frozen=True)
class GetBBoxCenterScale:
    """bbox (B, 4) xyxy -> center (B, 2) and scale (B, 2) = box size x ``padding`` (MMPose's GetBBoxCenterScale)."""

    padding: float = 1.25

    def __post_init__(self) -> None:
        if self.padding <= 0:
            raise ValueError(f"GetBBoxCenterScale.padding must be > 0, got {self.padding}")

    def __call__(self, batch: Any, rng: KeyedRNG | None = None) -> Any:
        require(batch, "GetBBoxCenterScale", "bbox")
        out = dict(batch)
        out["center"], out["scale"] = bbox_xyxy_to_center_scale(batch["bbox"].to(torch.float32), self.padding)
        return out


@register_transform("random_half_body")
@dataclass(frozen=True)
class RandomHalfBody:
    """Replace the box by one around the upper or lower body's visible keypoints (MMPose's RandomHalfBody).

    Per sample with at least ``min_total_keypoints`` visible and probability ``prob``: the
    visible upper-body keypoints are chosen with probability ``upper_prioritized_prob``, the
    lower-body ones otherwise; a half with fewer than its minimum (``min_upper_keypoints``,
    ``min_lower_keypoints``) visible gives way to the other, and the sample is left alone
    when both fall short. center (B, 2) = the chosen keypoints' mean; scale (B, 2) = their
    extent x ``padding`` (the aspect ratio is fixed later by ``TopdownAffine``).
    """

    upper_body_ids: tuple[int, ...]
    lower_body_ids: tuple[int, ...]
    min_total_keypoints: int = 9
    min_upper_keypoints: int = 2
    min_lower_keypoints: int = 3
    padding: float = 1.5
    prob: float = 0.3
    upper_prioritized_prob: float = 0.7
    stream: int = 2

    def __post_init__(self) -> None:
        name = "RandomHalfBody"
        object.__setattr__(self, "upper_body_ids", check_indices(name, "upper_body_ids", self.upper_body_ids))
        object.__setattr__(self, "lower_body_ids", check_indices(name, "lower_body_ids", self.lower_body_ids))
        check_prob(name, "prob", self.prob)
        check_prob(name, "upper_prioritized_prob", self.upper_prioritized_prob)
        if self.padding <= 0:
            raise ValueError(f"{name}.padding must be > 0, got {self.padding}")

    def __call__(self, batch: Any, rng: KeyedRNG | None = None) -> Any:
        require(batch, "RandomHalfBody", "keypoints", "visible", "center", "scale", "keys")
        kp, vis = batch["keypoints"], batch["visible"] > 0
        k = kp.shape[1]
        if max((*self.upper_body_ids, *self.lower_body_ids), default=-1) >= k:
            raise ValueError(
                f"RandomHalfBody body ids exceed the batch's {k} keypoints; build it from the dataset meta"
            )
        u = require_rng(rng, "RandomHalfBody").uniform(batch["keys"], self.stream, 2).to(kp.device)
        upper = torch.zeros(k, dtype=torch.bool, device=kp.device)
        upper[list(self.upper_body_ids)] = True
        lower = torch.zeros(k, dtype=torch.bool, device=kp.device)
        lower[list(self.lower_body_ids)] = True
        up_valid, low_valid = vis & upper, vis & lower
        n_up, n_low = up_valid.sum(1), low_valid.sum(1)
        up_ok, low_ok = n_up >= self.min_upper_keypoints, n_low >= self.min_lower_keypoints
        prefer_upper = u[:, 1] < self.upper_prioritized_prob
        take_upper = torch.where(
            ~low_ok, torch.ones_like(up_ok), torch.where(~up_ok, torch.zeros_like(up_ok), prefer_upper)
        )
        apply = (vis.sum(1) >= self.min_total_keypoints) & (u[:, 0] < self.prob) & (up_ok | low_ok)
        sel = torch.where(take_upper[:, None], up_valid, low_valid)[..., None]
        count = sel.sum(1).clamp_min(1)
        center = (kp * sel).sum(1) / count
        lo = torch.where(sel, kp, torch.full_like(kp, torch.inf)).amin(1)
        hi = torch.where(sel, kp, torch.full_like(kp, -torch.inf)).amax(1)
        scale = (hi - lo) * self.padding
        out = dict(batch)
        out["center"] = torch.where(apply[:, None], center, batch["center"])
        out["scale"] = torch.where(apply[:, None], scale, batch["scale"])
        return out


@register_transform("random_bbox_transform")
@dataclass(frozen=True)
class RandomBBoxTransform:
    """Randomly shift, rescale and rotate the box (MMPose's RandomBBoxTransform), per sample.

    With t ~ N(0, 1) truncated to [-1, 1] drawn independently for each use:
    center += t2 * ``shift_factor`` * scale with probability ``shift_prob``;
    scale *= mid + t * half_width of ``scale_factor`` with probability ``scale_prob``;
    rotation += t * ``rotate_factor`` degrees with probability ``rotate_prob``.
    """

    shift_factor: float = 0.16
    shift_prob: float = 0.3
    scale_factor: tuple[float, float] = (0.5, 1.5)
    scale_prob: float = 1.0
    rotate_factor: float = 80.0
    rotate_prob: float = 0.6
    stream: int = 3

    def __post_init__(self) -> None:
        name = "RandomBBoxTransform"
        object.__setattr__(self, "scale_factor", check_range(name, "scale_factor", self.scale_factor))
        for p in ("shift_prob", "scale_prob", "rotate_prob"):
            check_prob(name, p, getattr(self, p))
        if self.scale_factor[0] <= 0:
            raise ValueError(f"{name}.scale_factor must be positive, got {self.scale_factor}")

    def __call__(self, batch: Any, rng: KeyedRNG | None = None) -> Any:
        require(batch, "RandomBBoxTransform", "center", "scale", "rotation", "keys")
        scale = batch["scale"]
        u = require_rng(rng, "RandomBBoxTransform").uniform(batch["keys"], self.stream, 7).to(scale.device)
        t = truncated_normal(u[:, [0, 1, 3, 5]])
        offset = torch.where(u[:, 2:3] < self.shift_prob, t[:, :2] * self.shift_factor, 0.0)
        lo, hi = self.scale_factor
        factor = torch.where(u[:, 4:5] < self.scale_prob, t[:, 2:3] * (hi - lo) / 2 + (hi + lo) / 2, 1.0)
        rotate = torch.where(u[:, 6] < self.rotate_prob, t[:, 3] * self.rotate_factor, 0.0)
        out = dict(batch)
        out["center"] = batch["center"] + offset * scale
        out["scale"] = scale * factor
        out["rotation"] = batch["rotation"] + rotate
        return out


@register_transform("topdown_affine")
@dataclass(frozen=True)
class TopdownAffine:
    """Crop each box to the model input: images (B, C, H, W) -> (B, C, h, w) float32, ``input_size`` = (w, h).

    Per sample (MMPose's TopdownAffine): scale is grown to the input's aspect ratio, then the
    box (center, scale, rotation) is warped with ``get_warp_matrix`` (or the UDP matrix); a
    pending flip (``flip`` set by ``RandomFlip``) is composed in front, so the unflipped
    source is sampled as if it had been mirrored first. Keypoints go through the same matrix
    into input pixels; with ``zero_outside`` keypoints that leave the pixel-centre grid
    [0, w - 1] x [0, h - 1] get visible 0 (MMPose keeps them visible and lets the codec zero
    their weight; ours does so for every codec alike). Adds ``warp`` (B, 2, 3), the affine from
    source-image pixels to input pixels, flip included; scale is stored aspect-fixed.
    """

    input_size: tuple[int, int]
    use_udp: bool = False
    zero_outside: bool = True
    keep_uint8: bool = False
    """uint8 images stay uint8 (rounded); for a model step that normalises on the device."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", check_size("TopdownAffine", "input_size", self.input_size))

    def __call__(self, batch: Any, rng: KeyedRNG | None = None) -> Any:
        require(batch, "TopdownAffine", "images", "keypoints", "visible", "center", "scale", "rotation", "flip")
        w, h = self.input_size
        images = batch["images"]
        # A degenerate (zero-size) half-body box would divide by zero; MMPose does not guard it.
        scale = fix_aspect_ratio(batch["scale"].to(torch.float32), w / h).clamp_min(1e-3)
        m = warp_matrix(batch["center"], scale, batch["rotation"], (w, h), self.use_udp, dtype=torch.float64)
        total = compose_affine(m, flip_matrix(batch["flip"], images.shape[-1], torch.float64))
        kp = transform_points(batch["keypoints"], m).to(torch.float32)
        vis = batch["visible"]
        if self.zero_outside:
            vis = vis * points_inside(kp, (w, h)).to(vis.dtype)
        out = dict(batch)
        out.update(
            images=warp_images(images, total, (w, h), self.keep_uint8),
            keypoints=kp,
            visible=vis,
            scale=scale,
            warp=total.float(),
        )
        return out


@dataclass(frozen=True)
class TopdownAugmentation:
    """The random part of the top-down recipe; the defaults are MMPose 1.x's (td-hm configs)."""

    flip_prob: float = field(default=0.5, metadata={"range": (0.0, 1.0)})
    half_body_prob: float = field(default=0.3, metadata={"range": (0.0, 1.0)})
    half_body_min_total_keypoints: int = 9
    half_body_min_upper_keypoints: int = 2
    half_body_min_lower_keypoints: int = 3
    half_body_padding: float = 1.5
    half_body_upper_prioritized_prob: float = field(default=0.7, metadata={"range": (0.0, 1.0)})
    shift_factor: float = field(default=0.16, metadata={"range": (0.0, 10.0)})
    shift_prob: float = field(default=0.3, metadata={"range": (0.0, 1.0)})
    scale_factor: tuple[float, float] = (0.5, 1.5)
    scale_prob: float = field(default=1.0, metadata={"range": (0.0, 1.0)})
    rotate_factor: float = field(default=80.0, metadata={"range": (0.0, 180.0)})
    rotate_prob: float = field(default=0.6, metadata={"range": (0.0, 1.0)})
    photometric: bool = False
    """RTMPose-style colour jitter after the crop; off in MMPose's heatmap recipes."""


def _affine(
    codec: Codec, input_size: tuple[int, int] | None, use_udp: bool | None, keep_uint8: bool = False
) -> TopdownAffine:
    codec_size = getattr(codec, "input_size", None)
    if input_size is None:
        if codec_size is None:
            raise ValueError(f"{type(codec).__name__} has no input_size; pass input_size=(w, h)")
        input_size = codec_size
    elif codec_size is not None and tuple(codec_size) != tuple(input_size):
        raise ValueError(
            f"input_size {tuple(input_size)} differs from the codec's input_size {tuple(codec_size)}; "
            "leave input_size out so the codec decides it"
        )
    if use_udp is None:
        use_udp = bool(getattr(codec, "use_udp", False))
    return TopdownAffine(tuple(input_size), use_udp=use_udp, keep_uint8=keep_uint8)  # type: ignore[arg-type]


def topdown_train_pipeline(
    meta: DatasetMeta,
    codec: Codec,
    *,
    input_size: tuple[int, int] | None = None,
    use_udp: bool | None = None,
    aug: TopdownAugmentation = TopdownAugmentation(),  # noqa: B008 - frozen, safe as a default
    bbox_padding: float = 1.25,
    normalize: Normalize | None = Normalize(),  # noqa: B008 - frozen, safe as a default
    use_joint_weights: bool = False,
    keep_uint8: bool = False,
) -> Compose:
    """MMPose's top-down training recipe for ``meta``'s keypoints, ending in ``codec``'s targets.

    ``input_size`` defaults to ``codec.input_size`` (a different value is an error);
    ``use_udp`` defaults to ``codec.use_udp`` when the codec has one, else False.
    ``normalize=None`` leaves images in [0, 255] (for a model that normalises itself); with
    ``keep_uint8`` uint8 sources give uint8 images, normalised later on the training device
    (as MMPose's data preprocessor does), which makes the batch 4x smaller.
    """
    if keep_uint8 and normalize is not None:
        raise ValueError("keep_uint8=True needs normalize=None: uint8 images cannot hold normalised values")
    steps: list[Transform] = [
        GetBBoxCenterScale(bbox_padding),
        RandomFlip(tuple(meta.flip_indices), prob=aug.flip_prob),
        RandomHalfBody(
            tuple(meta.upper_body_ids),
            tuple(meta.lower_body_ids),
            min_total_keypoints=aug.half_body_min_total_keypoints,
            min_upper_keypoints=aug.half_body_min_upper_keypoints,
            min_lower_keypoints=aug.half_body_min_lower_keypoints,
            padding=aug.half_body_padding,
            prob=aug.half_body_prob,
            upper_prioritized_prob=aug.half_body_upper_prioritized_prob,
        ),
        RandomBBoxTransform(
            shift_factor=aug.shift_factor,
            shift_prob=aug.shift_prob,
            scale_factor=aug.scale_factor,
            scale_prob=aug.scale_prob,
            rotate_factor=aug.rotate_factor,
            rotate_prob=aug.rotate_prob,
        ),
        _affine(codec, input_size, use_udp, keep_uint8),
    ]
    if aug.photometric:
        steps.append(PhotometricDistortion())
    if normalize is not None:
        steps.append(normalize)
    steps.append(GenerateTarget(codec, tuple(meta.joint_weights) if use_joint_weights else None))
    return Compose(steps)


def topdown_val_pipeline(
    codec: Codec,
    *,
    input_size: tuple[int, int] | None = None,
    use_udp: bool | None = None,
    bbox_padding: float = 1.25,
    normalize: Normalize | None = Normalize(),  # noqa: B008 - frozen, safe as a default
    with_targets: bool = False,
) -> Compose:
    """MMPose's top-down test recipe: GetBBoxCenterScale -> TopdownAffine -> Normalize [-> GenerateTarget]."""
    steps: list[Transform] = [GetBBoxCenterScale(bbox_padding), _affine(codec, input_size, use_udp)]
    if normalize is not None:
        steps.append(normalize)
    if with_targets:
        steps.append(GenerateTarget(codec))
    return Compose(steps)
