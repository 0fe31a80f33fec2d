"""The one reader of COCO detection results (dataset reader and ``posecore infer --det`` share it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posecore.datasets.detections import read_detection_results
from posecore.validation import DataValidationError


def _file(tmp_path: Path, records: object) -> Path:
    path = tmp_path / "det.json"
    path.write_text(json.dumps(records))
    return path


def test_records_keep_their_order_index_and_boxes(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        [
            {"image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 40], "score": 0.9},
            {"image_id": 2, "category_id": 3, "bbox": [0, 0, 5, 5], "score": 0.1},
        ],
    )
    recs = read_detection_results(path, {1, 2}, unknown_image=str)
    assert [(r.index, r.image_id, r.category_id, r.score) for r in recs] == [(0, 1, 1, 0.9), (1, 2, 3, 0.1)]
    assert recs[0].xyxy == (10.0, 20.0, 40.0, 60.0)


def test_every_bad_record_is_reported_with_file_record_and_field(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        [
            {"image_id": 1, "bbox": [0, 0, 1, 1], "score": 1},
            {"image_id": 9, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1},
            {"image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1], "score": 1},
            {"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": float("nan")},
            "junk",
        ],
    )
    with pytest.raises(DataValidationError) as err:
        read_detection_results(path, {1}, unknown_image=lambda i: f"image {i} is unknown")
    text = str(err.value)
    for expected in (
        "detection[0]: field 'category_id': is missing",
        "detection[1]: field 'image_id': image 9 is unknown",
        "detection[2]: field 'bbox'",
        "detection[3]: field 'score'",
        "detection[4]: field '-'",
    ):
        assert f"{path}: {expected}" in text


def test_unknown_images_are_skipped_when_allowed_and_category_may_be_optional(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        [{"image_id": 9, "bbox": [0, 0, 1, 1], "score": 1}, {"image_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}],
    )
    recs = read_detection_results(path, {1}, unknown_image=None, required=("image_id", "bbox", "score"))
    assert [(r.image_id, r.category_id) for r in recs] == [(1, None)]


@pytest.mark.parametrize(("content", "expected"), [("{", "not valid JSON"), ('{"a": 1}', "must be a JSON list")])
def test_a_file_that_is_not_a_list_of_records(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "det.json"
    path.write_text(content)
    with pytest.raises(DataValidationError, match=expected):
        read_detection_results(path, {1}, unknown_image=str)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_detection_results(tmp_path / "missing.json", {1}, unknown_image=str)
