"""Multi-dataset training data: several sources, each with its own skeleton, as one canonical dataset.

``data:`` names the primary source, whose meta (``data.meta``) is the skeleton of the merged dataset;
``data.merge`` lists more sources, each a full source spec (``source``, ``meta``, ``root``,
``annotations``, ``images``, ...) plus:

- ``name``: its label in the provenance (``images[].source`` of the merged annotation files) and
  in the report's per-source counts; unique; the primary's is ``data.name`` (default: its
  ``data.source``);
- ``keypoint_map``: ``{target keypoint: source keypoint}`` by name, MMPose's ``KeypointConverter``
  (``mapping=[(source index, target index)]``) spelled with names. Unlisted target keypoints take
  the source keypoint of the same name; a target keypoint with no source becomes unlabelled
  (``v = 0``), so it costs nothing in the loss. E.g. AIC-14 into COCO-17 maps the shared limbs and
  leaves the face unlabelled;
- ``ratio``: how much of its *train* split one epoch sees (MMPose's ``CombinedDataset``
  ``sample_ratio_factor``): 0.5 keeps a deterministic half of its images, 2 repeats them twice;
  val splits are never resampled, so evaluation sees each image once.

Each source is parsed and validated against its own meta (bad records name its own file), then
mapped, renumbered (image and annotation ids after the previous sources'; files under
``images/<split>/<name>/``), and merged; :func:`convert_merged` writes one canonical dataset
atomically and reports ``sources: {name: {split: {images, annotations}}}``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posecore.datasets.converters._base import (
    CONVERTERS,
    ConvertReport,
    RawSplit,
    SourceSpec,
    finalize_splits,
    write_canonical,
)
from posecore.metainfo import DatasetMeta, load_meta
from posecore.validation import DataValidationError, Problem, summarize

__all__ = ["MergeSource", "convert_merged", "converter_names", "keypoint_mapping"]


def converter_names() -> list[str]:
    """The ``data.source`` choices (read when params are checked, once the package has registered every converter)."""
    return CONVERTERS.names()


@dataclass(frozen=True)
class MergeSource(SourceSpec):
    """One more source of a merged dataset (``data.merge[i]``; see the module docstring)."""

    source: str = field(default="coco", metadata={"choices": converter_names})
    name: str = ""
    keypoint_map: dict[str, str] = field(default_factory=dict)
    ratio: float = field(default=1.0, metadata={"range": (0.0, 1000.0)})


def keypoint_mapping(target: DatasetMeta, source: DatasetMeta, explicit: dict[str, str], where: str) -> list[int]:
    """For each target keypoint, the source keypoint index it takes (-1: none, it stays unlabelled).

    ``explicit`` maps target names to source names; other target keypoints take the source keypoint
    of the same name. Raises :class:`DataValidationError` naming ``where.keypoint_map.<key>`` for a
    name that is in neither skeleton, and when nothing maps at all.
    """
    problems = []
    for tgt, src in explicit.items():
        if tgt not in target.keypoint_names:
            problems.append(
                Problem(where, "keypoint_map", tgt, f"is not a keypoint of the target meta {target.name!r}")
            )
        if src not in source.keypoint_names:
            problems.append(Problem(where, f"keypoint_map.{tgt}", str(src), f"is not a keypoint of {source.name!r}"))
    if problems:
        raise DataValidationError(
            problems, hint=f"keypoint names of {target.name!r}: {', '.join(target.keypoint_names)}"
        )
    index = {name: i for i, name in enumerate(source.keypoint_names)}
    mapping = [index.get(explicit.get(name, name), -1) for name in target.keypoint_names]
    if all(i < 0 for i in mapping):
        raise DataValidationError(
            [Problem(where, "keypoint_map", "-", f"no keypoint of {source.name!r} maps to {target.name!r}")],
            hint="Give keypoint_map: {target keypoint: source keypoint} for the joints they share.",
        )
    return mapping


def _remap(ann: dict[str, Any], mapping: list[int]) -> dict[str, Any]:
    kps = ann.get("keypoints") or []
    out: list[float] = []
    for src in mapping:
        out += [float(kps[3 * src]), float(kps[3 * src + 1]), kps[3 * src + 2]] if src >= 0 else [0.0, 0.0, 0]
    return {**ann, "keypoints": out, "num_keypoints": sum(1 for v in out[2::3] if v > 0)}


def _resample(images: list[dict[str, Any]], ratio: float, seed: int) -> list[tuple[dict[str, Any], int]]:
    """(image, copy number) for ``round(len * ratio)`` draws: the images in a fixed hashed order, cycled."""
    if ratio == 1.0 or not images:
        return [(img, 0) for img in images]
    ranked = sorted(images, key=lambda i: hashlib.sha1(f"{seed}:{i['file_name']}".encode()).hexdigest())
    n = round(len(ranked) * ratio)
    return [(ranked[i % len(ranked)], i // len(ranked)) for i in range(n)]


@dataclass
class _Ids:
    image: int = 0
    annotation: int = 0


def _renumber(
    split: RawSplit, name: str, mapping: list[int] | None, draws: list[tuple[dict[str, Any], int]], ids: _Ids
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    by_image: dict[Any, list[dict[str, Any]]] = {}
    for ann in split.annotations:
        by_image.setdefault(ann["image_id"], []).append(ann)
    images, annotations = [], []
    keep_ids = mapping is None  # the primary keeps its ids (they match its own files and det files)
    for img, copy in draws:
        if keep_ids and copy == 0:
            new_id = img["id"]
        else:
            ids.image += 1
            new_id = ids.image
        file_name = img["file_name"] if mapping is None else f"{name}/{img['file_name']}"
        images.append(
            {
                **img,
                "id": new_id,
                "file_name": file_name,
                "source": name,
                "_src": str(split.image_root / img["file_name"]),
            }
        )
        for ann in by_image.get(img["id"], []):
            ann = ann if mapping is None else _remap(ann, mapping)
            if keep_ids and copy == 0:
                annotations.append({**ann, "image_id": new_id})
            else:
                ids.annotation += 1
                annotations.append({**ann, "id": ids.annotation, "image_id": new_id})
    return images, annotations


def convert_merged(primary: SourceSpec, name: str, extra: list[MergeSource], out_dir: Path) -> ConvertReport:
    """The primary source and ``extra`` merged into one canonical dataset at ``out_dir`` (module docstring)."""
    names = [name] + [s.name or s.source for s in extra]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataValidationError(
            [Problem("params.yaml", "data.merge", "name", f"source name {n!r} is used more than once") for n in dupes],
            hint="Give each merged source its own name (data.name for the primary, data.merge[i].name).",
        )
    target = load_meta(primary.meta)
    mappings: list[list[int] | None] = [None]
    metas = [target]
    for i, src in enumerate(extra):
        meta = load_meta(src.meta)
        metas.append(meta)
        mappings.append(keypoint_mapping(target, meta, src.keypoint_map, f"data.merge[{i}] ({names[i + 1]})"))
    parsed = []
    dropped_total = {"images": 0, "annotations": 0}
    dropped_problems: list[Problem] = []
    for spec, meta in zip([primary, *extra], metas, strict=True):
        if spec.source not in CONVERTERS:
            raise ValueError(f"unknown data.source {spec.source!r}; choose one of: {', '.join(converter_names())}")
        raw = CONVERTERS.get(spec.source)(spec, meta)
        splits, dropped, problems = finalize_splits(raw, meta, spec)
        parsed.append(splits)
        dropped_total = {k: dropped_total[k] + dropped[k] for k in dropped_total}
        dropped_problems += problems
    ids = _Ids(
        image=max((int(i["id"]) for s in parsed[0].values() for i in s.images), default=0),
        annotation=max((int(a["id"]) for s in parsed[0].values() for a in s.annotations), default=0),
    )
    merged: dict[str, RawSplit] = {}
    per_source: dict[str, dict[str, dict[str, int]]] = {}
    ratios = [1.0] + [s.ratio for s in extra]
    for splits, src_name, mapping, ratio, spec in zip(parsed, names, mappings, ratios, [primary, *extra], strict=True):
        per_source[src_name] = {}
        for split_name, split in splits.items():
            draws = _resample(split.images, ratio if split_name == "train" else 1.0, spec.split_seed)
            images, annotations = _renumber(split, src_name, mapping, draws, ids)
            per_source[src_name][split_name] = {"images": len(images), "annotations": len(annotations)}
            into = merged.setdefault(split_name, RawSplit(split_name, [], [], split.image_root, split.source_file))
            into.images.extend(images)
            into.annotations.extend(annotations)
    counts = write_canonical(merged, target, primary, out_dir)
    return ConvertReport(out_dir, counts, dropped_total, summarize(dropped_problems), sources=per_source)
