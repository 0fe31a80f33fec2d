"""Checks of every converted record: files, ids, sizes, keypoints, boxes — each problem named, all collected.

:func:`validate_split` runs on a converter's :class:`RawSplit` before anything is written;
``_base.finalize_splits`` then drops the bad records (``--drop-invalid``) or raises with the
whole list, so a user fixes a file in one pass.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from posecore.metainfo import DatasetMeta
from posecore.progress import track
from posecore.validation import Problem

if TYPE_CHECKING:
    from posecore.datasets.converters._base import RawSplit


def _finite(values: Any) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _escapes(root: Path, file_name: str) -> bool:
    if Path(file_name).is_absolute():
        return True
    target = (root / file_name).resolve()
    return not target.is_relative_to(root.resolve())


def validate_split(
    split: RawSplit, meta: DatasetMeta, check_images: bool = True
) -> tuple[set[int], set[int], list[Problem]]:
    """Check every image and annotation; return (bad image ids, bad annotation ids, problems).

    Also normalises good records in place: fills image width/height from the file when
    missing, recomputes ``num_keypoints``, fills ``area`` (box area) and ``iscrowd``.
    """
    problems = list(split.problems)
    file = str(split.source_file)
    bad_images: set[int] = set()
    bad_anns: set[int] = set()
    image_ids: dict[Any, dict[str, Any]] = {}

    def report(rec: str, fld: str, msg: str) -> None:
        problems.append(Problem(file, rec, fld, msg))

    # decoding every image is the long part of a conversion (minutes for COCO's 118k)
    for img in track(split.images, "convert", unit="img", prefix=f"check {split.name}"):
        iid = img.get("id")
        rec = f"image id={iid} ({img.get('file_name', '?')})"
        if not is_id(iid):
            report(rec, "id", f"must be an integer, got {iid!r}")
            continue
        if iid in image_ids:
            report(rec, "id", "duplicate image id")
            bad_images.add(iid)
            continue
        image_ids[iid] = img
        name = img.get("file_name")
        if not isinstance(name, str) or not name:
            report(rec, "file_name", f"must be a non-empty string, got {name!r}")
            bad_images.add(iid)
            continue
        if _escapes(split.image_root, name):
            report(
                rec,
                "file_name",
                f"{name!r} escapes the data root {split.image_root} (absolute or '../' paths are not allowed)",
            )
            bad_images.add(iid)
            continue
        path = split.image_root / name
        if not path.is_file():
            report(rec, "file_name", f"image file {path} does not exist")
            bad_images.add(iid)
            continue
        for key in ("width", "height"):
            v = img.get(key)
            if v is not None and (not _finite([v]) or v <= 0):
                report(rec, key, f"must be a positive number, got {v!r}")
                bad_images.add(iid)
        if iid in bad_images or not check_images:
            continue
        try:
            with Image.open(path) as im:
                im.load()
                w, h = im.size
        except Exception as exc:  # PIL raises many types for corrupt data
            report(rec, "file_name", f"image file {path} cannot be decoded ({type(exc).__name__}: {exc})")
            bad_images.add(iid)
            continue
        given = (img.get("width"), img.get("height"))
        if any(g is not None and g != actual for g, actual in zip(given, (w, h), strict=True)):
            shown = "x".join("?" if g is None else str(g) for g in given)
            report(rec, "width/height", f"{shown} does not match the image file's {w}x{h}")
            bad_images.add(iid)
            continue
        img["width"], img["height"] = w, h

    k = meta.num_keypoints
    seen_ann: set[Any] = set()
    for ann in split.annotations:
        aid = ann.get("id")
        rec = f"annotation id={aid}" + (f" [{split.records[aid]}]" if is_id(aid) and aid in split.records else "")
        if not is_id(aid):
            report(rec, "id", f"must be an integer, got {aid!r}")
            continue
        if aid in seen_ann:
            report(rec, "id", "duplicate annotation id")
            bad_anns.add(aid)
            continue
        seen_ann.add(aid)
        n_before = len(problems)
        iid = ann.get("image_id")
        if not is_id(iid) or iid not in image_ids:
            report(rec, "image_id", f"refers to image id {iid!r}, which is not in 'images'")
        kps = ann.get("keypoints")
        if not isinstance(kps, list) or len(kps) != 3 * k:
            if not isinstance(kps, list):
                got = f"is {kps!r}, not a list"
            elif len(kps) % 3:
                got = f"has {len(kps)} values, not a multiple of 3 (x, y, v per keypoint),"
            else:
                got = f"has {len(kps) // 3} keypoints"
            report(
                rec, "keypoints", f"{got} but the dataset meta {meta.name!r} has {k} (expected {3 * k} values x,y,v)"
            )
        elif not _finite(kps):
            bad = [i // 3 for i, v in enumerate(kps) if not _finite([v])]
            report(rec, "keypoints", f"contains NaN, inf or non-numbers (keypoint {_names(meta, bad)})")
        elif any(v not in (0, 1, 2) for v in kps[2::3]):
            bad = [i for i, v in enumerate(kps[2::3]) if v not in (0, 1, 2)]
            flags = sorted({kps[3 * i + 2] for i in bad})
            report(
                rec,
                "keypoints",
                f"visibility flags must be 0, 1 or 2, got {', '.join(map(str, flags))} (keypoint {_names(meta, bad)})",
            )
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not _finite(bbox):
            report(rec, "bbox", f"must be [x, y, w, h] with finite numbers, got {bbox!r}")
        elif bbox[2] < 0 or bbox[3] < 0:
            report(rec, "bbox", f"negative size w={bbox[2]}, h={bbox[3]}")
        area = ann.get("area")
        if area is not None and (not _finite([area]) or area < 0):
            report(rec, "area", f"must be a finite number >= 0, got {area!r}")
        if ann.get("iscrowd", 0) not in (0, 1):
            report(rec, "iscrowd", f"must be 0 or 1, got {ann.get('iscrowd')!r}")
        if len(problems) > n_before:
            bad_anns.add(aid)
            continue
        ann["num_keypoints"] = int(sum(1 for v in kps[2::3] if v > 0))
        if area is None:
            ann["area"] = float(bbox[2] * bbox[3])
        ann.setdefault("iscrowd", 0)
        ann.setdefault("category_id", 1)
    return bad_images, bad_anns, problems


def _names(meta: DatasetMeta, indices: list[int], limit: int = 3) -> str:
    """``"3 (left_ear), 4 (right_ear)"`` for the first ``limit`` distinct indices."""
    unique = sorted(set(indices))
    text = ", ".join(f"{i} ({meta.keypoint_names[i]})" for i in unique[:limit])
    return text + (f" and {len(unique) - limit} more" if len(unique) > limit else "")
