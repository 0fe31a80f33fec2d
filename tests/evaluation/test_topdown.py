"""posecore.evaluation.topdown: the face family's NME in the top-down scores, on MMPose's WFLW sample."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tiny_model as tiny  # tests/_helpers (put on sys.path by tests/conftest.py)

from posecore.data.build import build_cache
from posecore.data.cache import open_cache
from posecore.data.config import EncodeParams
from posecore.datasets.converters import SourceSpec, convert
from posecore.evaluation.topdown import EvalConfig, SplitPredictions, image_keypoints, score_predictions
from posecore.metainfo import load_meta
from posecore.validation import DataValidationError

WFLW_EYES = (60, 72)  # MMPose's NME normaliser for WFLW: the outer eye corners


def _wflw(shared_data: Path, root: Path, edit=None):  # noqa: ANN001, ANN202
    """The WFLW sample converted (every face in val) and cached; ``edit`` may change the source JSON first."""
    doc = json.loads((shared_data / "mmpose_samples" / "wflw" / "test_wflw.json").read_text())
    if edit is not None:
        edit(doc)
    src = root / "src"
    src.mkdir(parents=True)
    (src / "faces.json").write_text(json.dumps(doc))
    for image in doc["images"]:
        shutil.copy(shared_data / "mmpose_samples" / "wflw" / image["file_name"], src / image["file_name"])
    spec = SourceSpec(
        source="coco",
        meta="wflw",
        root=str(src),
        annotations={"train": "faces.json", "val": "faces.json"},
        images={"train": ".", "val": "."},
    )
    convert(spec, root / "data")
    build_cache(
        root / "data", root / "cache", EncodeParams(out=str(root / "cache"), workers=1), tiny.spec().build_codec()
    )
    return root / "data", open_cache(root / "cache")["val"]


@pytest.mark.real_data
def test_nme_is_zero_for_the_truth_and_the_error_over_the_eye_distance(shared_data: Path, tmp_path: Path) -> None:
    data, split = _wflw(shared_data, tmp_path)
    meta = load_meta("wflw")
    gt = image_keypoints(split).astype(np.float64)
    gt_file = data / "annotations" / "val.json"
    cfg = EvalConfig(metric="NME")
    assert not cfg.higher_is_better
    ones = np.ones(split.visible.shape, np.float32)
    perfect = score_predictions(SplitPredictions(gt.astype(np.float32), ones), split, gt_file, meta, cfg)
    assert perfect.metrics["NME"] == pytest.approx(0.0, abs=1e-6)
    moved = gt + np.array([3.0, 4.0])  # every landmark 5 px off
    shifted = score_predictions(SplitPredictions(moved.astype(np.float32), ones), split, gt_file, meta, cfg)
    eyes = np.linalg.norm(gt[:, WFLW_EYES[0]] - gt[:, WFLW_EYES[1]], axis=-1)
    mask = split.visible > 0
    expected = float(np.sum(5.0 / eyes[:, None] * mask) / mask.sum())
    assert shifted.metrics["NME"] == pytest.approx(expected, rel=1e-4)
    assert shifted.per_keypoint["kpt-0"]["NME"] > 0


@pytest.mark.real_data
def test_a_face_without_the_eye_corners_nme_needs_is_refused(shared_data: Path, tmp_path: Path) -> None:
    def hide_an_eye(doc: dict) -> None:  # noqa: ANN001
        ann = doc["annotations"][1]
        ann["keypoints"][3 * WFLW_EYES[1] : 3 * WFLW_EYES[1] + 3] = [0, 0, 0]

    data, split = _wflw(shared_data, tmp_path, hide_an_eye)
    gt = image_keypoints(split).astype(np.float32)
    preds = SplitPredictions(gt, np.ones(split.visible.shape, np.float32))
    with pytest.raises(DataValidationError, match=r"annotation id=\d+.*'keypoints'.*kpt-60 and kpt-72"):
        score_predictions(preds, split, data / "annotations" / "val.json", load_meta("wflw"), EvalConfig(metric="NME"))


def test_nme_for_a_skeleton_without_a_normaliser_says_which_metrics_apply(tmp_path: Path) -> None:
    run = tiny.build(tmp_path / "tiny")
    split = open_cache(Path(run.params.encode.out))["val"]
    gt = image_keypoints(split).astype(np.float32)
    cfg = replace(run.params.evaluate, metric="NME")
    with pytest.raises(ValueError, match="meta 'coco' has no normalising keypoint pair"):
        score_predictions(
            SplitPredictions(gt, np.ones(split.visible.shape, np.float32)),
            split, Path(run.params.data.out) / "annotations" / "val.json", load_meta("coco"), cfg,
        )  # fmt: skip


@pytest.mark.real_data
@pytest.mark.parametrize("source", ["posetrack18", "coco"])
def test_posetrack_ap_in_the_report_when_head_boxes_are_kept(shared_data: Path, tmp_path: Path, source: str) -> None:
    root = shared_data / "mmpose_samples" / "posetrack18"
    ann = "annotations/test_posetrack18_val.json"
    spec = SourceSpec(
        source=source, meta="posetrack18", root=str(root), annotations={"train": ann, "val": ann}, images={}
    )
    convert(spec, tmp_path / "data")
    codec = tiny.spec().build_codec()
    build_cache(tmp_path / "data", tmp_path / "cache", EncodeParams(out=str(tmp_path / "cache"), workers=1), codec)
    split = open_cache(tmp_path / "cache")["val"]
    gt = image_keypoints(split).astype(np.float32)
    scores = (split.visible > 0).astype(np.float32)
    meta = load_meta("posetrack18")
    result = score_predictions(
        SplitPredictions(gt, scores), split, tmp_path / "data/annotations/val.json", meta, EvalConfig()
    )
    if source == "coco":  # the generic converter drops bbox_head: no PoseTrack AP, the rest as usual
        assert not any(k.startswith("posetrack/") for k in result.metrics)
        assert result.metrics["AP"] == pytest.approx(1.0)
        return
    for part in ("Head", "Shou", "Elb", "Wri", "Hip", "Knee", "Ankl", "AP"):
        assert result.metrics[f"posetrack/{part}"] == pytest.approx(1.0, abs=1e-6), part
    assert result.per_keypoint["head_top"]["AP_PCKh"] == pytest.approx(1.0)
    assert "AP_PCKh" not in result.per_keypoint["left_ear"]
