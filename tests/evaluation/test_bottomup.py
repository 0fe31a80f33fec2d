"""posecore.evaluation.bottomup: one-stage prediction, matching and scoring; the top-down comparison.

Most tests use a stand-in split (the attributes of ``posecore.data.images.ImageSplit``) over a
hand-made COCO file, and a stand-in model whose answers are given; each stored image is filled
with its own row number + 1, which tells the model which image it is looking at.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from posecore.codecs.base import Poses
from posecore.evaluation.bottomup import (
    MATCH_MIN_OKS,
    ground_truth,
    make_bottomup_validator,
    match_people,
    predict_images,
    score_bottomup,
)
from posecore.evaluation.coco import KeypointPredictions
from posecore.evaluation.topdown import EvalConfig
from posecore.metainfo import load_meta

META = load_meta("coco")
K = META.num_keypoints
INPUT = (64, 64)  # (w, h): the stored val images are the model input
CFG = EvalConfig(batch_size=2)


def _letterbox(width: int, height: int) -> np.ndarray:
    """image px -> input px (2, 3): aspect kept, centred."""
    s = min(INPUT[0] / width, INPUT[1] / height)
    return np.array([[s, 0, (INPUT[0] - s * width) / 2], [0, s, (INPUT[1] - s * height) / 2]])


@dataclass
class FakeSplit:
    """The ImageSplit attributes the evaluation reads, in stored (= input) pixels."""

    image_id: np.ndarray
    image_size: np.ndarray
    warp: np.ndarray
    person_start: np.ndarray
    keypoints: np.ndarray
    visible: np.ndarray
    bbox: np.ndarray
    area: np.ndarray
    ann_id: np.ndarray
    crowd: np.ndarray
    images_read: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.image_id)

    def images(self, indices: Any) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64)
        self.images_read += idx.tolist()
        out = np.zeros((len(idx), INPUT[1], INPUT[0], 3), np.uint8)
        out[:] = (idx + 1).astype(np.uint8)[:, None, None, None]
        return out


def _person(rng: np.random.Generator, box: tuple[float, float, float, float]) -> dict[str, Any]:
    x, y, w, h = box
    kp = np.stack([rng.uniform(x, x + w, K), rng.uniform(y, y + h, K)], -1)
    v = np.where(rng.random(K) < 0.8, 2, 0)
    v[:3] = 2  # a few labelled keypoints at least
    kp[v == 0] = 0.0
    return {"kp": kp, "v": v, "bbox": [x, y, w, h], "area": 0.6 * w * h}


# image sizes (W, H) and each image's people boxes (xywh, image px); the last image has nobody
IMAGES = [
    (200, 100, [(10, 10, 50, 80), (120, 5, 60, 90)]),
    (100, 200, [(20, 30, 60, 150)]),
    (120, 120, []),
]


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[FakeSplit, Path, list[list[dict[str, Any]]]]:
    """A split, its COCO ground-truth file and the people per image (image px)."""
    rng = np.random.default_rng(0)
    people = [[_person(rng, box) for box in boxes] for _, _, boxes in IMAGES]
    images, annotations = [], []
    rows: dict[str, list[Any]] = {k: [] for k in ("keypoints", "visible", "bbox", "area", "ann_id")}
    warps, starts = [], [0]
    for i, ((w, h, _), persons) in enumerate(zip(IMAGES, people, strict=True)):
        image_id = 100 + i
        images.append({"id": image_id, "file_name": f"{image_id}.png", "width": w, "height": h})
        m = _letterbox(w, h)
        warps.append(m)
        s = m[0, 0]
        for p in persons:
            ann_id = len(annotations) + 1
            flat = np.concatenate([p["kp"], p["v"][:, None]], -1).reshape(-1).tolist()
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": 1,
                    "keypoints": flat,
                    "num_keypoints": int((p["v"] > 0).sum()),
                    "bbox": p["bbox"],
                    "area": p["area"],
                    "iscrowd": 0,
                }
            )
            x, y, bw, bh = p["bbox"]
            rows["keypoints"].append(p["kp"] @ m[:, :2].T + m[:, 2])
            rows["visible"].append((p["v"] > 0).astype(np.float32))
            corners = np.array([[x, y], [x + bw, y + bh]]) @ m[:, :2].T + m[:, 2]
            rows["bbox"].append(corners.reshape(4))
            rows["area"].append(p["area"] * s * s)
            rows["ann_id"].append(ann_id)
        starts.append(starts[-1] + len(persons))
    gt_file = tmp_path_factory.mktemp("bottomup") / "val.json"
    gt_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1}]}))
    n = starts[-1]
    split = FakeSplit(
        image_id=np.array([im["id"] for im in images], np.int64),
        image_size=np.array([[w, h] for w, h, _ in IMAGES], np.int64),
        warp=np.stack(warps).astype(np.float32),
        person_start=np.array(starts, np.int64),
        keypoints=np.stack(rows["keypoints"]).astype(np.float32),
        visible=np.stack(rows["visible"]),
        bbox=np.stack(rows["bbox"]).astype(np.float32),
        area=np.array(rows["area"], np.float32),
        ann_id=np.array(rows["ann_id"], np.int64),
        crowd=np.zeros(n, bool),
    )
    return split, gt_file, people


def perfect_poses(split: FakeSplit) -> list[Poses]:
    """Every image's ground truth as a one-stage model answers: input px, score 1."""
    out = []
    for i in range(len(split)):
        rows = slice(int(split.person_start[i]), int(split.person_start[i + 1]))
        n = rows.stop - rows.start
        out.append(
            Poses(
                boxes=torch.from_numpy(split.bbox[rows].copy()),
                scores=torch.ones(n),
                keypoints=torch.from_numpy(split.keypoints[rows].copy()),
                keypoint_scores=torch.ones(n, K),
            )
        )
    return out


class FakeModel:
    """Answers each image (recognised by its fill value) with the given Poses."""

    mean = (0.0, 0.0, 0.0)
    std = (1.0, 1.0, 1.0)
    flip_indices = tuple(META.flip_indices)

    def __init__(self, answers: list[Poses]) -> None:
        self.answers = answers
        self.batches: list[int] = []
        self.flips: list[bool] = []

    def predict(self, inputs: torch.Tensor, flip_test: bool = False) -> list[Poses]:
        self.flips.append(flip_test)
        self.batches.append(len(inputs))
        return [self.answers[int(v) - 1] for v in inputs[:, 0, 0, 0].round()]


class InOrder(FakeModel):
    """Answers the images in the order they are visited (a real split's pixels do not say which is which)."""

    def predict(self, inputs: torch.Tensor, flip_test: bool = False) -> list[Poses]:
        start = sum(self.batches)
        self.batches.append(len(inputs))
        return self.answers[start : start + len(inputs)]


class FakeModule(nn.Module):
    """The torch path: checks it predicts in eval mode."""

    mean = FakeModel.mean
    std = FakeModel.std
    flip_indices = FakeModel.flip_indices

    def __init__(self, answers: list[Poses]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.inner = FakeModel(answers)

    def predict(self, inputs: torch.Tensor, flip_test: bool = False) -> list[Poses]:
        assert not self.training
        return self.inner.predict(inputs, flip_test)


def _empty() -> Poses:
    return Poses(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, K, 2), torch.zeros(0, K))


def test_predictions_come_back_in_image_pixels(scene) -> None:  # noqa: ANN001
    split, _, people = scene
    model = FakeModule(perfect_poses(split))
    model.train()
    preds = predict_images(model, split, batch_size=2)
    assert model.training, "the module goes back to training mode"
    assert model.inner.batches == [2, 1] and sorted(split.images_read[-3:]) == [0, 1, 2]
    assert preds.image_ids.tolist() == [100, 100, 101]
    expected = np.concatenate([[p["kp"] for p in persons] for persons in people if persons])
    labelled = np.concatenate([[p["v"] > 0 for p in persons] for persons in people if persons])
    np.testing.assert_allclose(preds.keypoints[labelled], expected[labelled], atol=1e-3)
    boxes = np.array([p["bbox"] for persons in people for p in persons], np.float64)
    np.testing.assert_allclose(preds.bboxes, np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1), atol=1e-3)
    np.testing.assert_allclose(preds.areas, boxes[:, 2] * boxes[:, 3], rtol=1e-4)
    np.testing.assert_array_equal(preds.bbox_scores, 1.0)


def test_perfect_predictions_score_one(scene) -> None:  # noqa: ANN001
    split, gt_file, _ = scene
    preds = predict_images(FakeModel(perfect_poses(split)), split, batch_size=2)
    result = score_bottomup(preds, split, gt_file, META, CFG)
    assert result.metrics["AP"] == pytest.approx(1.0)
    assert result.metrics["AR"] == pytest.approx(1.0)
    assert result.metrics["PCK"] == pytest.approx(1.0)
    assert result.metrics["AUC"] == pytest.approx(0.95), "MMPose's AUC: threshold 0 never hits, so 19/20 at best"
    assert result.metrics["EPE"] == pytest.approx(0.0, abs=1e-3)
    assert result.errors.shape == (3,) and np.all(result.errors < 1e-3)
    assert result.pck_curve[1][-1] == pytest.approx(1.0)
    assert result.per_keypoint["nose"]["matched"] == 3.0


def test_a_missed_person_costs_recall_and_pck(scene) -> None:  # noqa: ANN001
    split, gt_file, _ = scene
    answers = perfect_poses(split)
    first = answers[0]
    # NumPy arrays, as an ONNX predictor answers
    answers[0] = Poses(
        *(np.asarray(a[:1]) for a in (first.boxes, first.scores, first.keypoints, first.keypoint_scores))
    )
    preds = predict_images(FakeModel(answers), split, batch_size=8)
    result = score_bottomup(preds, split, gt_file, META, CFG)
    assert result.metrics["AR"] == pytest.approx(2 / 3, abs=1e-6)
    assert result.metrics["AP"] < 1.0
    gt = ground_truth(split)
    hits = gt.mask.copy()
    hits[1] = False  # the missed person's keypoints are all wrong
    per_keypoint = hits.sum(0) / np.maximum(gt.mask.sum(0), 1)
    assert result.metrics["PCK"] == pytest.approx(per_keypoint[gt.mask.any(0)].mean())
    assert result.errors[1] == np.inf and result.errors[0] < 1e-3
    assert result.metrics["EPE"] == pytest.approx(0.0, abs=1e-3), "EPE counts the matched people only"


def test_people_are_ranked_by_evaluate_score_mode(scene) -> None:  # noqa: ANN001
    """A confident person with unsure keypoints far from anyone outranks the real people by its person
    score alone (``bbox``); ``bbox_keypoint`` (MMPose's CocoMetric default) ranks it last."""
    split, gt_file, _ = scene
    answers = perfect_poses(split)
    first = answers[0]
    ghost_kpts = first.keypoints[:1] + 60.0
    answers[0] = Poses(
        boxes=torch.cat((first.boxes, first.boxes[:1] + 60.0)),
        scores=torch.cat((torch.full((len(first.scores),), 0.5), torch.tensor([0.9]))),
        keypoints=torch.cat((first.keypoints, ghost_kpts)),
        keypoint_scores=torch.cat((first.keypoint_scores, torch.full((1, K), 0.05))),
    )
    preds = predict_images(FakeModel(answers), split, batch_size=8)
    by_person = score_bottomup(preds, split, gt_file, META, EvalConfig(batch_size=2, score_mode="bbox"))
    by_keypoints = score_bottomup(preds, split, gt_file, META, EvalConfig(batch_size=2, score_mode="bbox_keypoint"))
    assert by_person.metrics["AP"] < 0.99
    assert by_keypoints.metrics["AP"] == pytest.approx(1.0)
    assert by_person.metrics["AR"] == by_keypoints.metrics["AR"] == pytest.approx(1.0)


def test_no_predictions_at_all(scene) -> None:  # noqa: ANN001
    split, gt_file, _ = scene
    preds = predict_images(FakeModel([_empty()] * 3), split)
    assert len(preds) == 0 and preds.keypoints.shape == (0, K, 2)
    result = score_bottomup(preds, split, gt_file, META, CFG)
    assert result.metrics["AP"] == 0.0 and result.metrics["AR"] == 0.0
    assert result.metrics["PCK"] == 0.0 and result.metrics["AUC"] == 0.0
    assert np.isnan(result.metrics["EPE"]), "no matched person: no distance to average"
    assert np.all(result.errors == np.inf)


def test_greedy_oks_matching(scene) -> None:  # noqa: ANN001
    """The closest answer wins whatever its score; an answer far from everyone matches nobody."""
    split, _, people = scene
    gt = ground_truth(split)
    a, b = gt.keypoints[0], gt.keypoints[1]
    far = np.full((K, 2), -1000.0)
    preds = KeypointPredictions(
        image_ids=np.array([100, 100, 100, 101]),
        keypoints=np.stack([b + 1.0, a + 0.5, a + 2.0, far]),
        keypoint_scores=np.ones((4, K)),
        bbox_scores=np.array([0.2, 0.3, 0.9, 0.9]),
    )
    match = match_people(preds, split, META)
    assert match.pred_index.tolist() == [1, 0, -1]
    assert match.unmatched.tolist() == [False, False, True, True]
    assert match.oks[2] == 0.0 and match.oks[0] > match.oks[1] > MATCH_MIN_OKS
    assert np.all(np.isinf(match.keypoints[2]))
    with pytest.raises(ValueError, match="not in the split"):
        match_people(KeypointPredictions(np.array([7]), np.zeros((1, K, 2)), np.ones((1, K))), split, META)


def test_validator_gives_mlflow_names(scene) -> None:  # noqa: ANN001
    split, gt_file, _ = scene
    validate = make_bottomup_validator(split, gt_file, META, CFG)
    metrics = validate(FakeModule(perfect_poses(split)), 0)
    assert metrics["AP"] == pytest.approx(1.0) and "AP_.5" in metrics and "PCK" in metrics
    assert all(" " not in name and "(" not in name for name in metrics)


# --- the real one-stage cache and model ---------------------------------------------------------


@pytest.fixture(scope="module")
def real_split(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """(val ImageSplit, its ground-truth file): tests/_helpers/onestage_data's awkward images (a 1x1
    image, a grey one, crowd regions, nobody), cached for a 64x64 one-stage input."""
    from onestage_data import SPEC, write_dataset  # tests/_helpers

    from posecore.codecs import build_codec
    from posecore.data.build import build_cache
    from posecore.data.cache import open_cache

    root = tmp_path_factory.mktemp("onestage")
    dataset = write_dataset(root / "dataset")
    build_cache(dataset, root / "cache", SPEC, build_codec("yoloxpose", input_size=(64, 64)))
    return open_cache(root / "cache")["val"], dataset / "annotations" / "val.json"


def test_perfect_predictions_on_a_real_split(real_split) -> None:  # noqa: ANN001
    split, gt_file = real_split
    answers = []
    for i in range(len(split)):
        people = split.people(i)
        keep = ~people["crowd"]
        n = int(keep.sum())
        answers.append(
            Poses(
                torch.from_numpy(people["bbox"][keep]),
                torch.ones(n),
                torch.from_numpy(people["keypoints"][keep]),
                torch.ones(n, K),
            )
        )
    preds = predict_images(InOrder(answers), split, batch_size=2)
    result = score_bottomup(preds, split, gt_file, META, CFG)
    assert result.metrics["AP"] == pytest.approx(1.0) and result.metrics["AR"] == pytest.approx(1.0)
    assert result.metrics["PCK"] == pytest.approx(1.0)
    assert result.metrics["EPE"] == pytest.approx(0.0, abs=1e-3)
    doc = json.loads(gt_file.read_text())
    by_id = {a["id"]: np.asarray(a["keypoints"], np.float64).reshape(-1, 3) for a in doc["annotations"]}
    gt = ground_truth(split)
    for row in np.flatnonzero(gt.labelled):
        truth = by_id[int(split.ann_id[row])]
        labelled = truth[:, 2] > 0
        np.testing.assert_allclose(gt.keypoints[row][labelled], truth[labelled, :2], atol=1e-3)


def test_a_real_one_stage_model_end_to_end(real_split, tmp_path: Path) -> None:  # noqa: ANN001
    """A random-weight YOLOX-Pose model (every anchor kept: score_thr 0) through prediction, scoring
    and the report."""
    from posecore.evaluation.outputs import REPORT_FILES, write_bottomup_report
    from posecore.models.estimator import ModelSpec, build_estimator

    split, gt_file = real_split
    codec = {"name": "yoloxpose", "score_thr": 0.0, "max_detections": 5}
    spec = ModelSpec.resolve("yoloxpose-lite0", input_size=(64, 64), codec=codec)
    torch.manual_seed(0)
    model = build_estimator(spec, META, pretrained=False)
    preds = predict_images(model, split, batch_size=4)
    assert len(preds) == 5 * len(split) and np.isfinite(preds.keypoints).all()
    outputs = write_bottomup_report(preds, split, gt_file, META, CFG, tmp_path / "eval")
    assert sorted(p.name for p in outputs.out_dir.iterdir()) == sorted(REPORT_FILES)
    assert 0.0 <= outputs.metrics["AP"] <= 1.0 and outputs.metrics["images"] == len(split)


# --- the report (posecore.evaluation.outputs.write_bottomup_report) -----------------------------

COMPARISON = {
    "whole_image": {"AP": 0.25, "AP_.5": 0.5, "AR": 0.375, "AR_.5": 0.5},
    "gt_boxes": {"AP": 0.75, "AP_.5": 0.875, "AR": 0.8, "AR_.5": 0.9},
}


def test_report_files_and_comparison(scene, tmp_path: Path) -> None:  # noqa: ANN001
    import csv

    from posecore.evaluation.outputs import COMPARISON_FILES, REPORT_FILES, write_bottomup_report

    split, gt_file, _ = scene
    preds = predict_images(FakeModel(perfect_poses(split)), split)
    outputs = write_bottomup_report(preds, split, gt_file, META, CFG, tmp_path / "eval", comparison=COMPARISON)
    names = sorted(p.name for p in outputs.out_dir.iterdir())
    assert names == sorted(REPORT_FILES + COMPARISON_FILES) == sorted(p.name for p in outputs.files())
    metrics = json.loads((outputs.out_dir / "metrics.json").read_text())
    assert metrics["AP"] == pytest.approx(1.0) and metrics["PCK"] == pytest.approx(1.0)
    assert metrics["images"] == 3.0 and metrics["instances"] == 3.0
    assert metrics["topdown_whole_image/AP"] == 0.25 and metrics["topdown_gt_boxes/AR"] == 0.8
    assert metrics["topdown_gt_boxes/AP"] == 0.75 and metrics["topdown_whole_image/AR"] == 0.375
    doc = json.loads((outputs.out_dir / "comparison.json").read_text())
    assert list(doc) == ["one_stage", "topdown_whole_image", "topdown_gt_boxes"]
    assert doc["one_stage"]["AP"] == pytest.approx(1.0) and doc["topdown_gt_boxes"] == {
        "AP": 0.75,
        "AP_.5": 0.875,
        "AR": 0.8,
        "AR_.5": 0.9,
    }
    assert (outputs.out_dir / "comparison.md").read_text().splitlines() == [
        "| protocol | AP | AP .5 | AR |",
        "|---|---:|---:|---:|",
        "| one-stage (no boxes) | 1.000 | 1.000 | 1.000 |",
        "| top-down, whole-image box | 0.250 | 0.500 | 0.375 |",
        "| top-down, ground-truth boxes (ceiling) | 0.750 | 0.875 | 0.800 |",
    ]
    rows = list(csv.DictReader((outputs.out_dir / "per_keypoint.csv").open()))
    assert [r["keypoint"] for r in rows] == list(META.keypoint_names)
    assert all(float(r["OKS"]) == pytest.approx(1.0) for r in rows if float(r["count"]) > 0)
    results = json.loads((outputs.out_dir / "results.json").read_text())
    assert len(results) == 3 and {r["image_id"] for r in results} == {100, 101}


def test_report_without_predictions(scene, tmp_path: Path) -> None:  # noqa: ANN001
    from posecore.evaluation.outputs import REPORT_FILES, write_bottomup_report

    split, gt_file, _ = scene
    preds = predict_images(FakeModel([_empty()] * 3), split)
    outputs = write_bottomup_report(preds, split, gt_file, META, CFG, tmp_path / "eval")
    assert sorted(p.name for p in outputs.out_dir.iterdir()) == sorted(REPORT_FILES)
    assert outputs.metrics["AP"] == 0.0 and outputs.metrics["EPE"] is None
    assert json.loads((outputs.out_dir / "results.json").read_text()) == []


def test_worst_images_come_first(scene, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """The image with a missed person leads, then the one with an extra answer; the empty image last.
    Each panel gets its own stored image, the people found and the labelled ones in stored pixels."""
    import posecore.evaluation.outputs as outputs_module

    split, gt_file, _ = scene
    answers = perfect_poses(split)
    first, second = answers[0], answers[1]
    answers[0] = Poses(first.boxes[:1], first.scores[:1], first.keypoints[:1], first.keypoint_scores[:1])
    extra = second.keypoints + 20.0
    answers[1] = Poses(
        torch.cat([second.boxes, second.boxes + 20.0]),
        torch.tensor([1.0, 0.4]),  # badness 0.4 < the missed person's 1 / 2
        torch.cat([second.keypoints, extra]),
        torch.ones(2, K),
    )
    panels = []

    def capture(image, pred, truth, meta, label):  # noqa: ANN001, ANN202
        panels.append({"image": image, "pred": pred, "truth": truth, "label": label})
        return np.zeros((8, 8, 3), np.uint8)

    monkeypatch.setattr(outputs_module, "_panel", capture)
    preds = predict_images(FakeModel(answers), split)
    outputs_module.write_bottomup_report(preds, split, gt_file, META, CFG, tmp_path / "eval")
    assert [p["label"] for p in panels] == [
        "img 100: 1/2 found, OKS 0.50, +0 unmatched",
        "img 101: 1/1 found, OKS 1.00, +1 unmatched",
        "img 102: 0/0 found, OKS -, +0 unmatched",
    ]
    assert int(panels[1]["image"][0, 0, 0]) == 2, "the panel shows its own image (row 1)"
    np.testing.assert_allclose(panels[1]["pred"].keypoints, np.stack([second.keypoints[0], extra[0]]), atol=1e-3)
    np.testing.assert_allclose(panels[0]["truth"].keypoints, split.keypoints[:2], atol=1e-6)
    np.testing.assert_allclose(panels[0]["truth"].bboxes, split.bbox[:2], atol=1e-6)
