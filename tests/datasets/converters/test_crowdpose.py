"""The ``crowdpose`` converter: CrowdPose's COCO-style files, 14 keypoints, ``crowdIndex`` kept."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from posecore.datasets.converters import SourceSpec, convert, default_meta

SAMPLE = "test_crowdpose.json"


@pytest.fixture
def sample(shared_data: Path) -> Path:
    return shared_data / "mmpose_samples" / "crowdpose"


def _converted(root: Path, out: Path) -> dict[str, list[dict[str, Any]]]:
    """Both output splits of the sample, merged."""
    convert(SourceSpec(source="crowdpose", meta="crowdpose", root=str(root), annotations={"all": SAMPLE}), out)
    docs = [json.loads((out / "annotations" / f"{s}.json").read_text()) for s in ("train", "val")]
    return {key: [r for d in docs for r in d[key]] for key in ("images", "annotations")}


def test_default_meta_is_crowdpose() -> None:
    assert default_meta("crowdpose") == "crowdpose"


@pytest.mark.real_data
def test_crowd_index_is_kept(sample: Path, tmp_path: Path) -> None:
    out = _converted(sample, tmp_path / "out")
    source = json.loads((sample / SAMPLE).read_text())
    expected = {i["id"]: i["crowdIndex"] for i in source["images"]}
    assert {i["id"]: i["crowdIndex"] for i in out["images"]} == expected


@pytest.mark.real_data
def test_num_keypoints_is_recomputed(sample: Path, tmp_path: Path) -> None:
    """The sample's ``num_keypoints`` disagrees with its own flags on 4 of 5 people."""
    out = _converted(sample, tmp_path / "out")
    source = {a["id"]: a for a in json.loads((sample / SAMPLE).read_text())["annotations"]}
    stale = 0
    for ann in out["annotations"]:
        labelled = sum(1 for v in ann["keypoints"][2::3] if v > 0)
        assert ann["num_keypoints"] == labelled
        assert len(ann["keypoints"]) == 14 * 3
        stale += source[ann["id"]]["num_keypoints"] != labelled
    assert stale == 4


@pytest.mark.real_data
def test_default_layout(sample: Path, tmp_path: Path) -> None:
    root = tmp_path / "crowdpose"
    (root / "annotations").mkdir(parents=True)
    shutil.copytree(sample, root / "images", ignore=shutil.ignore_patterns("*.json"))
    for name in ("mmpose_crowdpose_trainval.json", "mmpose_crowdpose_test.json"):
        shutil.copyfile(sample / SAMPLE, root / "annotations" / name)
    report = convert(SourceSpec(source="crowdpose", meta="crowdpose", root=str(root)), tmp_path / "out")
    assert report.counts == {"train": {"images": 2, "annotations": 5}, "val": {"images": 2, "annotations": 5}}
