"""``posecore browse``: draw the ground truth of a converted dataset into PNGs for a human to check.

Image mode writes one PNG per image with all its people (the bottom-up view); instance mode
writes one crop per person around its box (the top-down view, what a top-down model sees).
Samples are drawn at random with a fixed seed, so the same command shows the same samples.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from posecore.datasets.coco import CocoPoseDataset, PoseImage, PoseInstance, load_image
from posecore.io import atomic_write_bytes
from posecore.metainfo import DatasetMeta
from posecore.visualization.draw import ColorBy, draw_label, draw_pose, make_grid

BrowseMode = Literal["image", "instance"]
MAX_IMAGE_SIDE = 1024  # large photos are shrunk so that lines stay visible when viewed
CROP_SIDE = 256  # person crops are scaled so their longer side is this
CROP_PADDING = 1.25  # MMPose's top-down box padding
GRID_CELL = (320, 320)


def write_png(path: Path, image: np.ndarray) -> Path:
    """Write an RGB image as PNG atomically."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode {path} as PNG")
    return atomic_write_bytes(path, buf.tobytes())


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return image
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def _scale_points(points: np.ndarray, scale: float, offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Pixel-centre-correct mapping of points through a crop at ``offset`` then a resize by ``scale``."""
    shifted = points - np.asarray(offset, dtype=np.float32)
    return (shifted + 0.5) * scale - 0.5


def render_image(
    sample: PoseImage, meta: DatasetMeta, color_by: ColorBy = "meta", side: int | None = None
) -> np.ndarray:
    """The image with every person's skeleton and box, unlabelled.

    Scaled so its longer side is ``side`` (before drawing, so lines keep their width), or
    shrunk to at most ``MAX_IMAGE_SIDE`` when ``side`` is None.
    """
    image = load_image(sample.image_path)
    longer = max(image.shape[:2])
    scale = side / longer if side is not None else min(1.0, MAX_IMAGE_SIDE / longer)
    image = _resize(image, scale)
    boxes = _scale_points(sample.bboxes.reshape(-1, 2), scale).reshape(-1, 4)
    kpts = _scale_points(sample.keypoints, scale)
    return draw_pose(image, kpts, sample.keypoints_visible, meta, boxes, color_by=color_by)


def render_instance(
    sample: PoseInstance, meta: DatasetMeta, color_by: ColorBy = "meta", side: int = CROP_SIDE
) -> np.ndarray:
    """The person's box padded by ``CROP_PADDING`` and cropped (clipped to the image), scaled so its
    longer side is ``side``, with the pose drawn; unlabelled."""
    image = load_image(sample.image_path)
    x1, y1, x2, y2 = sample.bbox.tolist()
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half = max(x2 - x1, y2 - y1) * CROP_PADDING / 2
    h, w = image.shape[:2]
    left, top = max(0, math.floor(cx - half)), max(0, math.floor(cy - half))
    right, bottom = min(w, math.ceil(cx + half) + 1), min(h, math.ceil(cy + half) + 1)
    crop = image[top:bottom, left:right]
    scale = side / max(crop.shape[:2])
    crop = _resize(crop, scale)
    kpts = _scale_points(sample.keypoints, scale, (left, top))
    box = _scale_points(sample.bbox.reshape(2, 2), scale, (left, top)).reshape(4)
    return draw_pose(crop, kpts, sample.keypoints_visible, meta, box, color_by=color_by)


def browse(
    dataset_dir: str | Path,
    out_dir: str | Path,
    split: str = "train",
    n: int = 16,
    seed: int = 0,
    mode: BrowseMode = "image",
    grid: bool = False,
    color_by: ColorBy = "meta",
) -> list[Path]:
    """Draw the ground truth of ``n`` random samples (seeded) of a converted dataset; return the PNG paths.

    ``mode="image"``: ``<split>_<i>_img<image_id>.png`` per image, all people drawn.
    ``mode="instance"``: ``<split>_<i>_ann<ann_id>.png`` per person, a crop around its box.
    ``grid=True`` writes the same samples as one ``<split>_<mode>_grid.png`` instead.
    Samples follow the training filters (crowd, unlabelled and degenerate-box people are not shown).
    """
    if mode not in ("image", "instance"):
        raise ValueError(f"mode must be 'image' or 'instance', got {mode!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    ds = CocoPoseDataset(dataset_dir, split=split, mode="bottomup" if mode == "image" else "topdown")
    if len(ds) == 0:
        raise ValueError(f"split {split!r} of {dataset_dir} has no samples to draw in {mode} mode")
    rng = np.random.default_rng(seed)
    picks = sorted(rng.choice(len(ds), size=min(n, len(ds)), replace=False).tolist())
    out_dir = Path(out_dir)

    cell = (GRID_CELL if mode == "image" else (CROP_SIDE, CROP_SIDE)) if grid else None
    rendered: list[tuple[str, np.ndarray]] = []
    for i, idx in enumerate(picks):
        if mode == "image":
            img = ds.images[idx]
            drawn = render_image(img, ds.meta, color_by, side=min(cell) if cell else None)
            name, label = (
                f"{split}_{i:03d}_img{img.image_id}.png",
                f"{img.image_path.name} id={img.image_id} people={img.num_instances}",
            )
        else:
            inst = ds.instances[idx]
            drawn = render_instance(inst, ds.meta, color_by, side=min(cell) if cell else CROP_SIDE)
            name, label = f"{split}_{i:03d}_ann{inst.ann_id}.png", f"ann {inst.ann_id} img {inst.image_id}"
        rendered.append((name, draw_label(drawn, label)))

    if cell is not None:
        cols = math.ceil(math.sqrt(len(rendered)))
        montage = make_grid([im for _, im in rendered], cols=cols, cell=cell)
        return [write_png(out_dir / f"{split}_{mode}_grid.png", montage)]
    return [write_png(out_dir / name, im) for name, im in rendered]
