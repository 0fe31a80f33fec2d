"""The ``aic`` converter: MMPose's COCO-style AI Challenger files (14 keypoints, COCO visibility flags)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posecore.datasets.converters import SourceSpec, convert, default_meta
from posecore.validation import DataValidationError

SAMPLE = "test_aic.json"


@pytest.fixture
def sample(shared_data: Path) -> Path:
    return shared_data / "mmpose_samples" / "aic"


def test_default_meta_is_aic() -> None:
    assert default_meta("aic") == "aic"


@pytest.mark.real_data
def test_sample_uses_coco_visibility(sample: Path) -> None:
    """MMPose's AIC files use COCO flags: unlabelled points are (0, 0, 0), never AIC's flag 3."""
    for ann in json.loads((sample / SAMPLE).read_text())["annotations"]:
        kps = ann["keypoints"]
        assert set(kps[2::3]) <= {0, 1, 2}
        for i in range(0, len(kps), 3):
            assert (kps[i + 2] == 0) == (kps[i] == 0 and kps[i + 1] == 0)


@pytest.mark.real_data
def test_flags_are_kept_and_area_is_the_box_area(sample: Path, tmp_path: Path) -> None:
    spec = SourceSpec(source="aic", meta="aic", root=str(sample), annotations={"all": SAMPLE}, val_fraction=0.0)
    convert(spec, tmp_path / "out")
    doc = json.loads((tmp_path / "out" / "annotations" / "train.json").read_text())
    source = {a["id"]: a for a in json.loads((sample / SAMPLE).read_text())["annotations"]}
    assert len(doc["annotations"]) == len(source) == 9
    for ann in doc["annotations"]:
        assert ann["keypoints"] == source[ann["id"]]["keypoints"]
        assert ann["num_keypoints"] == source[ann["id"]]["num_keypoints"]
        assert ann["area"] == ann["bbox"][2] * ann["bbox"][3]
        assert ann["iscrowd"] == 0
    assert all("url" not in img for img in doc["images"])


@pytest.mark.real_data
def test_original_aic_flag_3_is_rejected(sample: Path, tmp_path: Path) -> None:
    doc = json.loads((sample / SAMPLE).read_text())
    doc["annotations"][0]["keypoints"][2] = 3  # original AI Challenger: 3 = not labelled
    (tmp_path / "aic.json").write_text(json.dumps(doc))
    spec = SourceSpec(source="aic", meta="aic", root=str(sample), annotations={"all": str(tmp_path / "aic.json")})
    with pytest.raises(DataValidationError, match="visibility flags must be 0, 1 or 2, got 3"):
        convert(spec, tmp_path / "out")
