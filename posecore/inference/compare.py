"""A top-down bundle scored on a dataset's val images the way a one-stage model is: no detector needed.

"Is one stage as good as a detector plus a top-down model?" :func:`compare_topdown` runs a
top-down bundle through the inference runtime (:func:`~posecore.inference.pipeline.predict_poses`,
exactly what ``posecore infer`` does) twice over every val image:

- ``whole_image``: one box covering each image (:func:`~posecore.inference.detection.whole_image`),
  what the top-down model does with no detector at all;
- ``gt_boxes``: the ground-truth person boxes (score 1), a perfect detector: the ceiling of the
  top-down route;

and scores both against ``annotations/val.json`` with the evaluate step's COCO evaluator
(:func:`posecore.evaluation.topdown.coco_evaluator`: ``evaluate.score_mode`` rescoring and
``evaluate.nms_mode``). :func:`posecore.evaluation.outputs.write_bottomup_report` writes the numbers
beside the one-stage model's. It lives here, above :mod:`posecore.evaluation`, because it needs the
runtime; it is not on the runtime path, and imports torch (through the evaluator's settings) only
when called.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from posecore.datasets.coco import CocoPoseDataset, load_image
from posecore.evaluation.coco import KeypointPredictions
from posecore.export.bundle import BundleInfo
from posecore.inference.detection import Detections, whole_image
from posecore.inference.pipeline import PosePrediction, predict_poses
from posecore.inference.runtime import BundleModel
from posecore.metainfo import DatasetMeta
from posecore.progress import Progress

if TYPE_CHECKING:
    from posecore.evaluation.topdown import EvalConfig

__all__ = ["PROTOCOLS", "compare_topdown"]

PROTOCOLS = ("whole_image", "gt_boxes")
"""The keys of :func:`compare_topdown`'s result, in the order the comparison table shows them."""


def compare_topdown(
    bundle_dir: Path, dataset_dir: Path, meta: DatasetMeta, cfg: EvalConfig
) -> dict[str, dict[str, float]]:
    """COCO metrics (metrics.json names: ``AP``, ``AP_.5``, ``AR``, ...) of the top-down bundle in
    ``bundle_dir`` on the val images of the canonical dataset folder ``dataset_dir``, per protocol
    (:data:`PROTOCOLS`, see the module docstring). Flip test as the bundle recommends (how it is
    deployed); crops in batches of ``cfg.batch_size``.

    Raises ValueError for a bundle that is not top-down, or whose keypoints are not ``meta``'s.
    """
    from posecore.evaluation.topdown import coco_evaluator, metric_names

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
    model = BundleModel(bundle_dir)
    parts: dict[str, list[KeypointPredictions]] = {name: [] for name in PROTOCOLS}
    with Progress("compare", total=len(dataset.images), unit="img") as bar:
        for sample in dataset.images:
            image = load_image(sample.image_path)
            boxes = {
                "whole_image": whole_image(image),
                "gt_boxes": Detections(sample.bboxes.astype(np.float64), np.ones(sample.num_instances)),
            }
            for name in PROTOCOLS:
                pose = predict_poses(model, image, boxes[name], cfg.batch_size)
                parts[name].append(_for_coco(pose, sample.image_id))
            bar.update(1)
    evaluator = coco_evaluator(dataset.ann_file, meta, cfg)
    return {name: metric_names(evaluator.evaluate(parts[name])) for name in PROTOCOLS}


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
