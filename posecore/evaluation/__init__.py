"""Evaluation: COCO keypoint AP/AR, PCK/PCKh/AUC/EPE/NME, OKS-NMS, and their CSV outputs.

* :mod:`posecore.evaluation.functional` — vectorised numpy metrics and OKS-NMS (MMPose 1.x conventions);
* :mod:`posecore.evaluation.coco` — :class:`CocoKeypointEvaluator` (rescoring, NMS, pycocotools);
* :mod:`posecore.evaluation.parts` — AP per part of a skeleton (COCO-WholeBody), as MMPose's ``CocoWholeBodyMetric``;
* :mod:`posecore.evaluation.keypoint_metrics` — split-level evaluators with per-keypoint tables;
* :mod:`posecore.evaluation.reports` — per-keypoint and PCK-curve CSV writers;
* :mod:`posecore.evaluation.topdown` — ``evaluate:`` params, the one prediction loop over a cached split
  (:func:`~posecore.evaluation.topdown.predict_split`, a torch model or an ONNX predictor) and its scoring;
* :mod:`posecore.evaluation.bottomup` — one-stage models: every whole val image predicted
  (:func:`~posecore.evaluation.bottomup.predict_images`), scored with no boxes given (COCO AP on whole
  images; PCK/EPE on people matched by OKS);
* :mod:`posecore.evaluation.outputs` — the evaluate step's report folder
  (:func:`~posecore.evaluation.outputs.write_report`, ``write_bottomup_report``: metrics, tables, plots,
  COCO results; for one-stage models the side-by-side with a top-down model, which
  :mod:`posecore.inference.compare` runs).
"""

from posecore.evaluation.coco import (
    STATS_NAMES,
    CocoEvalOutput,
    CocoKeypointEvaluator,
    InstancePrediction,
    KeypointPredictions,
    rescore,
)
from posecore.evaluation.keypoint_metrics import (
    AUCEvaluator,
    EPEEvaluator,
    MetricReport,
    MpiiPCKhEvaluator,
    NMEEvaluator,
    PCKEvaluator,
    bbox_sizes,
    head_sizes_from_keypoints,
    mpii_head_sizes,
    torso_sizes,
)
from posecore.evaluation.reports import write_pck_curve_csv, write_per_keypoint_csv

__all__ = [
    "STATS_NAMES",
    "AUCEvaluator",
    "CocoEvalOutput",
    "CocoKeypointEvaluator",
    "EPEEvaluator",
    "InstancePrediction",
    "KeypointPredictions",
    "MetricReport",
    "MpiiPCKhEvaluator",
    "NMEEvaluator",
    "PCKEvaluator",
    "bbox_sizes",
    "head_sizes_from_keypoints",
    "mpii_head_sizes",
    "rescore",
    "torso_sizes",
    "write_pck_curve_csv",
    "write_per_keypoint_csv",
]
