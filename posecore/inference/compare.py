"""A top-down model scored on a dataset's val images from person boxes of a chosen source.

The cached evaluation (:mod:`posecore.evaluation.topdown`) scores crops cut around the
ground-truth boxes. Two questions need the boxes to come from somewhere else, and the runtime
(:func:`~posecore.inference.pipeline.predict_poses`, exactly what ``posecore infer`` does) to pose
them:

- **COCO's detected-box protocol** (``evaluate.boxes: file | model``): the trained model poses the
  boxes of a COCO detection-results file (MMPose's ``bbox_file``, :func:`file_boxes`) or of a
  person finder (a one-stage bundle, or an ONNX detector: :func:`detector_boxes`);
- **"is one stage as good as a detector plus a top-down model?"** (:func:`compare_topdown`): a
  top-down bundle with one box covering each image (:func:`whole_image_boxes`, what it does with
  no detector at all) and with the ground-truth boxes (:func:`gt_boxes`, a perfect detector: the
  ceiling of the top-down route).

:func:`score_with_boxes` runs any pose function over every val image once per box source and
scores each with the evaluate step's COCO evaluator
(:func:`posecore.evaluation.topdown.coco_evaluator`: ``evaluate.score_mode`` rescoring and
``evaluate.nms_mode``). It lives here, above :mod:`posecore.evaluation`, because it needs the
runtime; it is not on the runtime path, and imports torch (through the evaluator's settings) only
when called.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from posecore.datasets.coco import CocoPoseDataset, PoseImage, load_image
from posecore.evaluation.coco import KeypointPredictions
from posecore.export.bundle import BundleInfo
from posecore.inference.detection import Detections, whole_image
from posecore.inference.model import PoseModel
from posecore.inference.pipeline import PosePrediction, predict_poses
from posecore.inference.runtime import BundleModel
from posecore.metainfo import DatasetMeta
from posecore.progress import Progress

if TYPE_CHECKING:
    from posecore.evaluation.topdown import BoxedScore, EvalConfig

__all__ = [
    "PROTOCOLS",
    "BoxSource",
    "PoseFn",
    "compare_topdown",
    "detector_boxes",
    "file_boxes",
    "gt_boxes",
    "model_poses",
    "score_with_boxes",
    "whole_image_boxes",
]

PROTOCOLS = ("whole_image", "gt_boxes")
"""The keys of :func:`compare_topdown`'s result, in the order the comparison table shows them."""

BoxSource = Callable[[PoseImage, np.ndarray], Detections]
"""One val image (its sample and its (H, W, 3) uint8 RGB pixels) -> the person boxes to pose."""

PoseFn = Callable[[PoseImage, np.ndarray, Detections], PosePrediction]
"""One val image and its boxes -> a pose per box, in image pixels (:func:`model_poses`)."""


def gt_boxes(sample: PoseImage, image: np.ndarray) -> Detections:
    """The image's labelled people's boxes, score 1: a perfect detector."""
    return Detections(sample.bboxes.astype(np.float64), np.ones(sample.num_instances))


def whole_image_boxes(sample: PoseImage, image: np.ndarray) -> Detections:
    """One box covering the image (:func:`~posecore.inference.detection.whole_image`): no detector."""
    return whole_image(image)


def file_boxes(dataset_dir: Path, meta: DatasetMeta, det_file: str | Path, score_thr: float = 0.0) -> BoxSource:
    """The person boxes of a COCO detection-results file for the val split of ``dataset_dir``.

    Read and validated by :class:`~posecore.datasets.coco.CocoPoseDataset` (``det_file``): a record
    for an image that is not in the val split, a missing or malformed field, each is a
    :class:`~posecore.validation.DataValidationError` naming the file, the record and the field.
    Boxes of another category or scoring below ``score_thr`` are dropped (MMPose's
    ``det_bbox_thr``); an image with no box is posed with none (its people count as missed).
    """
    detected = CocoPoseDataset(
        dataset_dir, "val", meta=meta, mode="topdown", det_file=det_file, det_score_thr=score_thr
    )
    by_image = {
        s.image_id: Detections(s.bboxes.astype(np.float64), s.bbox_scores.astype(np.float64)) for s in detected.images
    }

    def boxes(sample: PoseImage, image: np.ndarray) -> Detections:
        return by_image.get(sample.image_id, Detections.empty())

    return boxes


def detector_boxes(detector: Callable[[np.ndarray], Detections]) -> BoxSource:
    """The boxes a person finder gives each image (:func:`~posecore.inference.detection.load_detector`:
    a one-stage model folder or an ONNX detector file)."""

    def boxes(sample: PoseImage, image: np.ndarray) -> Detections:
        return detector(image)

    return boxes


def model_poses(model: PoseModel, batch_size: int = 32) -> PoseFn:
    """A top-down model (bundle or training folder, as loaded by the runtime) posing every box."""

    def poses(sample: PoseImage, image: np.ndarray, boxes: Detections) -> PosePrediction:
        return predict_poses(model, image, boxes, batch_size)

    return poses


def score_with_boxes(
    dataset: CocoPoseDataset,
    pose: PoseFn,
    sources: Mapping[str, BoxSource],
    cfg: EvalConfig,
    label: str = "boxes",
) -> dict[str, BoxedScore]:
    """Pose every val image of ``dataset`` (a ``test_mode`` top-down reader of the val split) once per
    box source, and score each source's poses against the split's annotations; keys as ``sources``.

    Each image is read once; progress goes to the log as ``label``.
    """
    from posecore.evaluation.topdown import BoxedScore, coco_evaluator, coco_metrics, metric_names

    parts: dict[str, list[KeypointPredictions]] = {name: [] for name in sources}
    with Progress(label, total=len(dataset.images), unit="img") as bar:
        for sample in dataset.images:
            image = load_image(sample.image_path)
            for name, source in sources.items():
                parts[name].append(_for_coco(pose(sample, image, source(sample, image)), sample.image_id))
            bar.update(1)
    evaluator = coco_evaluator(dataset.ann_file, dataset.meta, cfg)
    out = {}
    for name, preds in parts.items():
        k = dataset.meta.num_keypoints
        merged = (
            KeypointPredictions.concat(preds)
            if preds
            else KeypointPredictions(np.zeros(0), np.zeros((0, k, 2)), np.zeros((0, k)))
        )
        out[name] = BoxedScore(metric_names(coco_metrics(evaluator, merged)), merged, len(merged.image_ids))
    return out


def compare_topdown(
    bundle_dir: Path, dataset_dir: Path, meta: DatasetMeta, cfg: EvalConfig
) -> dict[str, dict[str, float]]:
    """COCO metrics (metrics.json names: ``AP``, ``AP_.5``, ``AR``, ...) of the top-down bundle in
    ``bundle_dir`` on the val images of the canonical dataset folder ``dataset_dir``, per protocol
    (:data:`PROTOCOLS`, see the module docstring). Flip test as the bundle recommends (how it is
    deployed); crops in batches of ``cfg.batch_size``.

    Raises ValueError for a bundle that is not top-down, or whose keypoints are not ``meta``'s.
    """
    info = BundleInfo.read(bundle_dir)
    if info.task != "topdown":
        raise ValueError(
            f"the bundle {bundle_dir} holds a {info.task!r} model; the comparison runs a top-down bundle "
            "(person crops from boxes): give the top-down champion (evaluate.compare_topdown)"
        )
    if info.num_keypoints != meta.num_keypoints or tuple(info.keypoint_names) != tuple(meta.keypoint_names):
        raise ValueError(
            f"the bundle {bundle_dir} predicts {info.num_keypoints} keypoints of meta {info.meta_name!r}, but the "
            f"evaluated data has {meta.num_keypoints} of {meta.name!r}; compare with a model of the same keypoints"
        )
    dataset = CocoPoseDataset(dataset_dir, "val", meta=meta, mode="topdown", test_mode=True)
    sources: dict[str, BoxSource] = {"whole_image": whole_image_boxes, "gt_boxes": gt_boxes}
    scores = score_with_boxes(dataset, model_poses(BundleModel(bundle_dir), cfg.batch_size), sources, cfg, "compare")
    return {name: scores[name].metrics for name in PROTOCOLS}


def _for_coco(pose: PosePrediction, image_id: int) -> KeypointPredictions:
    """One image's poses as the COCO evaluator takes them; the OKS-NMS area is the box's (as top-down
    evaluation's)."""
    boxes = pose.bboxes
    return KeypointPredictions(
        image_ids=np.full(len(pose), image_id),
        keypoints=pose.keypoints,
        keypoint_scores=pose.keypoint_scores,
        bbox_scores=pose.bbox_scores,
        areas=(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]),
        bboxes=boxes,
    )
