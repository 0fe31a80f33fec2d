"""Batch types, the transform registry and :class:`Compose` (internal; import from ``posecore.transforms``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, Protocol, TypedDict, TypeVar

from torch import Tensor

from posecore._registry import Registry

from .rng import KeyedRNG

__all__ = [
    "Batch",
    "BatchKind",
    "BottomupBatch",
    "Compose",
    "TopdownBatch",
    "Transform",
    "available_transforms",
    "build_transform",
    "register_transform",
    "transform_batch_kinds",
    "transform_fields",
]

BatchKind = Literal["topdown", "bottomup"]


class TopdownBatch(TypedDict):
    """One person per row; all images in a batch share one size.

    images (B, C, H, W) uint8 or float32 RGB (C = 3), values in [0, 255]; before
        ``TopdownAffine`` the source images (full images with B = 1 on the direct path, or
        same-size cached crops, possibly as an ``ImageList`` of views into the cache's
        shards), after it the model input (B, C, h_in, w_in) float32.
    keypoints (B, K, 2) float32: pixel coordinates in ``images`` (after ``RandomFlip``: in the
        mirrored image; after ``TopdownAffine``: in input pixels).
    visible (B, K) float32 in [0, 1]; 0 for unlabelled keypoints and, after ``TopdownAffine``,
        for keypoints that fall outside the input.
    center (B, 2), scale (B, 2) float32: MMPose's bbox_center / bbox_scale (w, h) in pixels of
        ``images``, padding included.
    rotation (B,) float32 degrees; flip (B,) bool; keys (B,) int64 stable sample ids that key
        the randomness (:class:`~posecore.transforms.rng.KeyedRNG`).

    Optional: bbox (B, 4) float32 xyxy (the input of ``GetBBoxCenterScale``); warp (B, 2, 3)
    float32, added by ``TopdownAffine``: the affine from source pixels (of the unflipped
    source image) to input pixels, i.e. ``inverse(warp)`` maps predictions back; targets
    dict[str, Tensor], added by ``GenerateTarget``: the codec's encode output.
    """

    images: Tensor
    keypoints: Tensor
    visible: Tensor
    center: Tensor
    scale: Tensor
    rotation: Tensor
    flip: Tensor
    keys: Tensor
    bbox: NotRequired[Tensor]
    warp: NotRequired[Tensor]
    targets: NotRequired[dict[str, Tensor]]


class BottomupBatch(TypedDict):
    """All people of one image per row; all images in a batch share one size.

    images (B, C, H, W) uint8 or float32 RGB, [0, 255]; after ``BottomupRandomAffine`` /
        ``BottomupResize`` the model input (B, C, h_in, w_in) float32.
    keypoints (B, N, K, 2) float32 in pixels of ``images``; visible (B, N, K) float32 (padding
        people have visible 0); flip (B,) bool; keys (B,) int64 sample ids.

    Optional: bbox (B, N, 4) float32 xyxy (after a warp: the axis-aligned box around the
    warped corners); warp (B, 2, 3) float32 source -> input pixels, added by the warps.
    """

    images: Tensor
    keypoints: Tensor
    visible: Tensor
    flip: Tensor
    keys: Tensor
    bbox: NotRequired[Tensor]
    warp: NotRequired[Tensor]


Batch = TopdownBatch | BottomupBatch
B = TypeVar("B", TopdownBatch, BottomupBatch)


class Transform(Protocol):
    """A batch transform: ``transform(batch, rng) -> batch``; it returns a new dict and leaves its input alone.

    Random transforms need a :class:`KeyedRNG` and raise without one; deterministic ones ignore it.
    """

    def __call__(self, batch: Any, rng: KeyedRNG | None = None) -> Any: ...


def require(batch: Any, name: str, *keys: str) -> None:
    missing = [k for k in keys if k not in batch]
    if missing:
        raise KeyError(f"{name} needs batch key(s) {', '.join(missing)}; the batch has {', '.join(sorted(batch))}")


def require_rng(rng: KeyedRNG | None, name: str) -> KeyedRNG:
    if rng is None:
        raise ValueError(
            f"{name} is random and needs a KeyedRNG: call it as transform(batch, KeyedRNG(seed, epoch)); "
            "validation pipelines leave random transforms out"
        )
    return rng


@dataclass(frozen=True)
class Compose:
    """Apply transforms in order: ``Compose([t1, t2])(batch, rng) == t2(t1(batch, rng), rng)``."""

    transforms: tuple[Transform, ...]

    def __init__(self, transforms: Sequence[Transform]) -> None:
        object.__setattr__(self, "transforms", tuple(transforms))

    def __call__(self, batch: B, rng: KeyedRNG | None = None) -> B:
        for t in self.transforms:
            batch = t(batch, rng)
        return batch


T = TypeVar("T", bound=type)


def _check_transform(name: str, cls: Any) -> None:
    if not dataclasses.is_dataclass(cls) or not callable(cls):
        raise TypeError(f"@register_transform({name!r}) needs a dataclass with __call__(batch, rng), got {cls!r}")


_TRANSFORMS: Registry[Transform] = Registry("transform", check=_check_transform)


def register_transform(name: str, *, batches: tuple[BatchKind, ...] = ("topdown",)) -> Callable[[T], T]:
    """Class decorator: make a frozen-dataclass transform buildable as ``build_transform(name, ...)``.

    ``batches`` says which batch layouts it accepts (the registry-driven tests run it on each).
    """
    return _TRANSFORMS.register(name, batches=tuple(batches))


def available_transforms(batch: BatchKind | None = None) -> tuple[str, ...]:
    """Registered transform names, sorted; only those accepting ``batch`` layout when given."""
    return tuple(n for n in _TRANSFORMS if batch is None or batch in _TRANSFORMS.info(n)["batches"])


def transform_batch_kinds(name: str) -> tuple[BatchKind, ...]:
    """The batch layouts the transform registered as ``name`` accepts."""
    _lookup(name)
    return _TRANSFORMS.info(name)["batches"]


def transform_fields(name: str) -> tuple[str, ...]:
    """The constructor fields of the transform registered as ``name`` (what ``build_transform`` accepts)."""
    return tuple(f.name for f in dataclasses.fields(_lookup(name)) if f.init)


def _lookup(name: str) -> type:
    if name not in _TRANSFORMS:
        raise ValueError(f"unknown transform {name!r}; available transforms: {', '.join(available_transforms())}")
    return _TRANSFORMS.get(name)  # type: ignore[return-value]


def build_transform(name: str, **kwargs: Any) -> Transform:
    """Build the transform registered as ``name`` from its dataclass fields.

    Raises ValueError for an unknown name (listing the available ones), an unknown keyword
    (listing the fields) or a missing required field.
    """
    _lookup(name)
    return _TRANSFORMS.build(name, **kwargs)
