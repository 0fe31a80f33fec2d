"""COCO detection results (MMPose's ``bbox_file``): one validated reader for every user of person boxes.

A detection-results file is a JSON list of ``{"image_id", "category_id", "bbox": [x, y, w, h],
"score"}`` records, the format detectors write for COCO. The dataset reader
(:class:`posecore.datasets.coco.CocoPoseDataset` with ``det_file``) and the inference command
(``posecore infer --det``) both read it here, so a bad file gets the same message naming the
file, the record and the field, whoever reads it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posecore.validation import DataValidationError, Problem

DET_KEYS = ("image_id", "category_id", "bbox", "score")


@dataclass(frozen=True)
class DetectionRecord:
    """One detected box: ``bbox`` is ``(x, y, w, h)`` in image pixels."""

    index: int
    image_id: Hashable
    category_id: int | None
    bbox: tuple[float, float, float, float]
    score: float

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        x, y, w, h = self.bbox
        return (x, y, x + w, y + h)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _read_list(path: Path) -> list[Any]:
    if not path.is_file():
        raise FileNotFoundError(f"detection file {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataValidationError([Problem(str(path), "file", "-", f"not valid JSON: {exc}")]) from exc
    if not isinstance(data, list):
        raise DataValidationError(
            [
                Problem(
                    str(path),
                    "file",
                    "-",
                    f"must be a JSON list of {{{', '.join(DET_KEYS)}}} records, got {type(data).__name__}",
                )
            ]
        )
    return data


def read_detection_results(
    path: str | Path,
    image_ids: Collection[Hashable],
    *,
    unknown_image: Callable[[Any], str] | None = None,
    required: tuple[str, ...] = DET_KEYS,
    hint: str = "Fix the detection file; it must be COCO detection results for these images.",
) -> list[DetectionRecord]:
    """Every record of ``path``, validated; raises :class:`DataValidationError` listing all bad ones.

    ``image_ids``: the images the boxes may refer to. A record naming another image is an error
    whose text is ``unknown_image(image_id)``; with ``unknown_image=None`` such records are
    skipped instead (a file for a whole dataset, run on a few of its images). ``required``: the
    keys a record must have (``category_id`` may be left out, then it is None).
    """
    file = str(path)
    problems: list[Problem] = []
    records: list[DetectionRecord] = []
    known = image_ids if isinstance(image_ids, set | frozenset | dict) else set(image_ids)
    for i, det in enumerate(_read_list(Path(path))):
        where = f"detection[{i}]"
        if not isinstance(det, dict):
            problems.append(Problem(file, where, "-", f"must be a mapping with keys {', '.join(DET_KEYS)}"))
            continue
        bad = len(problems)
        for key in required:
            if key not in det:
                problems.append(Problem(file, where, key, "is missing"))
        bbox = det.get("bbox")
        if "bbox" in det and not (
            isinstance(bbox, list) and len(bbox) == 4 and all(_finite(v) for v in bbox) and min(bbox[2:]) >= 0
        ):
            problems.append(
                Problem(file, where, "bbox", f"must be [x, y, w, h] with finite numbers and w, h >= 0, got {bbox!r}")
            )
        if "score" in det and not _finite(det["score"]):
            problems.append(Problem(file, where, "score", f"must be a finite number, got {det['score']!r}"))
        image_id = det.get("image_id")
        unknown = "image_id" in det and image_id not in known
        if unknown and unknown_image is not None:
            problems.append(Problem(file, where, "image_id", unknown_image(image_id)))
        if len(problems) > bad or unknown or "image_id" not in det:
            continue
        category = det.get("category_id")
        records.append(
            DetectionRecord(
                index=i,
                image_id=image_id,
                category_id=None if category is None else int(category),
                bbox=tuple(float(v) for v in bbox),  # type: ignore[arg-type]
                score=float(det["score"]),
            )
        )
    if problems:
        raise DataValidationError(problems, hint=hint)
    return records
