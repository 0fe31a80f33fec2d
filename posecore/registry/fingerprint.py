"""The evaluation-data fingerprint: which val data a metric was computed on.

Two registered versions are compared only when their ``posecore.eval_data`` tags match, so every
place that names the evaluation data must name it the same way. The fingerprint of a file is
``md5:<hex>`` of its bytes, exactly what DVC records for it in ``dvc.lock``; for the val split
that file is its COCO annotations (``DatasetLayout(data.out).annotations("val")``).

:func:`eval_data_fingerprint` is the one rule, used by the export stage (the bundle's
provenance), the register stage (the version's tag) and the champion re-evaluation flow (today's
data): ``register.eval_data`` when set, else a fingerprint recorded earlier (the ``eval_data``
key of the evaluate metrics or of bundle.json), else the md5 of the val annotations.

COCO metrics depend on the person boxes as much as on the data: the evaluate stage records
:func:`with_boxes` of the annotations' fingerprint and the box source (``evaluate.boxes``) in its
metrics, so the registry compares only metrics taken with the same boxes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

EVAL_DATA_KEYS = ("eval_data", "eval_data_fingerprint", "data_fingerprint")
"""Keys under which a metrics file or bundle.json may record the fingerprint (first found wins)."""


def file_fingerprint(path: str | Path) -> str:
    """``md5:<hex>`` of the file at ``path``, as DVC records it."""
    digest = hashlib.md5(usedforsecurity=False)
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return f"md5:{digest.hexdigest()}"


def recorded_fingerprint(sources: Iterable[Mapping[str, Any]]) -> str | None:
    """The first non-empty string under :data:`EVAL_DATA_KEYS` in ``sources``, in order; None if none has one."""
    for source in sources:
        for key in EVAL_DATA_KEYS:
            value = source.get(key)
            if isinstance(value, str) and value:
                return value
    return None


def eval_data_fingerprint(
    val_annotations: str | Path,
    *,
    configured: str = "",
    recorded: Iterable[Mapping[str, Any]] = (),
) -> str | None:
    """The fingerprint of the evaluation data: ``configured`` (``register.eval_data``) when set, else
    the first one ``recorded`` holds (:func:`recorded_fingerprint`), else :func:`file_fingerprint` of
    ``val_annotations``; None when that file does not exist either (callers say what that means)."""
    if configured:
        return configured
    found = recorded_fingerprint(recorded)
    if found is not None:
        return found
    path = Path(val_annotations)
    return file_fingerprint(path) if path.is_file() else None


def with_boxes(eval_data: str | None, boxes: str) -> str | None:
    """The fingerprint of metrics taken on ``eval_data`` with the person boxes ``boxes`` (an identity
    such as ``file:md5:<hex>`` or ``model:NAME/VERSION``): ``eval_data`` itself for the
    ground-truth boxes (``"gt"``, what every version registered before box sources existed used),
    else ``<eval_data>+boxes=<boxes>``, so AP taken with other boxes is never compared with it."""
    if eval_data is None or boxes == "gt":
        return eval_data
    return f"{eval_data}+boxes={boxes}"
