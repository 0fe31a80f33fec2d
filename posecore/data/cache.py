"""The target-encoding cache: every image decoded once, people stored as fixed-size uint8 crops.

Layout of a cache folder (written atomically by :func:`posecore.data.build.build_cache`)::

    key.json                    what the cache was built from (dataset hash, input size, codec, spec)
    train/index.npz             per person: keypoints/bbox/center/scale in crop pixels, ids, ...
    train/crops_000.npy ...     uint8 (n, Hc, Wc, 3) shards, memory-mapped when read
    val/index.npz               per person: keypoints in input pixels, warp (image -> input), ids
    val/inputs_000.npy ...      uint8 (n, h, w, 3): the model input, no augmentation
    val/target_<key>.npy        float32 (N, ...): the codec's encoded targets for each target key

Train crops: around each person's padded box (``bbox_padding``, aspect ratio fixed to the
input's) a region ``context`` times larger is stored at ``crop_scale`` pixels per input pixel,
so shift/scale/rotate augmentation happens later on the crop, batch-wise (see
:class:`CachedTopdownData`). The crop is a similarity of the image (uniform scale plus
translation), and boxes and keypoints are stored in crop pixels, so the augmentation pipeline
gives the same result on a crop as on the full image (up to interpolation) as long as the
augmented box stays inside the stored context; pixels beyond it read as black, as pixels
beyond the image border do.

The cache key (:func:`cache_key`) covers the dataset (hash of its annotation files and
meta), the input size, the codec and its parameters and the crop spec; DVC tracks the same
things as deps/params of the ``encode`` stage, and :func:`open_cache` refuses a cache whose key
differs from what the caller expects.

One-stage codecs (``codec.task == "onestage"``) get a different layout, whole letterboxed
images with every person of each: :mod:`posecore.data.build_images` writes it,
:class:`posecore.data.images.ImageSplit` reads it, and its key also holds ``"task"``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from posecore.codecs import Codec, available_codecs, build_codec, codec_class
from posecore.data.images import ImageSplit
from posecore.transforms import Compose, KeyedRNG, make_topdown_batch
from posecore.transforms.geometry import ImageList

CACHE_VERSION = 1


@dataclass(frozen=True)
class CacheSpec:
    """How people are cropped into the cache (the input size is the codec's ``input_size``).

    context: stored crop side / padded box side; crop_scale: stored pixels per model-input
    pixel at augmentation scale 1; workers: decoding threads (speed only). One-stage caches
    store whole images and use only crop_scale (train images are crop_scale x the input),
    shard_size and workers.
    """

    context: float = field(default=1.6, metadata={"range": (1.0, 4.0)})
    crop_scale: float = field(default=1.0, metadata={"range": (0.25, 4.0)})
    bbox_padding: float = field(default=1.25, metadata={"range": (1.0, 3.0)})
    shard_size: int = field(default=512, metadata={"range": (1, 1_000_000)})
    workers: int = field(default=2, metadata={"range": (1, 256)})

    def crop_size(self, input_size: tuple[int, int]) -> tuple[int, int]:
        w, h = input_size
        return (round(w * self.context * self.crop_scale), round(h * self.context * self.crop_scale))


def codec_config(codec: Codec) -> dict[str, Any]:
    """``{"name": registered name, **fields}``: enough to rebuild the codec with :func:`codec_from_config`."""
    name = next(n for n in available_codecs() if codec_class(n) is type(codec))
    return {"name": name, **json.loads(json.dumps(dataclasses.asdict(codec)))}


def codec_input_size(codec: Codec) -> tuple[int, int]:
    """The model input size (w, h) the codec encodes for; every codec has one."""
    w, h = codec.input_size  # type: ignore[attr-defined]
    return int(w), int(h)


def codec_from_config(config: dict[str, Any]) -> Codec:
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k != "name"}
    return build_codec(config["name"], **options)


def dataset_hash(dataset_dir: Path) -> str:
    """sha256 over the canonical dataset's annotation files and meta (images are named in them)."""
    digest = hashlib.sha256()
    for path in sorted((dataset_dir / "annotations").glob("*.json")) + [dataset_dir / "meta.yaml"]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cache_key(dataset_dir: Path, spec: CacheSpec, codec: Codec) -> dict[str, Any]:
    # Only what shapes the stored data: not where it lives (``out`` of a subclass) or speed (``workers``).
    spec_dict = {f.name: getattr(spec, f.name) for f in dataclasses.fields(CacheSpec) if f.name != "workers"}
    key = {
        "version": CACHE_VERSION,
        "dataset": dataset_hash(dataset_dir),
        "spec": json.loads(json.dumps(spec_dict)),
        "codec": codec_config(codec),
    }
    # Top-down keys stay as they were (no "task"), so existing caches keep matching.
    if codec.task != "topdown":
        key["task"] = codec.task
        # Whole images letterboxed to the input size: the crop geometry and the codec's decoding
        # settings (thresholds, NMS, sigmas) do not shape them, so changing those re-encodes nothing.
        key["spec"] = {k: key["spec"][k] for k in ("crop_scale", "shard_size")}
        key["codec"] = {"name": key["codec"]["name"], "input_size": key["codec"]["input_size"]}
    return key


class CacheSplit:
    """One split of a cache: the index arrays and memory-mapped image shards.

    ``images(indices)`` -> (B, H, W, 3) uint8; for ``train`` the crops, for ``val`` the inputs.
    Index arrays are attributes: ``keypoints`` (N, K, 2), ``visible`` (N, K), ``image_id``,
    ``ann_id``, ``bbox_score``, ``area``, ``image_bbox`` (N, 4) xyxy in image pixels, and
    ``bbox``/``to_image`` (train) or ``warp``/``center``/``scale`` (val).
    """

    def __init__(self, root: Path, split: str) -> None:
        self.root = root / split
        self.split = split
        with np.load(self.root / "index.npz") as index:
            self.arrays = {name: index[name] for name in index.files}
        prefix = "crops" if split == "train" else "inputs"
        self._shards = [np.load(p, mmap_mode="r") for p in sorted(self.root.glob(f"{prefix}_*.npy"))]
        self._shard_size = len(self._shards[0]) if self._shards else 1

    def __len__(self) -> int:
        return len(self.arrays["keypoints"])

    def __getattr__(self, name: str) -> np.ndarray:
        arrays = self.__dict__.get("arrays", {})
        if name in arrays:
            return arrays[name]
        raise AttributeError(name)

    def _views(self, indices: Sequence[int] | np.ndarray) -> list[np.ndarray]:
        size = self._shard_size
        return [self._shards[int(i) // size][int(i) % size] for i in np.asarray(indices, dtype=np.int64)]

    def images(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """The images at ``indices``, stacked: (B, H, W, 3) uint8 (a copy)."""
        views = self._views(indices)
        return np.stack(views) if views else np.empty((0, *self._shards[0].shape[1:]), dtype=np.uint8)

    def image_views(self, indices: Sequence[int] | np.ndarray) -> ImageList:
        """The images at ``indices`` as read-only views into the memory-mapped shards (no copy)."""
        return ImageList(self._views(indices))

    def targets(self, indices: Sequence[int] | np.ndarray) -> dict[str, Tensor]:
        """Val only: the stored encoded targets for ``indices``."""
        idx = np.asarray(indices, dtype=np.int64)
        out = {}
        for path in sorted(self.root.glob("target_*.npy")):
            out[path.stem.removeprefix("target_")] = torch.from_numpy(np.load(path, mmap_mode="r")[idx].copy())
        return out


def open_cache(root: Path, expected_key: dict[str, Any] | None = None) -> dict[str, CacheSplit] | dict[str, ImageSplit]:
    """Open a cache; with ``expected_key``, fail unless it was built from exactly that.

    {"train", "val"} -> :class:`CacheSplit` (top-down), or :class:`ImageSplit` when the key says
    ``"task": "onestage"``.
    """
    key_file = root / "key.json"
    if not key_file.is_file():
        raise FileNotFoundError(f"no target-encoding cache at {root} (key.json missing): run `dvc repro encode`")
    stored = json.loads(key_file.read_text())
    if expected_key is not None:
        differs = [k for k in ("version", "task", "dataset", "spec", "codec") if stored.get(k) != expected_key.get(k)]
        if differs:
            raise ValueError(
                f"the cache at {root} was built for different {', '.join(differs)} "
                f"(cache: {[stored.get(k) for k in differs]}, now: {[expected_key.get(k) for k in differs]}); "
                "rebuild it with `dvc repro encode`"
            )
    if stored.get("task") == "onestage":
        return {split: ImageSplit(root, split) for split in ("train", "val")}
    return {split: CacheSplit(root, split) for split in ("train", "val")}


@dataclass
class CachedTopdownData:
    """Training batches from cached crops: augmentation and encoding applied batch-wise.

    ``batch(indices, epoch)`` -> {"inputs": (B, 3, h, w) float32, "targets": codec targets,
    "keys": (B,) int64}. Randomness is keyed by (seed, epoch, sample index), so a sample
    gets the same augmentation whichever process or batch it lands in.
    """

    split: CacheSplit
    pipeline: Compose
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def num_samples(self) -> int:
        return len(self.split)

    def batch(self, indices: Sequence[int], epoch: int) -> dict[str, Any]:
        idx = np.asarray(indices, dtype=np.int64)
        # On the CPU the warp reads each crop straight from its shard; a GPU gets one stacked copy.
        views = self.split.image_views(idx)
        images = views if self.device.type == "cpu" else views.to_tensor().to(self.device)
        batch = make_topdown_batch(
            images,
            torch.from_numpy(self.split.keypoints[idx]).to(self.device),
            torch.from_numpy(self.split.visible[idx]).to(self.device),
            torch.from_numpy(idx).to(self.device),
            bbox=torch.from_numpy(self.split.bbox[idx]).to(self.device),
        )
        out = self.pipeline(batch, KeyedRNG(self.seed, epoch))
        return {"inputs": out["images"], "targets": out["targets"], "keys": out["keys"], "warp": out["warp"]}
