"""posecore.inference.compare: a top-down bundle run on a dataset's val images, whole-image box and ground-truth boxes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import posecore.inference.compare as compare_module
from posecore.datasets.coco import CocoPoseDataset
from posecore.evaluation.topdown import EvalConfig
from posecore.inference.compare import PROTOCOLS, compare_topdown, file_boxes, gt_boxes, score_with_boxes
from posecore.inference.pipeline import PosePrediction, instance_scores
from posecore.metainfo import load_meta
from posecore.validation import DataValidationError

TinyBundle = Any  # conftest.TinyBundle
CFG = EvalConfig(batch_size=2)
N_VAL = 3


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A canonical synthetic dataset folder with a 3-image val split."""
    from posecore.datasets.converters import SourceSpec, convert
    from posecore.datasets.synthetic import SynthParams, generate

    root = tmp_path_factory.mktemp("compare")
    synth, data = root / "synthetic", root / "data"
    generate(SynthParams(out=str(synth), n_train=2, n_val=N_VAL, width=96, height=96, workers=1), synth)
    convert(SourceSpec(source="synthetic", meta="coco", root=str(synth)), data)
    return data


def _annotations(data: Path) -> list[dict[str, Any]]:
    return json.loads((data / "annotations" / "val.json").read_text())["annotations"]


def test_runs_the_bundle_both_ways(coco_bundle: TinyBundle, dataset: Path) -> None:
    out = compare_topdown(coco_bundle.path, dataset, load_meta(dataset / "meta.yaml"), CFG)
    assert tuple(out) == PROTOCOLS == ("whole_image", "gt_boxes")
    for metrics in out.values():
        assert {"AP", "AP_.5", "AR", "AR_M"} <= set(metrics)
        assert all(-1.0 <= v <= 1.0 for v in metrics.values())


def test_scores_what_the_runtime_answers(coco_bundle: TinyBundle, dataset: Path, monkeypatch) -> None:  # noqa: ANN001
    """An oracle in place of the network: the ground truth for a ground-truth box, nothing useful for
    the whole image; so the ceiling is 1 and the whole-image run far below it."""
    meta = load_meta(dataset / "meta.yaml")
    by_box = [
        (np.asarray(a["bbox"], np.float64), np.asarray(a["keypoints"], np.float64).reshape(-1, 3))
        for a in _annotations(dataset)
    ]
    seen = []

    def oracle(model, image, dets, batch_size=32):  # noqa: ANN001, ANN202
        seen.append(len(dets))
        kps, scores = [], []
        for x1, y1, x2, y2 in dets.boxes:
            found = [kp for box, kp in by_box if np.allclose(box, (x1, y1, x2 - x1, y2 - y1), atol=1.5)]
            kp = found[0] if found else np.zeros((meta.num_keypoints, 3))
            kps.append(kp[:, :2])
            scores.append(np.where(kp[:, 2] > 0, 1.0, 0.5))
        kp_a, sc_a = np.asarray(kps, np.float64), np.asarray(scores, np.float64)
        return PosePrediction(dets.boxes, dets.scores, kp_a, sc_a, instance_scores(dets.scores, sc_a))

    monkeypatch.setattr(compare_module, "predict_poses", oracle)
    out = compare_topdown(coco_bundle.path, dataset, meta, CFG)
    people = sum(1 for a in _annotations(dataset) if not a.get("iscrowd") and a["num_keypoints"] > 0)
    assert sum(seen) == N_VAL + people, "one whole-image box per image, then one box per labelled person"
    assert out["gt_boxes"]["AP"] == pytest.approx(1.0)
    assert out["whole_image"]["AP"] < 0.5


def test_refuses_other_bundles(coco_bundle: TinyBundle, dataset: Path, tmp_path: Path) -> None:
    meta = load_meta(dataset / "meta.yaml")
    onestage = tmp_path / "onestage"
    shutil.copytree(coco_bundle.path, onestage)
    doc = json.loads((onestage / "bundle.json").read_text())
    (onestage / "bundle.json").write_text(json.dumps({**doc, "task": "onestage"}))
    with pytest.raises(ValueError, match="'onestage' model; the comparison runs a top-down bundle"):
        compare_topdown(onestage, dataset, meta, CFG)
    with pytest.raises(ValueError, match="predicts 17 keypoints of meta 'coco', but the evaluated data has 14"):
        compare_topdown(coco_bundle.path, dataset, load_meta("crowdpose"), CFG)


# --- detected boxes: COCO's protocol with MMPose's bbox_file -------------------------------------------------

MMPOSE_DET_FILE = "test_coco_det_AP_H_56.json"

MMPOSE_EXPECTED = {
    # MMPose 1.3.2's CocoDataset (bbox_file) + CocoMetric on the same oracle poses, printed by
    # `$PEER/venv/bin/python benchmarks/_mmpose_det_expectation.py ../shared/data/mmpose_samples/coco`
    # (the peer venv of ../shared/peer/README.md); the case is MMPose's tests/data/coco.
    "oks_nms": {"AP": 1.0, "AP_.5": 1.0, "AP_.75": 1.0, "AR": 1.0},
    "none": {"AP": 0.9870525514089871, "AP_.5": 0.987052551408987, "AP_.75": 0.987052551408987, "AR": 1.0},
}


@pytest.fixture(scope="module")
def mmpose_coco(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MMPose's tests/data/coco sample as a canonical dataset folder whose val split is test_coco.json."""
    src = shared_data / "mmpose_samples" / "coco"
    root = tmp_path_factory.mktemp("mmpose_coco")
    (root / "annotations").mkdir()
    shutil.copy(src / "test_coco.json", root / "annotations" / "val.json")
    (root / "images").mkdir()
    for image in json.loads((src / "test_coco.json").read_text())["images"]:
        shutil.copy(src / image["file_name"], root / "images" / image["file_name"])
    shutil.copy(Path(compare_module.__file__).parents[1] / "metainfo" / "coco.yaml", root / "meta.yaml")
    return root


def _iou_oracle(dataset: Path) -> compare_module.PoseFn:
    """A perfect pose model, as benchmarks/_mmpose_det_expectation.py defines it for MMPose: each box
    gets the keypoints of the labelled person it overlaps most (IoU), scored 1; else its centre."""
    people: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    for ann in _annotations(dataset):
        if ann["num_keypoints"] > 0:
            x, y, w, h = ann["bbox"]
            kps = np.asarray(ann["keypoints"], np.float64).reshape(-1, 3)[:, :2]
            people.setdefault(ann["image_id"], []).append((np.array([x, y, x + w, y + h]), kps))

    def poses(sample, image, dets):  # noqa: ANN001, ANN202
        kps = []
        for box in dets.boxes:
            best, best_iou = None, 0.0
            for pbox, kp in people.get(sample.image_id, []):
                iw = min(box[2], pbox[2]) - max(box[0], pbox[0])
                ih = min(box[3], pbox[3]) - max(box[1], pbox[1])
                inter = max(iw, 0.0) * max(ih, 0.0)
                union = np.prod(box[2:] - box[:2]) + np.prod(pbox[2:] - pbox[:2]) - inter
                if union > 0 and inter / union > best_iou:
                    best, best_iou = kp, inter / union
            kps.append(best if best is not None else np.tile((box[:2] + box[2:]) / 2, (17, 1)))
        kp_a = np.asarray(kps, np.float64).reshape(len(dets), 17, 2)
        sc = np.ones((len(dets), 17))
        return PosePrediction(dets.boxes, dets.scores, kp_a, sc, instance_scores(dets.scores, sc))

    return poses


@pytest.mark.parametrize("nms_mode", sorted(MMPOSE_EXPECTED))
def test_detection_file_reproduces_mmpose(mmpose_coco: Path, shared_data: Path, nms_mode: str) -> None:
    """evaluate.boxes=file on MMPose's own sample: the same 118 boxes and the same COCO numbers as
    MMPose's CocoDataset(bbox_file) + CocoMetric give for ground-truth keypoints posed on them."""
    meta = load_meta(mmpose_coco / "meta.yaml")
    cfg = EvalConfig(nms_mode=nms_mode)  # type: ignore[arg-type]
    dataset = CocoPoseDataset(mmpose_coco, "val", meta=meta, mode="topdown", test_mode=True)
    source = file_boxes(mmpose_coco, meta, shared_data / "mmpose_samples" / "coco" / MMPOSE_DET_FILE)
    out = score_with_boxes(dataset, _iou_oracle(mmpose_coco), {"detected": source, "gt": gt_boxes}, cfg)
    assert out["detected"].boxes == 118, "MMPose's test_coco_dataset: len(dataset) == 118 with this bbox_file"
    for name, value in MMPOSE_EXPECTED[nms_mode].items():
        assert out["detected"].metrics[name] == pytest.approx(value, abs=1e-9), name
    assert out["gt"].metrics["AP"] == pytest.approx(1.0)
    scores = out["detected"].predictions.bbox_scores
    assert scores is not None and scores.max() <= 1.0 and len(set(np.round(scores, 6))) > 50, "the file's own scores"


def test_detection_file_scores_below_the_threshold_are_dropped(mmpose_coco: Path, shared_data: Path) -> None:
    meta = load_meta(mmpose_coco / "meta.yaml")
    det_file = shared_data / "mmpose_samples" / "coco" / MMPOSE_DET_FILE
    records = json.loads(det_file.read_text())
    source = file_boxes(mmpose_coco, meta, det_file, score_thr=0.5)
    dataset = CocoPoseDataset(mmpose_coco, "val", meta=meta, mode="topdown", test_mode=True)
    kept = sum(len(source(s, np.zeros((1, 1, 3), np.uint8))) for s in dataset.images)
    assert kept == sum(r["score"] >= 0.5 for r in records) < len(records)


def test_a_detection_file_for_other_images_is_refused(mmpose_coco: Path, tmp_path: Path) -> None:
    meta = load_meta(mmpose_coco / "meta.yaml")
    bad = tmp_path / "dets.json"
    bad.write_text(json.dumps([{"image_id": 785, "category_id": 1, "bbox": [1, 2, 30, 40], "score": 0.9},
                               {"image_id": 999, "category_id": 1, "bbox": [1, 2, 30, 40], "score": 0.9}]))  # fmt: skip
    with pytest.raises(DataValidationError) as err:
        file_boxes(mmpose_coco, meta, bad)
    text = str(err.value)
    assert str(bad) in text and "[1]" in text and "image_id" in text and "999" in text and "val" in text


def test_no_box_in_an_image_means_its_people_are_missed(mmpose_coco: Path, tmp_path: Path) -> None:
    """Boxes for one image only: the others are posed with none, so recall drops, nothing fails."""
    meta = load_meta(mmpose_coco / "meta.yaml")
    dets = tmp_path / "dets.json"
    anns = [a for a in _annotations(mmpose_coco) if a["image_id"] == 785]
    dets.write_text(json.dumps([{"image_id": 785, "category_id": 1, "bbox": a["bbox"], "score": 1.0} for a in anns]))
    dataset = CocoPoseDataset(mmpose_coco, "val", meta=meta, mode="topdown", test_mode=True)
    out = score_with_boxes(dataset, _iou_oracle(mmpose_coco), {"d": file_boxes(mmpose_coco, meta, dets)}, EvalConfig())
    labelled = sum(1 for a in _annotations(mmpose_coco) if a["num_keypoints"] > 0)
    assert out["d"].boxes == 1
    assert out["d"].metrics["AR"] == pytest.approx(1 / labelled)
