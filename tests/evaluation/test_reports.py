"""CSV writers: per-keypoint tables and PCK-vs-threshold curves parse back."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from posecore.evaluation.keypoint_metrics import PCKEvaluator
from posecore.evaluation.reports import write_pck_curve_csv, write_per_keypoint_csv
from posecore.metainfo import load_meta


def test_per_keypoint_csv_round_trip(tmp_path: Path) -> None:
    meta = load_meta("coco")
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 100, size=(4, 17, 2))
    pred = gt + rng.normal(0, 3, size=gt.shape)
    bboxes = np.tile([0.0, 0.0, 100.0, 100.0], (4, 1))
    report = PCKEvaluator(meta, thr=[0.05, 0.1]).evaluate(pred, gt, np.ones((4, 17)), bboxes=bboxes)
    path = write_per_keypoint_csv(tmp_path / "out" / "per_keypoint.csv", report.per_keypoint)
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["keypoint", "PCK@0.05", "PCK@0.1", "count"]
    assert [r["keypoint"] for r in rows] == meta.keypoint_names
    for row in rows:
        expected = report.per_keypoint[row["keypoint"]]
        assert float(row["PCK@0.1"]) == expected["PCK@0.1"]
        assert float(row["count"]) == 4.0
    assert sorted(p.name for p in path.parent.iterdir()) == ["per_keypoint.csv"]


def test_per_keypoint_csv_missing_cells(tmp_path: Path) -> None:
    path = write_per_keypoint_csv(tmp_path / "t.csv", {"a": {"x": 1.0}, "b": {"y": 0.5}})
    assert path.read_text().splitlines() == ["keypoint,x,y", "a,1.0,", "b,,0.5"]


def test_pck_curve_csv(tmp_path: Path) -> None:
    thresholds = np.round(np.arange(0, 0.51, 0.05), 2)
    values = np.linspace(0, 1, len(thresholds))
    path = write_pck_curve_csv(tmp_path / "pck_curve.csv", thresholds, values)
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["threshold", "pck"]
    np.testing.assert_array_equal([float(r["threshold"]) for r in rows], thresholds)
    np.testing.assert_array_equal([float(r["pck"]) for r in rows], values)
    with pytest.raises(ValueError, match="same length"):
        write_pck_curve_csv(tmp_path / "bad.csv", [0.1, 0.2], [1.0])
