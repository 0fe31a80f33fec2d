"""PoseTrack18's per-joint AP (poseval's ``evaluateAP`` as MMPose's ``PoseTrack18Metric`` runs it), on
hand-made frames whose APs are worked out by hand below, and on MMPose's own test case: its sample
``test_posetrack18_val.json`` scored against itself gives 100 for every part (MMPose
``tests/test_evaluation/test_metrics/test_posetrack18_metric.py``, ``self.target``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from posecore.datasets.converters import SourceSpec, convert
from posecore.evaluation.coco import CocoKeypointEvaluator, KeypointPredictions
from posecore.evaluation.posetrack import POSETRACK_PARTS, posetrack_ap, posetrack_frames, voc_ap
from posecore.evaluation.topdown import posetrack_metrics
from posecore.metainfo import load_meta
from posecore.validation import DataValidationError

META = load_meta("posetrack18")
JOINTS = [n for part in POSETRACK_PARTS.values() for n in part]
HEAD_BOX = [0.0, 0.0, 6.0, 8.0]  # hypot 10 -> head size 6, so a joint is correct within 3 px


def _person(ann_id: int, image_id: int, y: float, labelled: bool = True) -> dict[str, Any]:
    kps: list[float] = []
    for name in META.keypoint_names:
        scored = labelled and name in JOINTS
        kps += [20.0 * META.keypoint_names.index(name) + 5.0, y, 1] if scored else [0.0, 0.0, 0]
    return {"id": ann_id, "image_id": image_id, "keypoints": kps, "bbox_head": HEAD_BOX, "iscrowd": 0}


def _pred(image_id: int, person: dict[str, Any], score: float, shift: dict[str, float] | None = None) -> dict[str, Any]:
    kps = list(person["keypoints"])
    for k, name in enumerate(META.keypoint_names):
        kps[3 * k] += (shift or {}).get(name, 0.0)
        kps[3 * k + 2] = score if kps[3 * k + 2] else 0.0
    return {"image_id": image_id, "keypoints": kps, "score": score}


def test_voc_ap_by_hand() -> None:
    # recall 1/3, 1/3, 2/3 at precision 1, 1/2, 2/3; made monotone: AP = 1/3 * 1 + 1/3 * 2/3
    assert voc_ap(np.array([0.9, 0.8, 0.7]), np.array([1, 0, 1]), 3) == pytest.approx(5 / 9)
    assert voc_ap(np.zeros(0), np.zeros(0), 2) == 0.0
    assert np.isnan(voc_ap(np.array([0.5]), np.array([0]), 0))


def test_matching_and_ap_by_hand() -> None:
    a, b = _person(1, 10, y=0.0), _person(2, 10, y=100.0)
    off = dict.fromkeys(JOINTS[:5], 4.0)  # head_top, head_bottom, nose, both shoulders 4 px off (> 3)
    results = [
        _pred(10, a, 0.9),  # A exactly: every joint right
        _pred(10, a, 0.8, dict.fromkeys(JOINTS, 2.0)),  # also right for A, but A took the first: all wrong
        _pred(10, b, 0.6, off),  # B, 10 of 15 right
    ]
    doc = {"images": [{"id": 10, "is_labeled": True}], "annotations": [a, b]}
    ap = posetrack_ap(posetrack_frames(doc, results, META), JOINTS)
    # the first five joints: right, wrong, wrong of 2 -> AP 1/2; the rest: right, wrong, right -> 1/2 + 1/2 * 2/3
    for name in JOINTS[:5]:
        assert ap[name] == pytest.approx(0.5), name
    for name in JOINTS[5:]:
        assert ap[name] == pytest.approx(5 / 6), name
    assert ap["Head"] == pytest.approx(0.5)
    assert ap["Shou"] == pytest.approx(0.5)
    assert ap["Ankl"] == pytest.approx(5 / 6)
    assert ap["AP"] == pytest.approx((5 * 0.5 + 10 * 5 / 6) / 15)


def test_unlabelled_frames_and_ignore_regions_are_not_scored() -> None:
    a = _person(1, 10, y=0.0)
    stray = _pred(11, a, 0.99)  # on a frame nobody labelled: not scored at all
    unlabeled = _pred(12, a, 0.99)  # on a frame marked is_labeled false
    # a higher-scored false pose inside the ignore polygon of frame 10 is removed before matching
    ignored = _pred(10, a, 0.95, dict.fromkeys(JOINTS, 50.0))
    for k in range(0, len(ignored["keypoints"]), 3):
        ignored["keypoints"][k + 1] = 500.0
    images = [
        {
            "id": 10,
            "is_labeled": True,
            "ignore_regions_x": [[0, 400, 400, 0]],
            "ignore_regions_y": [[450, 450, 550, 550]],
        },
        {"id": 11, "is_labeled": True},
        {"id": 12, "is_labeled": False},
    ]
    doc = {"images": images, "annotations": [a, _person(3, 11, 0.0, labelled=False), _person(4, 12, 0.0)]}
    frames = posetrack_frames(doc, [_pred(10, a, 0.5), stray, unlabeled, ignored], META)
    assert len(frames) == 1
    ap = posetrack_ap(frames, JOINTS)
    assert ap["AP"] == pytest.approx(1.0)
    # without the ignore region the stray pose ranks first as a false positive on every joint
    del images[0]["ignore_regions_x"], images[0]["ignore_regions_y"]
    ap = posetrack_ap(posetrack_frames(doc, [_pred(10, a, 0.5), ignored], META), JOINTS)
    assert ap["AP"] == pytest.approx(1.0 * 1.0 * 0.5)  # recall 1 reached at precision 1/2


def test_a_person_without_head_box_is_refused(tmp_path: Path) -> None:
    a = _person(7, 10, y=0.0)
    del a["bbox_head"]
    with pytest.raises(DataValidationError, match=r"annotation id=7.*bbox_head"):
        posetrack_metrics({"images": [{"id": 10}], "annotations": [a]}, [], META, tmp_path / "val.json")


@pytest.fixture
def converted(shared_data: Path, tmp_path: Path) -> Path:
    root = shared_data / "mmpose_samples" / "posetrack18"
    spec = SourceSpec(
        source="posetrack18",
        meta="posetrack18",
        root=str(root),
        annotations={"val": "annotations/test_posetrack18_val.json"},
        images={"val": "."},
    )
    convert(spec, tmp_path / "data")
    return tmp_path / "data" / "annotations" / "val.json"


@pytest.mark.real_data
@pytest.mark.parametrize(("score_mode", "nms_mode"), [("bbox", "none"), ("bbox_keypoint", "oks_nms")])
def test_mmpose_sample_scored_against_itself_is_100(converted: Path, score_mode: str, nms_mode: str) -> None:
    doc = json.loads(converted.read_text())
    assert all(len(a["bbox_head"]) == 4 and "track_id" in a for a in doc["annotations"])
    assert all("ignore_regions_x" in i and "vid_id" in i for i in doc["images"])
    anns = doc["annotations"]
    kp = np.asarray([a["keypoints"] for a in anns], np.float64).reshape(len(anns), 17, 3)
    preds = KeypointPredictions(
        image_ids=np.asarray([a["image_id"] for a in anns]),
        keypoints=kp[..., :2],
        keypoint_scores=kp[..., 2],
        bbox_scores=np.ones(len(anns)),
        areas=np.asarray([a["area"] for a in anns], np.float64),
    )
    evaluator = CocoKeypointEvaluator(converted, META, score_mode=score_mode, nms_mode=nms_mode)  # type: ignore[arg-type]
    evaluator.evaluate(preds)
    assert evaluator.last is not None
    ap = posetrack_metrics(doc, evaluator.last.results, META, converted)
    for key in (*POSETRACK_PARTS, "AP"):
        assert ap[key] == pytest.approx(1.0), key
    # every pose moved off the image: every joint is wrong
    preds.keypoints[..., 0] += 5000.0
    evaluator.evaluate(preds)
    assert posetrack_metrics(doc, evaluator.last.results, META, converted)["AP"] == 0.0


@pytest.mark.real_data
def test_converter_refuses_a_person_without_head_box(shared_data: Path, tmp_path: Path) -> None:
    src = json.loads((shared_data / "mmpose_samples/posetrack18/annotations/test_posetrack18_val.json").read_text())
    src["annotations"][3]["bbox_head"] = [1, 2, 0, 5]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(src))
    spec = SourceSpec(
        source="posetrack18",
        meta="posetrack18",
        root=str(shared_data / "mmpose_samples" / "posetrack18"),
        annotations={"val": str(bad)},
        images={"val": "."},
    )
    with pytest.raises(DataValidationError) as err:
        convert(spec, tmp_path / "out")
    text = str(err.value)
    assert f"annotation id={src['annotations'][3]['id']}" in text and "bbox_head" in text and str(bad) in text
    assert not (tmp_path / "out").exists()
