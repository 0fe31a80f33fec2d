"""CSV outputs of an evaluation, written atomically: a per-keypoint table and PCK-vs-threshold curve data.

``write_pck_curve_csv`` writes ``threshold,pck`` rows, directly usable as a DVC plot::

    plots:
      - eval/pck_curve.csv: {x: threshold, y: pck}
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from posecore.io import atomic_write_text


def _cell(value: object) -> object:
    if isinstance(value, float | np.floating):
        return repr(float(value))  # shortest round-tripping form
    return value


def write_per_keypoint_csv(path: str | Path, table: Mapping[str, Mapping[str, float]]) -> Path:
    """Write ``{keypoint name: {column: value}}`` as ``keypoint,<column>,...`` rows, in table order.

    Columns are the union of the rows' keys in first-seen order; a missing cell is empty.
    """
    columns: list[str] = []
    for row in table.values():
        columns += [c for c in row if c not in columns]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["keypoint", *columns])
    for name, row in table.items():
        writer.writerow([name, *(_cell(row[c]) if c in row else "" for c in columns)])
    return atomic_write_text(path, buffer.getvalue())


def write_pck_curve_csv(
    path: str | Path, thresholds: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray
) -> Path:
    """Write ``threshold,pck`` rows (one per threshold)."""
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if thresholds.shape != values.shape:
        raise ValueError(f"thresholds ({thresholds.size}) and values ({values.size}) must have the same length")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["threshold", "pck"])
    for t, v in zip(thresholds, values, strict=True):
        writer.writerow([_cell(t), _cell(v)])
    return atomic_write_text(path, buffer.getvalue())
