"""Building the one-stage cache (the ``encode`` stage for ``codec.task == "onestage"``).

Every image, people or not, is decoded once and letterboxed into a fixed stored size: scaled
by ``s = min(Ws / W, Hs / H)`` (aspect kept), centred, black padding. Images without people
stay (they are the negatives a detector-like model learns from, and evaluation must see every
image); crowd regions become rows with ``crowd`` True. The layout and the reader are in
:mod:`posecore.data.images`, the key in :func:`posecore.data.cache.cache_key`.

The letterbox is one ``cv2.resize`` (``INTER_AREA`` when shrinking by more than 2x, where
bilinear sampling would alias, else ``INTER_LINEAR``) pasted at a whole-pixel offset, so the
stored ``warp`` is exact in OpenCV's pixel-centre convention: x' = sx (x + 0.5) - 0.5 + tx,
with sx = (resized width) / W (equal to s up to the rounding of the resized size).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from posecore.codecs import Codec
from posecore.data.cache import CacheSpec, cache_key, codec_input_size
from posecore.datasets.coco import CocoPoseDataset, PoseImage, load_image
from posecore.io import atomic_output_dir, atomic_write_json
from posecore.progress import Progress
from posecore.transforms.letterbox import letterbox

__all__ = ["build_image_cache", "stored_size"]

#: Below this scale the resize averages pixel areas instead of sampling bilinearly.


def stored_size(input_size: tuple[int, int], spec: CacheSpec, split: str) -> tuple[int, int]:
    """(Ws, Hs) of a split's stored images: the model input for val, ``crop_scale`` times it for train."""
    if split != "train":
        return input_size
    w, h = input_size
    return max(1, round(w * spec.crop_scale)), max(1, round(h * spec.crop_scale))


def _apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ m[:, :2].T + m[:, 2]


def _warp_boxes(m: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """xyxy (n, 4) through an axis-aligned scale + shift (the letterbox keeps boxes boxes)."""
    return _apply(m, boxes.reshape(-1, 2).astype(np.float64)).reshape(-1, 4)


def _encode_image(record: PoseImage, size: tuple[int, int]) -> dict[str, Any]:
    """One image -> its stored pixels, warp and rows (people first, then crowd regions)."""
    image = load_image(record.image_path)
    stored, m = letterbox(image, size)
    n, c = record.num_instances, len(record.crowd_boxes)
    k = record.keypoints.shape[1]
    people_boxes = _warp_boxes(m, record.bboxes)
    crowd_boxes = _warp_boxes(m, record.crowd_boxes)
    crowd_area = (crowd_boxes[:, 2] - crowd_boxes[:, 0]) * (crowd_boxes[:, 3] - crowd_boxes[:, 1])
    return {
        "image": stored,
        "warp": m.astype(np.float32),
        "image_size": np.array([image.shape[1], image.shape[0]], np.int32),
        "keypoints": np.concatenate(
            [_apply(m, record.keypoints.astype(np.float64)).reshape(n, k, 2), np.zeros((c, k, 2))]
        ).astype(np.float32),
        "visible": np.concatenate([record.keypoints_visible.reshape(n, k), np.zeros((c, k))]).astype(np.float32),
        "bbox": np.concatenate([people_boxes, crowd_boxes]).astype(np.float32),
        # The annotation's area (segmentation area, what COCO's OKS uses) in stored px^2;
        # crowd regions have only their box.
        "area": np.concatenate([record.areas * m[0, 0] * m[1, 1], crowd_area]).astype(np.float32),
        "ann_id": np.concatenate([record.ann_ids, np.full(c, -1)]).astype(np.int64),
        "crowd": np.concatenate([np.zeros(n, bool), np.ones(c, bool)]),
    }


_ROWS = ("keypoints", "visible", "bbox", "area", "ann_id", "crowd")


def _build_split(ds: CocoPoseDataset, out: Path, spec: CacheSpec, size: tuple[int, int]) -> int:
    """Write one split's shards and index; returns the number of images."""
    out.mkdir(parents=True)
    records = list(ds.images)
    n, k = len(records), ds.meta.num_keypoints
    ws, hs = size
    shards = [
        np.lib.format.open_memmap(
            out / f"images_{s:03d}.npy",
            mode="w+",
            dtype=np.uint8,
            shape=(min(spec.shard_size, n - s * spec.shard_size), hs, ws, 3),
        )
        for s in range(math.ceil(n / spec.shard_size))
    ]
    warp = np.zeros((n, 2, 3), np.float32)
    image_size = np.zeros((n, 2), np.int32)
    rows: dict[str, list[np.ndarray]] = {name: [] for name in _ROWS}
    counts = np.zeros(n, np.int64)
    pool = ThreadPoolExecutor(max_workers=spec.workers, thread_name_prefix="posecore-cache")
    # iterating the results is what decodes and letterboxes the images: the long part of ``encode``
    with pool, Progress("encode", total=n, unit="img", prefix=f"{out.name} images") as bar:
        results = (
            pool.map(lambda r: _encode_image(r, size), records)
            if spec.workers > 1
            else map(lambda r: _encode_image(r, size), records)
        )
        for i, item in enumerate(results):
            shards[i // spec.shard_size][i % spec.shard_size] = item["image"]
            warp[i], image_size[i] = item["warp"], item["image_size"]
            counts[i] = len(item["crowd"])
            for name in _ROWS:
                rows[name].append(item[name])
            bar.update(1)
    for shard in shards:
        shard.flush()
    del shards
    empty = {
        "keypoints": np.zeros((0, k, 2), np.float32),
        "visible": np.zeros((0, k), np.float32),
        "bbox": np.zeros((0, 4), np.float32),
        "area": np.zeros(0, np.float32),
        "ann_id": np.zeros(0, np.int64),
        "crowd": np.zeros(0, bool),
    }
    np.savez(
        out / "index.npz",
        image_id=np.array([r.image_id for r in records], dtype=np.int64),
        image_size=image_size,
        warp=warp,
        person_start=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        **{name: np.concatenate(rows[name]) if rows[name] else empty[name] for name in _ROWS},
    )
    return n


def build_image_cache(dataset_dir: Path, out_dir: Path, spec: CacheSpec, codec: Codec) -> dict[str, Any]:
    """Build the one-stage cache of ``dataset_dir`` (a canonical dataset) at ``out_dir``, atomically.

    Returns the key written to ``key.json`` plus ``counts`` (images per split).
    """
    if codec.task != "onestage":
        raise ValueError(
            f"build_image_cache needs a one-stage codec, got {type(codec).__name__} (task {codec.task!r}); "
            "posecore.data.build.build_cache picks the right builder"
        )
    key = cache_key(dataset_dir, spec, codec)
    input_size = codec_input_size(codec)
    with atomic_output_dir(out_dir) as tmp:
        counts = {}
        for split in ("train", "val"):
            # test_mode keeps images without people in both splits: they are valid negatives.
            ds = CocoPoseDataset(dataset_dir, split, mode="bottomup", test_mode=True)
            counts[split] = _build_split(ds, tmp / split, spec, stored_size(input_size, spec, split))
        report = {**key, "counts": counts}
        atomic_write_json(tmp / "key.json", report, indent=2)
    return report
