"""Building the target-encoding cache (the ``encode`` stage): decode every image once, store crops.

Train people become uint8 crops with context around their boxes; val people become the
model's inputs with their encoded targets; both go to memory-mapped shards. The folder
layout, the key and the readers are in :mod:`posecore.data.cache`. One-stage codecs get
whole images instead (:mod:`posecore.data.build_images`); :func:`build_cache` picks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from posecore.codecs import Codec
from posecore.data.build_images import build_image_cache
from posecore.data.cache import CacheSpec, cache_key, codec_input_size
from posecore.datasets.coco import CocoPoseDataset, PoseInstance, load_image
from posecore.io import atomic_output_dir, atomic_write_json
from posecore.progress import Progress
from posecore.transforms.geometry import bbox_xyxy_to_center_scale, fix_aspect_ratio, warp_matrix


def _crop_geometry(inst: PoseInstance, spec: CacheSpec, input_size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """The image -> crop similarity (2, 3) for one person and its scale factor."""
    w, h = input_size
    cw, ch = spec.crop_size(input_size)
    bbox = torch.as_tensor(inst.bbox, dtype=torch.float64)[None]
    center, scale = bbox_xyxy_to_center_scale(bbox, spec.bbox_padding)
    fixed = fix_aspect_ratio(scale, w / h)
    s = cw / (float(fixed[0, 0]) * spec.context)
    cx, cy = float(center[0, 0]), float(center[0, 1])
    return np.array([[s, 0.0, cw / 2.0 - s * cx], [0.0, s, ch / 2.0 - s * cy]]), s


def _warp_crop(image: np.ndarray, m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """cv2.warpAffine, pre-shrinking with INTER_AREA when the crop is much smaller than the image region."""
    s = m[0, 0]
    if s < 0.5:
        f = int(math.floor(1.0 / s))
        small = cv2.resize(image, (image.shape[1] // f, image.shape[0] // f), interpolation=cv2.INTER_AREA)
        # (x + 0.5) / f - 0.5 maps original pixel centres to the shrunk image's.
        to_small = np.array([[1.0 / f, 0.0, 0.5 / f - 0.5], [0.0, 1.0 / f, 0.5 / f - 0.5], [0.0, 0.0, 1.0]])
        m = m @ np.linalg.inv(to_small)
        image = small
    return cv2.warpAffine(image, m[:2], size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ m[:, :2].T + m[:, 2]


def _group_by_image(instances: Sequence[PoseInstance]) -> list[list[int]]:
    groups: dict[str, list[int]] = {}
    for i, inst in enumerate(instances):
        groups.setdefault(str(inst.image_path), []).append(i)
    return list(groups.values())


def _train_crops(
    instances: Sequence[PoseInstance], group: list[int], spec: CacheSpec, input_size: tuple[int, int]
) -> list[dict[str, Any]]:
    image = load_image(instances[group[0]].image_path)
    out = []
    for i in group:
        inst = instances[i]
        m, s = _crop_geometry(inst, spec, input_size)
        x1, y1, x2, y2 = (float(v) for v in inst.bbox)
        corners = _apply(m, np.array([[x1, y1], [x2, y2]]))
        out.append(
            {
                "index": i,
                "crop": _warp_crop(image, m, spec.crop_size(input_size)),
                "keypoints": _apply(m, inst.keypoints.astype(np.float64)).astype(np.float32),
                "bbox": corners.reshape(4).astype(np.float32),
                "to_image": np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2].astype(np.float32),
            }
        )
    return out


def _val_inputs(
    instances: Sequence[PoseInstance], group: list[int], spec: CacheSpec, input_size: tuple[int, int], use_udp: bool
) -> list[dict[str, Any]]:
    image = load_image(instances[group[0]].image_path)
    w, h = input_size
    out = []
    for i in group:
        inst = instances[i]
        bbox = torch.as_tensor(inst.bbox, dtype=torch.float64)[None]
        center, scale = bbox_xyxy_to_center_scale(bbox, spec.bbox_padding)
        scale = fix_aspect_ratio(scale, w / h)
        m = warp_matrix(center, scale, torch.zeros(1), (w, h), use_udp, dtype=torch.float64)[0].numpy()
        kp = _apply(m, inst.keypoints.astype(np.float64)).astype(np.float32)
        inside = (kp[:, 0] >= 0) & (kp[:, 0] <= w - 1) & (kp[:, 1] >= 0) & (kp[:, 1] <= h - 1)
        out.append(
            {
                "index": i,
                "input": cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0),
                "keypoints": kp,
                "visible": inst.keypoints_visible * inside,
                "warp": m.astype(np.float32),
                "center": center[0].numpy().astype(np.float32),
                "scale": scale[0].numpy().astype(np.float32),
            }
        )
    return out


def _common_index(instances: Sequence[PoseInstance]) -> dict[str, np.ndarray]:
    return {
        "image_id": np.array([i.image_id for i in instances], dtype=np.int64),
        "ann_id": np.array([i.ann_id for i in instances], dtype=np.int64),
        "bbox_score": np.array([i.bbox_score for i in instances], dtype=np.float32),
        "area": np.array([i.area for i in instances], dtype=np.float32),
        "image_bbox": np.stack([i.bbox for i in instances]).astype(np.float32),
        "image_size": np.array([[i.image_width, i.image_height] for i in instances], dtype=np.int32),
    }


def _write_sharded(
    out_dir: Path,
    prefix: str,
    n: int,
    item_shape: tuple[int, ...],
    results: Iterable[list[dict[str, Any]]],
    key: str,
    shard_size: int,
    fields: dict[str, np.ndarray],
    order: np.ndarray,
) -> None:
    """Stream per-image results into uint8 shards in instance order ``order`` (position -> instance)."""
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    shards = [
        np.lib.format.open_memmap(
            out_dir / f"{prefix}_{s:03d}.npy",
            mode="w+",
            dtype=np.uint8,
            shape=(min(shard_size, n - s * shard_size), *item_shape),
        )
        for s in range(math.ceil(n / shard_size))
    ]
    # iterating ``results`` is what decodes and warps the images: the long part of ``encode``
    with Progress("encode", total=n, unit="inst", prefix=f"{out_dir.name} {prefix}") as bar:
        for group in results:
            for item in group:
                pos = position[item["index"]]
                shards[pos // shard_size][pos % shard_size] = item[key]
                for name, array in fields.items():
                    if name in item:
                        array[pos] = item[name]
            bar.update(len(group))
    for shard in shards:
        shard.flush()
    del shards


def _map(fn: Any, groups: list[list[int]], workers: int) -> Iterable[Any]:
    if workers <= 1:
        return map(fn, groups)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="posecore-cache")
    return pool.map(fn, groups)


def _build_split(
    instances: list[PoseInstance],
    out: Path,
    spec: CacheSpec,
    shards: tuple[str, str, tuple[int, int]],
    fields: dict[str, np.ndarray],
    work: Any,
) -> tuple[dict[str, np.ndarray], list[PoseInstance]]:
    """Write one split's shards in image order (``work(instances, group)`` makes a group's images);
    returns ``fields`` in that order and the instances in that order.

    ``shards``: (file prefix, item name, (H, W) of an item).
    """
    n = len(instances)
    out.mkdir(parents=True)
    groups = _group_by_image(instances)
    order = np.array([i for g in groups for i in g], dtype=np.int64)
    prefix, item, (h, w) = shards
    if n:
        results = _map(lambda g: work(instances, g), groups, spec.workers)
        _write_sharded(out, prefix, n, (h, w, 3), results, item, spec.shard_size, fields, order)
    return {name: array[order] for name, array in fields.items()}, [instances[i] for i in order]


def _build_train(ds: CocoPoseDataset, out: Path, spec: CacheSpec, input_size: tuple[int, int]) -> int:
    instances = list(ds.instances)
    n, k = len(instances), ds.meta.num_keypoints
    fields = {
        "keypoints": np.zeros((n, k, 2), np.float32),
        "bbox": np.zeros((n, 4), np.float32),
        "to_image": np.zeros((n, 2, 3), np.float32),
    }
    cw, ch = spec.crop_size(input_size)
    index, ordered = _build_split(
        instances, out, spec, ("crops", "crop", (ch, cw)), fields, lambda i, g: _train_crops(i, g, spec, input_size)
    )
    index["visible"] = np.stack([i.keypoints_visible for i in ordered]).astype(np.float32) if n else np.zeros((0, k))
    index.update(_common_index(ordered) if n else {})
    np.savez(out / "index.npz", **index)
    return n


def _build_val(ds: CocoPoseDataset, out: Path, spec: CacheSpec, codec: Codec) -> int:
    instances = list(ds.instances)
    n, k = len(instances), ds.meta.num_keypoints
    fields = {
        "keypoints": np.zeros((n, k, 2), np.float32),
        "visible": np.zeros((n, k), np.float32),
        "warp": np.zeros((n, 2, 3), np.float32),
        "center": np.zeros((n, 2), np.float32),
        "scale": np.zeros((n, 2), np.float32),
    }
    w, h = input_size = codec_input_size(codec)
    use_udp = bool(getattr(codec, "use_udp", False))
    index, ordered = _build_split(
        instances,
        out,
        spec,
        ("inputs", "input", (h, w)),
        fields,
        lambda i, g: _val_inputs(i, g, spec, input_size, use_udp),
    )
    index.update(_common_index(ordered) if n else {})
    np.savez(out / "index.npz", **index)
    if n:
        targets = codec.encode(torch.from_numpy(index["keypoints"]), torch.from_numpy(index["visible"]))
        for name, value in targets.items():
            np.save(out / f"target_{name}.npy", value.numpy().astype(np.float32))
    return n


def build_cache(dataset_dir: Path, out_dir: Path, spec: CacheSpec, codec: Codec) -> dict[str, Any]:
    """Build the cache of ``dataset_dir`` (a canonical dataset) at ``out_dir``, replacing it atomically.

    The codec's task decides the layout: crops per person (top-down) or whole images (one-stage).
    """
    if codec.task == "onestage":
        return build_image_cache(dataset_dir, out_dir, spec, codec)
    key = cache_key(dataset_dir, spec, codec)
    with atomic_output_dir(out_dir) as tmp:
        n_train = _build_train(CocoPoseDataset(dataset_dir, "train"), tmp / "train", spec, codec_input_size(codec))
        n_val = _build_val(CocoPoseDataset(dataset_dir, "val", test_mode=True), tmp / "val", spec, codec)
        report = {**key, "counts": {"train": n_train, "val": n_val}}
        atomic_write_json(tmp / "key.json", report, indent=2)
    return report
