"""A tiny canonical dataset for the one-stage data path: people, crowd regions and awkward images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from posecore.data.cache import CacheSpec
from posecore.metainfo import resolve_meta_path

K = 17
#: the model input (W, H); train images are stored 1.5x that
INPUT = (64, 48)
SPEC = CacheSpec(crop_scale=1.5, shard_size=2, workers=2)


def _kps(*labelled: tuple[int, float, float]) -> list[float]:
    flat = [0.0] * (3 * K)
    for k, x, y in labelled:
        flat[3 * k : 3 * k + 3] = [x, y, 2]
    return flat


def _ann(aid: int, image_id: int, bbox: list[float], kps: list[float], crowd: int = 0) -> dict[str, object]:
    return {
        "id": aid,
        "image_id": image_id,
        "bbox": bbox,
        "keypoints": kps,
        "num_keypoints": sum(1 for v in kps[2::3] if v > 0),
        "area": bbox[2] * bbox[3] * 0.7,
        "iscrowd": crowd,
        "category_id": 1,
    }


# (file, width, height, grayscale)
IMAGES = {
    1: ("people.png", 100, 80, False),  # two people and a crowd region
    2: ("dot.png", 1, 1, False),  # a 1x1 image, nobody in it
    3: ("gray.png", 60, 90, True),  # a grayscale PNG (portrait), one person
    4: ("crowd.png", 50, 50, False),  # only a crowd region
    5: ("empty.png", 40, 30, False),  # nobody
}
ANNOTATIONS = [
    # left shoulder (5) left of the right shoulder (6) as seen: a flip swaps them
    _ann(1, 1, [10, 10, 30, 60], _kps((0, 25, 15), (5, 20, 30), (6, 32, 30), (11, 22, 55))),
    _ann(2, 1, [60, 5, 35, 70], _kps((0, 77, 10), (5, 70, 25), (6, 85, 25))),
    _ann(3, 1, [45, 40, 60, 50], _kps(), crowd=1),  # clipped to [45, 40, 99, 79]
    _ann(4, 3, [5, 20, 40, 60], _kps((0, 20, 25), (5, 15, 40), (6, 35, 40))),
    _ann(5, 4, [0, 0, 50, 50], _kps(), crowd=1),
]


def source_image(w: int, h: int, gray: bool, seed: int) -> np.ndarray:
    """Smooth content with a gradient, so resampled pixels compare meaningfully."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 40 + 150 * (xx / max(w - 1, 1)) * 0.5 + 150 * (yy / max(h - 1, 1)) * 0.5
    if gray:
        return base.astype(np.uint8)
    return np.stack([base, 255 - base, np.full_like(base, 60 + 20 * seed)], -1).astype(np.uint8)


def write_dataset(root: Path) -> Path:
    """A canonical dataset: the same five images in ``train`` and ``val``, coco meta."""
    images = []
    for iid, (name, w, h, gray) in IMAGES.items():
        path = root / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), source_image(w, h, gray, iid))
        images.append({"id": iid, "file_name": name, "width": w, "height": h})
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    doc = {"images": images, "annotations": ANNOTATIONS, "categories": [{"id": 1, "name": "person"}]}
    for split in ("train", "val"):
        (root / "annotations" / f"{split}.json").write_text(json.dumps(doc))
    shutil.copyfile(resolve_meta_path("coco"), root / "meta.yaml")
    return root
