"""Data transforms: batched, device-agnostic augmentation and target generation with MMPose 1.x conventions.

The contract: a transform is a frozen dataclass called as ``transform(batch, rng) -> batch``.
It takes a whole batch (a :class:`TopdownBatch` or :class:`BottomupBatch` dict of tensors)
and returns a new dict, vectorised over the batch, on the batch's device: during GPU
training one call warps and encodes the batch on the GPU. ``rng`` is a
:class:`KeyedRNG` (seed, epoch); random transforms draw per-sample numbers keyed by
``batch["keys"]`` so a sample's augmentation never depends on its batch, position or rank.

Top-down batch (one person per row, see :class:`TopdownBatch` for every key)::

    images (B, 3, H, W) uint8/float32 RGB   keypoints (B, K, 2) float32 pixels of images
    visible (B, K) float32                  center, scale (B, 2) float32 (MMPose bbox_center/scale)
    rotation (B,) degrees  flip (B,) bool   keys (B,) int64 sample ids
    + bbox (B, 4) xyxy in; + warp (B, 2, 3) and targets out

Pipelines: :func:`topdown_train_pipeline` / :func:`topdown_val_pipeline` build MMPose's
recipe from a :class:`~posecore.metainfo.DatasetMeta` and a codec. The per-sample
numpy/OpenCV reference path lives in :mod:`posecore.transforms.reference`.

To add a transform: write a frozen dataclass with ``__call__(self, batch, rng=None)`` in
the module of its kind (``common.py`` for both layouts, ``topdown.py``, ``bottomup.py``),
start its docstring with the shapes it reads and writes, decorate it with
``@register_transform("name", batches=("topdown",))`` (list each layout it accepts) and,
if random, give it a ``stream: int`` field no other transform uses and draw through
``rng.uniform(batch["keys"], self.stream, n)``. ``tests/transforms/test_registry.py`` then
runs it on small batches of each listed layout automatically.

The names below load on first use (PEP 562): the transform modules import torch, and the
torch-free bundle runtime imports the NumPy crop geometry of :mod:`posecore.transforms.geometry`,
which must not pull them in. The first name used loads every transform module, so the registry
is complete, as with eager imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._base import (
        Batch,
        BatchKind,
        BottomupBatch,
        Compose,
        TopdownBatch,
        Transform,
        available_transforms,
        build_transform,
        register_transform,
        transform_batch_kinds,
        transform_fields,
    )
    from .bottomup import BottomupRandomAffine, BottomupResize, GenerateOneStageTarget, image_train_pipeline
    from .common import IMAGENET_MEAN, IMAGENET_STD, GenerateTarget, Normalize, PhotometricDistortion, RandomFlip
    from .rng import KeyedRNG
    from .topdown import (
        GetBBoxCenterScale,
        RandomBBoxTransform,
        RandomHalfBody,
        TopdownAffine,
        TopdownAugmentation,
        make_topdown_batch,
        topdown_train_pipeline,
        topdown_val_pipeline,
    )

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Batch",
    "BatchKind",
    "BottomupBatch",
    "BottomupRandomAffine",
    "BottomupResize",
    "Compose",
    "GenerateOneStageTarget",
    "GenerateTarget",
    "GetBBoxCenterScale",
    "KeyedRNG",
    "Normalize",
    "PhotometricDistortion",
    "RandomBBoxTransform",
    "RandomFlip",
    "RandomHalfBody",
    "TopdownAffine",
    "TopdownAugmentation",
    "TopdownBatch",
    "Transform",
    "available_transforms",
    "build_transform",
    "image_train_pipeline",
    "make_topdown_batch",
    "register_transform",
    "topdown_train_pipeline",
    "topdown_val_pipeline",
    "transform_batch_kinds",
    "transform_fields",
]

_SUBMODULES = ("rng", "_base", "common", "topdown", "bottomup")


def __getattr__(name: str) -> object:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    namespace = globals()
    for sub in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{sub}")
        namespace.update({n: getattr(module, n) for n in __all__ if n not in namespace and hasattr(module, n)})
    return namespace[name]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
