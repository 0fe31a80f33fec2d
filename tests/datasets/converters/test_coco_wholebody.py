"""The ``coco_wholebody`` converter: body, feet, face and hands concatenated into 133 keypoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from posecore.datasets.converters import SourceSpec, convert, default_meta
from posecore.datasets.converters.coco_wholebody import PARTS, wholebody_keypoints
from posecore.metainfo import load_meta
from posecore.validation import DataValidationError

SAMPLE = "test_coco_wholebody.json"


@pytest.fixture
def sample(shared_data: Path) -> Path:
    return shared_data / "mmpose_samples" / "coco"


def _convert(root: Path, file: str, out: Path) -> dict[str, Any]:
    spec = SourceSpec(
        source="coco_wholebody", meta="coco_wholebody", root=str(root), annotations={"all": file}, val_fraction=0.0
    )
    convert(spec, out)
    return json.loads((out / "annotations" / "train.json").read_text())


def test_parts_add_up_to_the_meta() -> None:
    assert default_meta("coco_wholebody") == "coco_wholebody"
    assert sum(n for _, n in PARTS) == load_meta("coco_wholebody").num_keypoints == 133
    assert [key for key, _ in PARTS] == ["keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts"]


def test_order_is_body_foot_face_left_right() -> None:
    ann = {key: [float(part), 0.0, 2] * n for part, (key, n) in enumerate(PARTS)}
    kps = wholebody_keypoints(ann)
    parts = [int(x) for x in kps[0::3]]
    assert parts == [0] * 17 + [1] * 6 + [2] * 68 + [3] * 21 + [4] * 21


def test_fractional_hand_scores_become_labelled() -> None:
    ann = {key: [1.0, 1.0, 0.0] * n for key, n in PARTS}
    ann["righthand_kpts"][2] = 0.04
    ann["lefthand_kpts"][2] = 1
    kps = wholebody_keypoints(ann)
    assert kps[3 * 112 + 2] == 1 and kps[3 * 91 + 2] == 1
    assert sum(1 for v in kps[2::3] if v > 0) == 2


@pytest.mark.real_data
def test_sample_concatenates_in_mmpose_order(sample: Path, tmp_path: Path) -> None:
    doc = _convert(sample, SAMPLE, tmp_path / "out")
    source = {a["id"]: a for a in json.loads((sample / SAMPLE).read_text())["annotations"]}
    assert len(doc["annotations"]) == 14
    for ann in doc["annotations"]:
        src = source[ann["id"]]
        assert len(ann["keypoints"]) == 133 * 3
        start = 0
        for key, n in PARTS:
            got, want = ann["keypoints"][3 * start : 3 * (start + n)], src[key]
            assert got[0::3] == want[0::3] and got[1::3] == want[1::3], key
            assert [v > 0 for v in got[2::3]] == [v > 0 for v in want[2::3]], key
            start += n
        assert set(ann["keypoints"][2::3]) <= {0, 1, 2}
        for dropped in ("face_box", "lefthand_box", "righthand_box", "foot_valid", "face_valid", "segmentation"):
            assert dropped not in ann


@pytest.mark.real_data
def test_missing_part_is_a_problem(sample: Path, tmp_path: Path) -> None:
    doc = json.loads((sample / SAMPLE).read_text())
    del doc["annotations"][2]["foot_kpts"]
    doc["annotations"][3]["face_kpts"] = doc["annotations"][3]["face_kpts"][:-3]
    (tmp_path / "wb.json").write_text(json.dumps(doc))
    with pytest.raises(DataValidationError) as exc:
        _convert(sample, str(tmp_path / "wb.json"), tmp_path / "out")
    problems = [(p.record, p.field, p.message) for p in exc.value.problems]
    assert problems == [
        (
            "annotation id=230195 [annotations[2]]",
            "foot_kpts",
            "must be a list of 18 values (6 keypoints x, y, v); it is missing",
        ),
        (
            "annotation id=1202706 [annotations[3]]",
            "face_kpts",
            "must be a list of 204 values (68 keypoints x, y, v); got 201 values",
        ),
    ]
