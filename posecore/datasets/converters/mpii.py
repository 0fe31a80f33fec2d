"""MPII Human Pose in the JSON form MMPose and HRNet ship (``mpii_train.json``, ``mpii_val.json``).

Native record: one entry of a JSON list per person::

    {"image": "005808361.jpg", "center": [966.0, 340.0], "scale": 4.718,
     "joints": [[x, y], ...16], "joints_vis": [1, 0, ...16]}

Conventions, following MMPose (``mmpose/datasets/datasets/body/mpii_dataset.py``):

* Coordinates are MATLAB 1-based; 1 is subtracted from joints and center so the
  canonical dataset is in 0-based pixel centres like COCO. (MMPose 0.x and HRNet subtract
  it from both; MMPose 1.x subtracts it from the center only, keeps the joints 1-based
  and adds 1 to predictions before PCKh — a 1 px inconsistency we do not copy.)
* ``scale`` is the person's height / 200 px (``pixel_std`` 200). The box is MMPose's
  person box: a square of side ``200 * scale`` centred on ``center`` after MMPose's shift
  ``center_y += 15 * scale`` px ("to avoid cropping limbs"), then ``- 1`` as above,
  clipped to the image ``[0, W] x [0, H]`` (W, H from the image header). MMPose 0.x's
  extra ``scale * 1.25`` is *not* baked in: in MMPose 1.x that 1.25 is the top-down
  crop padding (``GetBBoxCenterScale(padding=1.25)``) applied to every dataset's box,
  and our pipeline does the same. An entry with ``center[0] == -1`` (no person position,
  as in MPII's test list) gets the labelled joints' box widened by ``bbox_margin``.
* ``joints_vis`` 1 -> v=2; 0 -> v=0 with x=y=0 (the file has no "occluded" flag).
* ``area`` is the box area (filled by the shared validation).

One annotation per list entry (id = list index + 1); one image per distinct ``image``
name (ids in order of first appearance). Records are named ``entry i (image name)``, ``i``
being the 0-based position in the JSON list.

Default layout: MMPose's ``annotations/mpii_{train,val}.json`` with images in ``images/``
when present; otherwise the one ``*.json`` file in ``data.root`` as ``all``, images in
``data.root``. ``data.annotations``/``data.images`` override (images default to
``data.root`` when annotation files are named).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from posecore.datasets.converters._base import (
    RawSplit,
    SourceSpec,
    clip_box,
    image_size,
    keypoint_box,
    register_converter,
    split_layout,
)
from posecore.metainfo import DatasetMeta
from posecore.validation import DataValidationError, Problem

PIXEL_STD = 200.0
CENTER_SHIFT = 15.0  # px per unit of scale, added to center y (MMPose)
MMPOSE_LAYOUT = {"train": "annotations/mpii_train.json", "val": "annotations/mpii_val.json"}


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def person_box(center: list[float], scale: float, size: tuple[int, int] | None) -> list[float]:
    """MMPose's MPII person box ``[x, y, w, h]`` from 1-based ``center`` and ``scale``, in 0-based pixels."""
    side = scale * PIXEL_STD
    cx = center[0] - 1.0
    cy = center[1] + CENTER_SHIFT * scale - 1.0
    return clip_box(cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2, size)


def _default_layout(root: Path) -> tuple[dict[str, str], dict[str, str]]:
    if (root / MMPOSE_LAYOUT["train"]).is_file():
        anns = {s: p for s, p in MMPOSE_LAYOUT.items() if (root / p).is_file()}
        return anns, {"all": "images"}
    found = sorted(p.name for p in root.glob("*.json")) if root.is_dir() else []
    if len(found) == 1:
        return {"all": found[0]}, {"all": "."}
    what = f"{len(found)} JSON files ({', '.join(found)})" if found else "no JSON file"
    raise DataValidationError(
        [Problem(str(root), "layout", "data.annotations", f"found {what} and no {MMPOSE_LAYOUT['train']}")],
        hint="Name the MPII JSON list with --ann [SPLIT=]PATH (data.annotations.all).",
    )


def _entry(
    entry: Any, i: int, file: str, margin: float, sizes: dict[str, tuple[int, int] | None], image_dir: Path
) -> tuple[str, dict[str, Any]] | Problem:
    """``(image name, annotation without ids)`` for one list entry, or the problem that prevents it."""
    if not isinstance(entry, dict):
        return Problem(file, f"entry {i}", "-", f"must be an object, got {type(entry).__name__}")
    name = entry.get("image")
    rec = f"entry {i} ({name})"
    if not isinstance(name, str) or not name:
        return Problem(file, f"entry {i}", "image", f"must be an image file name, got {name!r}")
    for key in ("joints", "joints_vis", "center", "scale"):
        if key not in entry:
            return Problem(file, rec, key, "is missing")
    joints, vis, center, scale = entry["joints"], entry["joints_vis"], entry["center"], entry["scale"]
    if not isinstance(joints, list) or not all(isinstance(j, list) and len(j) == 2 for j in joints):
        return Problem(file, rec, "joints", f"must be a list of [x, y] pairs, got {joints!r}")
    if not isinstance(vis, list) or len(vis) != len(joints):
        return Problem(file, rec, "joints_vis", f"must be a list of {len(joints)} flags (one per joint), got {vis!r}")
    if any(v not in (0, 1) or isinstance(v, bool) for v in vis):
        return Problem(file, rec, "joints_vis", f"flags must be 0 or 1, got {vis!r}")
    if not isinstance(center, list) or len(center) != 2 or not all(_number(c) for c in center):
        return Problem(file, rec, "center", f"must be [x, y] numbers, got {center!r}")
    if not _number(scale) or not math.isfinite(scale) or scale <= 0:
        return Problem(file, rec, "scale", f"must be a positive number (person height / 200 px), got {scale!r}")
    # The joint count is checked against the meta by the shared validation.
    keypoints: list[Any] = []
    labelled: list[tuple[float, float]] = []
    for (x, y), v in zip(joints, vis, strict=True):
        if v == 0:
            keypoints += [0.0, 0.0, 0]
        elif _number(x) and _number(y):
            keypoints += [x - 1.0, y - 1.0, 2]  # MATLAB 1-based -> 0-based
            labelled.append((x - 1.0, y - 1.0))
        else:
            keypoints += [x, y, 2]  # validation reports the non-number
    if name not in sizes:
        sizes[name] = image_size(image_dir / name)
    size = sizes[name]
    if center[0] == -1:
        bbox = keypoint_box(labelled, margin, size)
    else:
        bbox = person_box(center, float(scale), size)
    return name, {"category_id": 1, "bbox": bbox, "keypoints": keypoints, "iscrowd": 0}


def _fail(file: str, message: str) -> DataValidationError:
    return DataValidationError([Problem(file, "file", "-", message)], hint="Nothing was written.")


def parse_mpii_json(ann_file: Path, image_dir: Path, split: str, margin: float) -> RawSplit:
    """One MPII JSON list as a :class:`RawSplit`."""
    file = str(ann_file)
    if not ann_file.is_file():
        raise _fail(file, "annotation file does not exist")
    try:
        with ann_file.open("rb") as fh:
            entries = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise _fail(file, f"not valid JSON: {exc}") from exc
    if not isinstance(entries, list):
        kind = type(entries).__name__
        raise _fail(
            file, f"must be a JSON list of MPII entries (image, center, scale, joints, joints_vis), got a {kind}"
        )
    raw = RawSplit(split, [], [], image_dir, ann_file)
    image_ids: dict[str, int] = {}
    sizes: dict[str, tuple[int, int] | None] = {}
    for i, entry in enumerate(entries):
        parsed = _entry(entry, i, file, margin, sizes, image_dir)
        if isinstance(parsed, Problem):
            raw.problems.append(parsed)
            raw.omitted += 1
            continue
        name, ann = parsed
        if name not in image_ids:
            image_ids[name] = len(image_ids) + 1
            image: dict[str, Any] = {"id": image_ids[name], "file_name": name}
            if sizes[name] is not None:
                image["width"], image["height"] = sizes[name]
            raw.images.append(image)
        aid = i + 1
        raw.annotations.append({"id": aid, "image_id": image_ids[name], **ann})
        raw.records[aid] = f"entry {i} ({name})"
    return raw


@register_converter("mpii", default_meta="mpii")
def convert_mpii(spec: SourceSpec, meta: DatasetMeta) -> list[RawSplit]:
    root = Path(spec.root)
    if spec.annotations:
        default_images: dict[str, str] = {"all": "."}
        layout = split_layout(spec, default_annotations="")  # unused: spec.annotations is set
    else:
        default_anns, default_images = _default_layout(root)
        layout = {name: root / rel for name, rel in default_anns.items()}
    images = spec.images or default_images
    splits = []
    for name, ann_file in layout.items():
        image_dir = root / images.get(name, images.get("all", "."))
        splits.append(parse_mpii_json(ann_file, image_dir, name, spec.bbox_margin))
    return splits
