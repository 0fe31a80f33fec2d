"""Stage ``evaluate``: the trained model on the cached val split -> metrics, tables, plots (``reports/eval``).

Loads ``train.checkpoint_dir`` (EMA weights when training kept them), predicts the val
inputs of the cache (``encode.out``) with ``evaluate.flip_test``, scores them against
``data.out/annotations/val.json`` (COCO AP/AR with the meta's sigmas after rescoring and
OKS-NMS per ``evaluate.*``; PCK@``pck_thr``, AUC, EPE) and writes, all at once::

    metrics.json        DVC metrics (names as MLflow takes them: AP, AP_.5, ..., PCK, AUC, EPE)
    per_keypoint.csv    keypoint,OKS,PCK@thr,count,AUC,EPE
    pck_curve.csv       threshold,pck (a DVC plot)
    per_keypoint.png    bars per keypoint; pck_curve.png
    worst.png           the worst-predicted val instances, prediction | ground truth
    results.json        COCO results (after rescoring and NMS)

Metrics go to the training's MLflow run as ``eval/<name>``, the files under ``eval/``;
without ``<train dir>/mlflow_run_id`` MLflow is skipped with a warning.
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from posecore.config import Params
from posecore.data.cache import CacheSplit, cache_key, open_cache
from posecore.datasets.layout import DatasetLayout
from posecore.evaluation.coco import CocoKeypointEvaluator
from posecore.evaluation.plots import plot_pck_curve, plot_per_keypoint, worst_instances_grid, write_png
from posecore.evaluation.reports import write_pck_curve_csv, write_per_keypoint_csv
from posecore.evaluation.topdown import (
    METRICS_FILE,
    EvalConfig,
    EvalResult,
    SplitPredictions,
    metric_names,
    predict_split,
    score_predictions,
)
from posecore.experiment import MlflowRun, open_existing_run
from posecore.export.trained import RUN_ID_FILE, load_trained
from posecore.io import atomic_output_dir, atomic_write_json
from posecore.metainfo import DatasetMeta, load_meta
from posecore.models.estimator import check_meta_matches

WORST_N = 16
FILES = (
    METRICS_FILE,
    "per_keypoint.csv",
    "pck_curve.csv",
    "per_keypoint.png",
    "pck_curve.png",
    "worst.png",
    "results.json",
)


@dataclass
class EvaluateOutputs:
    """``metrics``: metrics.json's contents (None where a metric is undefined, e.g. EPE without labels)."""

    out_dir: Path
    result: EvalResult
    metrics: dict[str, float | None]

    def files(self) -> list[Path]:
        return [self.out_dir / name for name in FILES]


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


def _image_gt(split: CacheSplit) -> np.ndarray:
    """Ground-truth keypoints (N, K, 2) in image pixels (the cache keeps them in input pixels)."""
    m = np.concatenate([split.warp.astype(np.float64), np.tile([[[0.0, 0.0, 1.0]]], (len(split), 1, 1))], axis=1)
    inv = np.linalg.inv(m)[:, :2]
    return np.einsum("nij,nkj->nki", inv[:, :, :2], split.keypoints.astype(np.float64)) + inv[:, None, :, 2]


def _to_input(split: CacheSplit, keypoints: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Image-pixel keypoints (B, K, 2) of instances ``index`` -> their model-input pixels."""
    w = split.warp[index].astype(np.float64)
    return np.einsum("nij,nkj->nki", w[:, :, :2], np.asarray(keypoints, np.float64)) + w[:, None, :, 2]


def _finite(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: (float(v) if math.isfinite(float(v)) else None) for k, v in metrics.items()}


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
    gt = _image_gt(split)
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
        write_png(tmp / "worst.png", _worst_grid(preds, split, gt, meta, result.errors, worst_n))
        evaluator = CocoKeypointEvaluator(
            gt_file,
            meta,
            score_mode=cfg.score_mode,
            keypoint_score_thr=cfg.keypoint_score_thr,
            nms_mode=cfg.nms_mode,
            nms_thr=cfg.nms_thr,
        )
        evaluator.write_results_json(tmp / "results.json", preds.for_coco(split))
    return EvaluateOutputs(out_dir, result, metrics)


def _box_area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _worst_grid(
    preds: SplitPredictions, split: CacheSplit, gt: np.ndarray, meta: DatasetMeta, errors: np.ndarray, n: int
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


def _tracker(train_dir: Path) -> MlflowRun | None:
    """The training's MLflow run (checked reachable now, before the work), or None when it has none."""
    run_id_file = train_dir / RUN_ID_FILE
    if not run_id_file.is_file():
        warnings.warn(f"{run_id_file} does not exist: evaluation results are not logged to MLflow", stacklevel=3)
        return None
    return open_existing_run(run_id_file)


def log_to_run(tracker: MlflowRun, outputs: EvaluateOutputs, prefix: str = "eval") -> None:
    with tracker as run:
        run.log_metrics({f"{prefix}/{k}": v for k, v in outputs.metrics.items() if v is not None}, step=0)
        for path in outputs.files():
            run.log_artifact(path, prefix)


def run(params: Params, out_dir: Path | None = None, device: str | None = None) -> EvaluateOutputs:
    """Evaluate the model in ``train.checkpoint_dir`` on the val split of ``encode.out``; write ``out_dir``."""
    cfg = params.evaluate
    out_dir = out_dir or Path(cfg.out)
    train_dir = Path(params.train.checkpoint_dir)
    dataset_dir = Path(params.data.out)
    layout = DatasetLayout(dataset_dir)
    tracker = _tracker(train_dir)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    trained = load_trained(train_dir, dev)
    dataset_meta = load_meta(layout.meta)
    check_meta_matches(trained.model, dataset_meta)
    if dataset_meta.keypoint_names != trained.meta.keypoint_names:
        raise ValueError(
            f"the model was trained on meta {trained.meta.name!r} but {dataset_dir} uses {dataset_meta.name!r} "
            "with other keypoints; evaluate on the dataset the model was trained for"
        )
    key = cache_key(dataset_dir, params.encode, trained.spec.build_codec())
    split = open_cache(Path(params.encode.out), key)["val"]
    preds = predict_split(trained.model, split, cfg.flip_test, cfg.batch_size, dev)
    outputs = write_report(preds, split, layout.annotations("val"), trained.meta, cfg, out_dir)
    if tracker is not None:
        log_to_run(tracker, outputs)
    return outputs


def _body(params: Params) -> None:
    outputs = run(params)
    print(json.dumps({"out": str(outputs.out_dir), "metrics": outputs.metrics}, indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    from stages._cli import stage_main

    return stage_main(__doc__ or "", _body, argv)


if __name__ == "__main__":
    sys.exit(main())
