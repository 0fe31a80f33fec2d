"""The one-stage cache: whole letterboxed images, every person of each, and batches built from them.

Layout of a split folder (written by :func:`posecore.data.build_images.build_image_cache`)::

    <split>/index.npz           per image: image_id (n,), image_size (n, 2) [W, H], warp (n, 2, 3)
                                image px -> stored px, person_start (n + 1,) offsets into the
                                per-person arrays keypoints (P, K, 2), visible (P, K), bbox (P, 4)
                                xyxy, area (P,), ann_id (P,), crowd (P,) bool (all in stored px)
    <split>/images_000.npy ...  uint8 (n, Hs, Ws, 3) letterboxed images, memory-mapped when read

Crowd regions are rows with ``crowd`` True, visible 0 and ann_id -1: they travel through the
augmentation with the people and leave it as ``ignore_boxes``. Train images are stored
``crop_scale`` times the model input so zoom-in augmentation keeps detail; val images are
the model input exactly.

:class:`CachedImageData` turns a train split into training batches (the ``TrainData``
protocol of :mod:`posecore.engine.step`)::

    inputs  (B, 3, h, w) uint8 (the trainer normalises on its device)
    targets boxes (B, N, 4), keypoints (B, N, K, 2), visible (B, N, K), areas (B, N) float32
            in input px, valid (B, N) bool, ignore_boxes (B, M, 4) float32, ignore_valid (B, M)
            bool, plus whatever else ``codec.encode`` returns (B, N, ...)
    keys    (B,) int64

N is the most people of any image in the batch and M the most crowd regions (both >= 1,
zero-padded); (h, w) is the codec's ``input_size``. The targets are made by the pipeline's
last step, :class:`posecore.transforms.GenerateOneStageTarget`, which clips boxes and marks
people pushed out of view invalid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from posecore.transforms import Compose, KeyedRNG
from posecore.transforms.geometry import ImageList

__all__ = ["CachedImageData", "ImageSplit"]

_PER_IMAGE = ("image_id", "image_size", "warp", "person_start")


class ImageSplit:
    """One split of a one-stage cache: the index arrays and memory-mapped image shards.

    ``images(indices)`` -> (B, Hs, Ws, 3) uint8; ``people(i)`` -> image i's per-person arrays.
    Index arrays are attributes (``image_id``, ``image_size``, ``warp``, ``person_start``,
    ``keypoints``, ``visible``, ``bbox``, ``area``, ``ann_id``, ``crowd``).
    """

    def __init__(self, root: Path, split: str) -> None:
        self.root = root / split
        self.split = split
        with np.load(self.root / "index.npz") as index:
            self.arrays = {name: index[name] for name in index.files}
        self._shards = [np.load(p, mmap_mode="r") for p in sorted(self.root.glob("images_*.npy"))]
        self._shard_size = len(self._shards[0]) if self._shards else 1

    def __len__(self) -> int:
        return len(self.arrays["image_id"])

    def __getattr__(self, name: str) -> np.ndarray:
        arrays = self.__dict__.get("arrays", {})
        if name in arrays:
            return arrays[name]
        raise AttributeError(name)

    @property
    def image_shape(self) -> tuple[int, int]:
        """(Hs, Ws) of the stored images."""
        if not self._shards:
            raise ValueError(f"the split {self.root} holds no images")
        h, w = self._shards[0].shape[1:3]
        return int(h), int(w)

    @property
    def num_keypoints(self) -> int:
        return int(self.arrays["keypoints"].shape[1])

    def _views(self, indices: Sequence[int] | np.ndarray) -> list[np.ndarray]:
        size = self._shard_size
        return [self._shards[int(i) // size][int(i) % size] for i in np.asarray(indices, dtype=np.int64)]

    def images(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """The images at ``indices``, stacked: (B, Hs, Ws, 3) uint8 (a copy)."""
        views = self._views(indices)
        if views:
            return np.stack(views)
        return np.empty((0, *(self._shards[0].shape[1:] if self._shards else (0, 0, 3))), dtype=np.uint8)

    def image_views(self, indices: Sequence[int] | np.ndarray) -> ImageList:
        """The images at ``indices`` as read-only views into the memory-mapped shards (no copy)."""
        return ImageList(self._views(indices))

    def people(self, i: int) -> dict[str, np.ndarray]:
        """Image ``i``'s rows of the per-person arrays (crowd regions included, ``crowd`` True)."""
        start, stop = (int(v) for v in self.arrays["person_start"][i : i + 2])
        return {k: v[start:stop] for k, v in self.arrays.items() if k not in _PER_IMAGE}


def _pad_rows(split: ImageSplit, idx: np.ndarray) -> dict[str, np.ndarray]:
    """The images' rows stacked and zero-padded to R = the most rows of any image (>= 1):
    keypoints (B, R, K, 2), visible (B, R, K), bbox (B, R, 4) float32, crowd and present (B, R) bool."""
    rows = [split.people(int(i)) for i in idx]
    r = max([1, *(len(p["crowd"]) for p in rows)])
    b, k = len(idx), split.num_keypoints
    out = {
        "keypoints": np.zeros((b, r, k, 2), np.float32),
        "visible": np.zeros((b, r, k), np.float32),
        "bbox": np.zeros((b, r, 4), np.float32),
        "crowd": np.zeros((b, r), bool),
        "present": np.zeros((b, r), bool),
    }
    for row, people in enumerate(rows):
        count = len(people["crowd"])
        for name in ("keypoints", "visible", "bbox", "crowd"):
            out[name][row, :count] = people[name]
        out["present"][row, :count] = True
    return out


@dataclass
class CachedImageData:
    """Training batches of whole images from a one-stage cache split, augmented batch-wise.

    ``batch(indices, epoch)`` -> {"inputs", "targets", "keys"} (module docstring). ``pipeline``
    is :func:`posecore.transforms.image_train_pipeline`'s: flip, random affine into the model
    input, optional colour jitter (uint8 kept), then the codec's targets. Randomness is keyed
    by (seed, epoch, sample index): a sample looks the same whichever process or batch it
    lands in.
    """

    split: ImageSplit
    pipeline: Compose
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def num_samples(self) -> int:
        return len(self.split)

    def batch(self, indices: Sequence[int], epoch: int) -> dict[str, Any]:
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size == 0:
            raise ValueError("CachedImageData.batch needs at least one index")
        dev = self.device
        # On the CPU the warp reads each image straight from its shard; a GPU gets one stacked copy.
        views = self.split.image_views(idx)
        batch = {name: torch.from_numpy(value).to(dev) for name, value in _pad_rows(self.split, idx).items()}
        batch.update(
            images=views if dev.type == "cpu" else views.to_tensor().to(dev),
            flip=torch.zeros(len(idx), dtype=torch.bool, device=dev),
            keys=torch.from_numpy(idx).to(dev),
        )
        out = self.pipeline(batch, KeyedRNG(self.seed, epoch))
        if "targets" not in out:
            raise ValueError("the pipeline made no targets: build it with posecore.transforms.image_train_pipeline")
        return {"inputs": out["images"], "targets": out["targets"], "keys": out["keys"]}
