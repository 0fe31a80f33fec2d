"""Shared machinery of every converter: the source spec, validation, splitting and the atomic write.

A converter only parses its native format into :class:`RawSplit` objects (COCO-style
image and annotation dicts plus where each record came from). Everything else —
checking files and values, dropping or rejecting bad records, the train/val split and
writing the canonical dataset — happens here, once, for all formats.
"""

from __future__ import annotations

import hashlib
import math
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from posecore._registry import Registry
from posecore.datasets.converters.validate import is_id, validate_split
from posecore.datasets.layout import DatasetLayout
from posecore.io import atomic_output_dir, atomic_write_json, link_or_copy
from posecore.metainfo import DatasetMeta, resolve_meta_path
from posecore.progress import track
from posecore.validation import DataValidationError, Problem

SPLITS = ("train", "val")


@dataclass(frozen=True)
class SourceSpec:
    """Where a source dataset is and how to convert it.

    ``annotations`` and ``images`` map a split name (``train``, ``val``, or ``all`` for a
    source without splits) to a path relative to ``root``; empty means the format's own
    default layout. ``all`` is split into train/val by ``val_fraction`` with ``split_seed``.
    """

    source: str = "synthetic"
    meta: str = "coco"
    root: str = "data/synthetic"
    annotations: dict[str, str] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)
    val_fraction: float = field(default=0.1, metadata={"range": (0.0, 1.0)})
    split_seed: int = 0
    bbox_margin: float = field(default=0.15, metadata={"range": (0.0, 2.0)})
    drop_invalid: bool = False
    check_images: bool = True


@dataclass
class RawSplit:
    """A split as parsed from the native format, before validation.

    ``images``/``annotations`` are COCO dicts; image ``file_name`` is relative to
    ``image_root``. ``records`` maps an annotation id to a description of its native
    record (e.g. ``"row 12 (labeled-data/a/img1.png)"``) so problems name what the user
    can find in their own file.
    """

    name: str
    images: list[dict[str, Any]]
    annotations: list[dict[str, Any]]
    image_root: Path
    source_file: Path
    records: dict[int, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    #: Native records the converter already left out because of a problem in ``problems``.
    omitted: int = 0


@dataclass
class ConvertReport:
    out_dir: Path
    counts: dict[str, dict[str, int]]
    dropped: dict[str, int]
    dropped_reasons: dict[str, int]
    #: Merged datasets (:mod:`posecore.datasets.converters.merge`): counts per source, then per split.
    sources: dict[str, dict[str, dict[str, int]]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "counts": self.counts,
            "dropped": self.dropped,
            "dropped_reasons": self.dropped_reasons,
            **({"sources": self.sources} if self.sources is not None else {}),
        }


SPLIT_NAMES = ("train", "val", "all")


ConverterFn = Callable[[SourceSpec, DatasetMeta], list[RawSplit]]
CONVERTERS: Registry[list[RawSplit]] = Registry("converter")


def register_converter(name: str, default_meta: str = "coco") -> Callable[[ConverterFn], ConverterFn]:
    """Function decorator: ``name`` becomes a ``data.source`` / ``posecore convert --format`` choice."""
    return CONVERTERS.register(name, default_meta=default_meta)


def split_layout(spec: SourceSpec, default_annotations: str | dict[str, str]) -> dict[str, Path]:
    """Annotation file per split: ``spec.annotations`` or the format's default, under ``spec.root``.

    Raises :class:`DataValidationError` for an unknown split name or ``all`` mixed with
    ``train``/``val`` (the same rules as the COCO-style formats).
    """
    default = default_annotations if isinstance(default_annotations, dict) else {"all": default_annotations}
    table = spec.annotations or default
    problems = [
        Problem(spec.root, "data.annotations", name, "unknown split; use train and val, or all")
        for name in sorted(set(table) - set(SPLIT_NAMES))
    ]
    if "all" in table and {"train", "val"} & set(table):
        problems.append(
            Problem(spec.root, "data.annotations", "all", "give either 'all' or 'train'/'val' files, not both")
        )
    if problems:
        raise DataValidationError(problems)
    return {name: Path(spec.root) / rel for name, rel in table.items()}


def image_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` from the image header only; ``None`` if unreadable (validation reports why)."""
    try:
        with Image.open(path) as im:
            return im.size
    except Exception:  # PIL raises many types for missing or corrupt files
        return None


def clip_box(x1: float, y1: float, x2: float, y2: float, size: tuple[int, int] | None) -> list[float]:
    """``[x, y, w, h]`` of the corners clipped to ``[0, W] x [0, H]`` (unclipped when ``size`` is None)."""
    if size is not None:
        w, h = size
        x1, x2 = min(max(x1, 0.0), w), min(max(x2, 0.0), w)
        y1, y2 = min(max(y1, 0.0), h), min(max(y2, 0.0), h)
    return [float(x1), float(y1), float(max(x2 - x1, 0.0)), float(max(y2 - y1, 0.0))]


def keypoint_box(points: Iterable[tuple[float, float]], margin: float, size: tuple[int, int] | None) -> list[float]:
    """The points' extent widened by ``margin`` x its width/height on each side, clipped to the image.

    Non-finite points are ignored (validation rejects them); no points gives ``[0, 0, 0, 0]``.
    """
    pts = [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]
    if not pts:
        return [0.0, 0.0, 0.0, 0.0]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    dx, dy = (max(xs) - min(xs)) * margin, (max(ys) - min(ys)) * margin
    return clip_box(min(xs) - dx, min(ys) - dy, max(xs) + dx, max(ys) + dy, size)


def split_ids(keys: dict[int, str], val_fraction: float, seed: int) -> tuple[set[int], set[int]]:
    """Deterministic train/val split of image ids, stable under re-ordering of the source.

    Images are ranked by a seeded hash of their file name and the first
    ``round(n * val_fraction)`` go to val.
    """
    ranked = sorted(keys, key=lambda i: hashlib.sha1(f"{seed}:{keys[i]}".encode()).hexdigest())
    n_val = round(len(ranked) * val_fraction)
    return set(ranked[n_val:]), set(ranked[:n_val])


def _subset(split: RawSplit, name: str, image_ids: set[int]) -> RawSplit:
    return RawSplit(
        name=name,
        images=[i for i in split.images if i["id"] in image_ids],
        annotations=[a for a in split.annotations if a.get("image_id") in image_ids],
        image_root=split.image_root,
        source_file=split.source_file,
        records=split.records,
    )


def finalize_splits(
    raw: list[RawSplit], meta: DatasetMeta, spec: SourceSpec
) -> tuple[dict[str, RawSplit], dict[str, int], list[Problem]]:
    """Validate all splits, drop or reject bad records, and map ``all`` to train/val."""
    problems: list[Problem] = []
    dropped = {"images": 0, "annotations": 0}
    dropped_problems: list[Problem] = []
    clean: list[RawSplit] = []
    for split in raw:
        bad_images, bad_anns, split_problems = validate_split(split, meta, spec.check_images)
        problems += split_problems
        if split.omitted and not spec.drop_invalid and not split_problems:
            raise ValueError(f"converter omitted {split.omitted} record(s) of {split.source_file} without a problem")
        if split_problems and spec.drop_invalid:
            dropped_problems += split_problems
            keep_images = [i for i in split.images if is_id(i.get("id")) and i["id"] not in bad_images]
            kept_ids = {i["id"] for i in keep_images}
            keep_anns = [
                a
                for a in split.annotations
                if is_id(a.get("id"))
                and a["id"] not in bad_anns
                and is_id(a.get("image_id"))
                and a["image_id"] in kept_ids
            ]
            # An image whose people were all dropped would become a false "nobody here" example.
            had_people = {a["image_id"] for a in split.annotations if is_id(a.get("image_id"))}
            still_has = {a["image_id"] for a in keep_anns}
            keep_images = [i for i in keep_images if i["id"] not in had_people or i["id"] in still_has]
            dropped["annotations"] += split.omitted
            dropped["images"] += len(split.images) - len(keep_images)
            dropped["annotations"] += len(split.annotations) - len(keep_anns)
            split = RawSplit(split.name, keep_images, keep_anns, split.image_root, split.source_file, split.records)
        clean.append(split)
    if problems and not spec.drop_invalid:
        raise DataValidationError(
            problems,
            hint="Nothing was written. Fix the records above, or pass --drop-invalid "
            "(data.drop_invalid: true) to skip them and convert the rest.",
        )
    if problems and not any(split.images for split in clean):
        raise DataValidationError(
            problems, hint="Nothing was written: no valid image is left after dropping the records above."
        )
    out: dict[str, RawSplit] = {}
    for split in clean:
        if split.name == "all":
            train, val = split_ids({i["id"]: i["file_name"] for i in split.images}, spec.val_fraction, spec.split_seed)
            out["train"], out["val"] = _subset(split, "train", train), _subset(split, "val", val)
        elif split.name in SPLITS:
            out[split.name] = split
        else:
            raise ValueError(f"converter produced split {split.name!r}; splits must be train, val or all")
    return out, dropped, dropped_problems


def write_canonical(
    splits: dict[str, RawSplit], meta: DatasetMeta, spec: SourceSpec, out_dir: Path
) -> dict[str, dict[str, int]]:
    """Write ``annotations/<split>.json``, ``images/`` (hard links) and ``meta.yaml`` atomically."""
    counts: dict[str, dict[str, int]] = {}
    with atomic_output_dir(out_dir) as tmp:
        layout = DatasetLayout(tmp)
        for name, split in splits.items():
            images = []
            for img in track(split.images, "convert", unit="img", prefix=f"write {name}"):
                img = dict(img)
                # "_src": the image's own file when the split's images come from several roots (merged sources)
                src = Path(img.pop("_src")) if "_src" in img else split.image_root / img["file_name"]
                dst_name = Path(name) / img["file_name"]
                if not (layout.images_dir / dst_name).exists():  # several records may share one image file
                    link_or_copy(src, layout.images_dir / dst_name)
                images.append({**img, "file_name": dst_name.as_posix()})
            annotations = [{k: v for k, v in a.items()} for a in split.annotations]
            doc = {
                "info": {
                    "description": f"{spec.source} converted by posecore",
                    "source": spec.source,
                    "meta": meta.name,
                },
                "images": images,
                "annotations": annotations,
                "categories": [meta.coco_category()],
            }
            atomic_write_json(layout.annotations(name), doc)
            counts[name] = {"images": len(images), "annotations": len(annotations)}
        shutil.copyfile(resolve_meta_path(spec.meta), layout.meta)
    return counts
