"""The evaluate step's output folder (``evaluate.out``): every report of one scored split, written at once.

:func:`write_report` scores a split's predictions (:func:`posecore.evaluation.topdown.score_predictions`)
and replaces ``out_dir`` atomically with the :data:`REPORT_FILES`: the metrics as DVC reads them
and MLflow names them, the per-keypoint table (OKS beside the evaluators' columns) and the PCK curve
as CSV and PNG, a grid of the worst-predicted instances (prediction | ground truth, drawn on the
model's input crops), and the COCO results after rescoring and NMS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posecore.data.cache import CacheSplit
from posecore.evaluation.plots import plot_pck_curve, plot_per_keypoint, worst_instances_grid, write_png
from posecore.evaluation.reports import write_pck_curve_csv, write_per_keypoint_csv
from posecore.evaluation.topdown import (
    METRICS_FILE,
    EvalConfig,
    EvalResult,
    SplitPredictions,
    coco_evaluator,
    image_keypoints,
    metric_names,
    score_predictions,
)
from posecore.io import atomic_output_dir, atomic_write_json
from posecore.metainfo import DatasetMeta

WORST_N = 16
"""How many instances ``worst.png`` shows."""

REPORT_FILES = (
    METRICS_FILE,
    "per_keypoint.csv",
    "pck_curve.csv",
    "per_keypoint.png",
    "pck_curve.png",
    "worst.png",
    "results.json",
)
"""Every file :func:`write_report` writes, in the order they are logged."""


@dataclass
class EvaluateOutputs:
    """``metrics``: metrics.json's contents (None where a metric is undefined, e.g. EPE without labels)."""

    out_dir: Path
    result: EvalResult
    metrics: dict[str, float | None]

    def files(self) -> list[Path]:
        return [self.out_dir / name for name in REPORT_FILES]


def per_keypoint_oks(
    preds: np.ndarray, gt: np.ndarray, mask: np.ndarray, areas: np.ndarray, sigmas: np.ndarray
) -> np.ndarray:
    """Mean COCO keypoint similarity ``exp(-d^2 / (2 area (2 sigma)^2))`` per keypoint (K,) over labelled ones (NaN: none)."""
    d2 = ((np.asarray(preds, np.float64) - gt) ** 2).sum(-1)
    var = (2.0 * np.asarray(sigmas, np.float64)) ** 2
    ks = np.exp(-d2 / var[None] / (np.maximum(areas, np.finfo(np.float64).eps)[:, None] * 2.0))
    count = mask.sum(0)
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, (ks * mask).sum(0) / np.maximum(count, 1), np.nan)


def write_report(
    preds: SplitPredictions,
    split: CacheSplit,
    gt_file: Path,
    meta: DatasetMeta,
    cfg: EvalConfig,
    out_dir: Path,
    worst_n: int = WORST_N,
) -> EvaluateOutputs:
    """Score ``preds`` of ``split`` and write every report file into ``out_dir`` (replaced atomically)."""
    result = score_predictions(preds, split, gt_file, meta, cfg)
    gt = image_keypoints(split)
    mask = split.visible > 0
    areas = np.where(split.area > 0, split.area, 0.53 * _box_area(split.image_bbox))
    oks = per_keypoint_oks(preds.keypoints, gt, mask, areas, np.asarray(meta.sigmas))
    table = {name: {"OKS": float(oks[k]), **result.per_keypoint[name]} for k, name in enumerate(meta.keypoint_names)}
    metrics = _finite({**metric_names(result.metrics), "instances": float(len(split))})
    with atomic_output_dir(out_dir) as tmp:
        atomic_write_json(tmp / METRICS_FILE, metrics, indent=2)
        write_per_keypoint_csv(tmp / "per_keypoint.csv", table)
        write_pck_curve_csv(tmp / "pck_curve.csv", *result.pck_curve)
        plot_per_keypoint(tmp / "per_keypoint.png", table)
        plot_pck_curve(tmp / "pck_curve.png", *result.pck_curve)
        write_png(tmp / "worst.png", _worst_grid(preds, split, meta, result.errors, worst_n))
        coco_evaluator(gt_file, meta, cfg).write_results_json(tmp / "results.json", preds.for_coco(split))
    return EvaluateOutputs(out_dir, result, metrics)


def _finite(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: (float(v) if math.isfinite(float(v)) else None) for k, v in metrics.items()}


def _box_area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _to_input(split: CacheSplit, keypoints: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Image-pixel keypoints (B, K, 2) of instances ``index`` -> their model-input pixels."""
    w = split.warp[index].astype(np.float64)
    return np.einsum("nij,nkj->nki", w[:, :, :2], np.asarray(keypoints, np.float64)) + w[:, None, :, 2]


def _worst_grid(
    preds: SplitPredictions, split: CacheSplit, meta: DatasetMeta, errors: np.ndarray, n: int
) -> np.ndarray:
    """The ``n`` instances with the largest mean keypoint error relative to their box size."""
    boxes = split.image_bbox
    size = np.maximum(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]), 1e-6)
    relative = np.where(np.isfinite(errors), errors / size, -np.inf)
    order = np.argsort(-relative, kind="stable")[: max(1, n)]
    labels = [
        f"img {int(split.image_id[i])}: {errors[i]:.1f}px ({relative[i]:.0%} of box)"
        if np.isfinite(errors[i])
        else f"img {int(split.image_id[i])}: no labels"
        for i in order
    ]
    return worst_instances_grid(
        split.images(order),
        _to_input(split, preds.keypoints[order], order),
        split.keypoints[order],
        split.visible[order],
        meta,
        labels,
    )
