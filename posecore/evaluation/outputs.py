"""The evaluate step's output folder (``evaluate.out``): every report of one scored split, written at once.

:func:`write_report` scores a split's predictions (:func:`posecore.evaluation.topdown.score_predictions`)
and replaces ``out_dir`` atomically with the :data:`REPORT_FILES`: the metrics as DVC reads them
and MLflow names them, the per-keypoint table (OKS beside the evaluators' columns) and the PCK curve
as CSV and PNG, a grid of the worst-predicted instances (prediction | ground truth, drawn on the
model's input crops), and the COCO results after rescoring and NMS.

:func:`write_bottomup_report` writes the same files for a one-stage model
(:mod:`posecore.evaluation.bottomup`): the same metric names, OKS of the matched people per
keypoint, and the worst *images* (every person found | every labelled person, on the letterboxed
inputs). Given :func:`~posecore.evaluation.bottomup.compare_topdown`'s numbers it adds the
:data:`COMPARISON_FILES` and the top-down runs' AP/AR to metrics.json
(``topdown_whole_image/AP``, ``topdown_gt_boxes/AR``, ...).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from posecore.data.cache import CacheSplit
from posecore.evaluation.bottomup import PeopleMatch, bottomup_coco_evaluator, match_people, score_bottomup
from posecore.evaluation.coco import STATS_NAMES, KeypointPredictions
from posecore.evaluation.plots import plot_pck_curve, plot_per_keypoint, worst_instances_grid, write_png
from posecore.evaluation.reports import write_pck_curve_csv, write_per_keypoint_csv
from posecore.evaluation.topdown import (
    METRICS_FILE,
    BoxedScore,
    EvalConfig,
    EvalResult,
    SplitPredictions,
    coco_evaluator,
    image_keypoints,
    metric_names,
    score_predictions,
)
from posecore.io import atomic_output_dir, atomic_write_json, atomic_write_text
from posecore.metainfo import DatasetMeta
from posecore.transforms.geometry import transform_points_numpy
from posecore.visualization import Poses, draw_label, draw_side_by_side, make_grid

if TYPE_CHECKING:
    from posecore.data.images import ImageSplit

WORST_N = 16
"""How many instances (one-stage: images) ``worst.png`` shows."""

DRAW_SCORE_THR = 0.3
"""One-stage ``worst.png``: the people (person score) and keypoints (keypoint score) drawn as predicted."""

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

COMPARISON_FILES = ("comparison.json", "comparison.md")
"""What :func:`write_bottomup_report` adds when given a top-down comparison."""

COMPARISON_PROTOCOLS = (
    ("one_stage", "one-stage (no boxes)"),
    ("topdown_whole_image", "top-down, whole-image box"),
    ("topdown_gt_boxes", "top-down, ground-truth boxes (ceiling)"),
)
"""comparison.json's keys and comparison.md's row labels, in table order."""


@dataclass(frozen=True)
class Protocol:
    """How the metrics were taken, written into metrics.json beside them (strings).

    ``boxes``: whose person boxes the COCO metrics used (``gt``, ``file:<path>``,
    ``model:<detector>``, ``none`` for a one-stage model); ``eval_data``: the evaluation-data
    fingerprint the registry compares versions by (:mod:`posecore.registry.fingerprint`), which
    names the boxes too; ``detected``: with detected boxes, their COCO metrics and poses.
    """

    boxes: str = "gt"
    eval_data: str | None = None
    detected: BoxedScore | None = None

    def fields(self) -> dict[str, str]:
        return {"boxes": self.boxes, **({"eval_data": self.eval_data} if self.eval_data else {})}


@dataclass
class EvaluateOutputs:
    """``metrics``: metrics.json's contents (None where a metric is undefined, e.g. EPE without labels;
    the :class:`Protocol` fields are strings, :meth:`numbers` leaves them out); ``names``: the files
    written (:data:`REPORT_FILES`, plus :data:`COMPARISON_FILES` with a comparison)."""

    out_dir: Path
    result: EvalResult
    metrics: dict[str, float | str | None]
    names: tuple[str, ...] = REPORT_FILES

    def files(self) -> list[Path]:
        return [self.out_dir / name for name in self.names]

    def numbers(self) -> dict[str, float]:
        """The metrics that have a value (what MLflow logs)."""
        return {k: v for k, v in self.metrics.items() if isinstance(v, float)}


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
    protocol: Protocol = Protocol(),
) -> EvaluateOutputs:
    """Score ``preds`` of ``split`` (the crops of the ground-truth boxes) and write every report file
    into ``out_dir`` (replaced atomically).

    With ``protocol.detected`` (the model run on detected boxes), its COCO metrics are metrics.json's
    ``AP``, ``AR``, ... and results.json holds its poses; the ground-truth-box COCO metrics move to
    ``gt_boxes/AP``, ...; PCK, AUC, EPE, the tables and plots stay those of the labelled people.
    """
    result = score_predictions(preds, split, gt_file, meta, cfg)
    gt = image_keypoints(split)
    mask = split.visible > 0
    areas = np.where(split.area > 0, split.area, 0.53 * _box_area(split.image_bbox))
    oks = per_keypoint_oks(preds.keypoints, gt, mask, areas, np.asarray(meta.sigmas))
    table = {name: {"OKS": float(oks[k]), **result.per_keypoint[name]} for k, name in enumerate(meta.keypoint_names)}
    named = metric_names(result.metrics)
    detected = protocol.detected
    if detected is not None:
        coco = set(detected.metrics)
        named = {
            **detected.metrics,
            **{f"gt_boxes/{k}" if k in coco else k: v for k, v in named.items()},
            "detected_boxes": float(detected.boxes),
        }
    metrics: dict[str, float | str | None] = {
        **_finite({**named, "instances": float(len(split))}),
        **protocol.fields(),
    }
    results = detected.predictions if detected is not None else preds.for_coco(split)
    with atomic_output_dir(out_dir) as tmp:
        atomic_write_json(tmp / METRICS_FILE, metrics, indent=2)
        write_per_keypoint_csv(tmp / "per_keypoint.csv", table)
        write_pck_curve_csv(tmp / "pck_curve.csv", *result.pck_curve)
        plot_per_keypoint(tmp / "per_keypoint.png", table)
        plot_pck_curve(tmp / "pck_curve.png", *result.pck_curve)
        write_png(tmp / "worst.png", _worst_grid(preds, split, meta, result.errors, worst_n))
        coco_evaluator(gt_file, meta, cfg).write_results_json(tmp / "results.json", results)
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


def write_bottomup_report(
    preds: KeypointPredictions,
    split: ImageSplit,
    gt_file: Path,
    meta: DatasetMeta,
    cfg: EvalConfig,
    out_dir: Path,
    worst_n: int = WORST_N,
    comparison: Mapping[str, Mapping[str, float]] | None = None,
    protocol: Protocol = Protocol(boxes="none"),
) -> EvaluateOutputs:
    """Score a one-stage model's ``preds`` of ``split`` and write the report files into ``out_dir`` (replaced
    atomically); ``comparison`` is :func:`~posecore.evaluation.bottomup.compare_topdown`'s result, or None."""
    result = score_bottomup(preds, split, gt_file, meta, cfg)
    match = match_people(preds, split, meta)
    gt = match.gt
    oks = per_keypoint_oks(match.keypoints, gt.keypoints, gt.mask, gt.areas, np.asarray(meta.sigmas))
    table = {name: {"OKS": float(oks[k]), **result.per_keypoint[name]} for k, name in enumerate(meta.keypoint_names)}
    named = metric_names(result.metrics)
    metrics = {**named, "images": float(len(split)), "instances": float(gt.labelled.sum())}
    names = REPORT_FILES
    if comparison is not None:
        names = REPORT_FILES + COMPARISON_FILES
        metrics.update(
            {
                f"topdown_{run}/{key}": comparison[run][key]
                for run in ("whole_image", "gt_boxes")
                for key in ("AP", "AR")
            }
        )
    metrics = {**_finite(metrics), **protocol.fields()}
    with atomic_output_dir(out_dir) as tmp:
        atomic_write_json(tmp / METRICS_FILE, metrics, indent=2)
        write_per_keypoint_csv(tmp / "per_keypoint.csv", table)
        write_pck_curve_csv(tmp / "pck_curve.csv", *result.pck_curve)
        plot_per_keypoint(tmp / "per_keypoint.png", table)
        plot_pck_curve(tmp / "pck_curve.png", *result.pck_curve)
        write_png(tmp / "worst.png", _worst_images_grid(preds, match, split, meta, worst_n))
        bottomup_coco_evaluator(gt_file, meta, cfg).write_results_json(tmp / "results.json", preds)
        if comparison is not None:
            doc = comparison_doc(named, comparison)
            atomic_write_json(tmp / "comparison.json", doc, indent=2)
            atomic_write_text(tmp / "comparison.md", comparison_markdown(doc))
    return EvaluateOutputs(out_dir, result, metrics, names)


def comparison_doc(
    one_stage: Mapping[str, float], comparison: Mapping[str, Mapping[str, float]]
) -> dict[str, dict[str, float | None]]:
    """comparison.json: the COCO stats (metrics.json names) of each protocol, keyed as :data:`COMPARISON_PROTOCOLS`."""
    coco = list(metric_names(dict.fromkeys(STATS_NAMES, 0.0)))
    runs = {
        "one_stage": one_stage,
        "topdown_whole_image": comparison["whole_image"],
        "topdown_gt_boxes": comparison["gt_boxes"],
    }
    return {key: _finite({m: runs[key][m] for m in coco if m in runs[key]}) for key, _ in COMPARISON_PROTOCOLS}


def comparison_markdown(doc: Mapping[str, Mapping[str, float | None]]) -> str:
    """comparison.json's runs as a markdown table: protocol | AP | AP .5 | AR (3 decimals, "-" where undefined)."""

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    lines = ["| protocol | AP | AP .5 | AR |", "|---|---:|---:|---:|"]
    for key, label in COMPARISON_PROTOCOLS:
        m = doc.get(key, {})
        lines.append(f"| {label} | {cell(m.get('AP'))} | {cell(m.get('AP_.5'))} | {cell(m.get('AR'))} |")
    return "\n".join(lines) + "\n"


def _worst_images_grid(
    preds: KeypointPredictions, match: PeopleMatch, split: ImageSplit, meta: DatasetMeta, n: int
) -> np.ndarray:
    """The ``n`` images the model answered worst: prediction | ground truth on each stored val input.

    Badness of an image: the OKS its labelled people miss (1 - OKS each, 1 for a miss) plus the
    person scores of the predictions that answer nobody, per labelled person (at least 1). Images
    with neither people nor predictions come last. Drawn: predictions scoring at least
    :data:`DRAW_SCORE_THR` (and their keypoints above it), the labelled people.
    """
    if len(split) == 0:
        return np.zeros((8, 8, 3), np.uint8)
    gt, rows = match.gt, match.pred_rows
    count = np.bincount(gt.image_index[gt.labelled], minlength=len(split)).astype(np.float64)
    missed = np.bincount(gt.image_index[gt.labelled], 1.0 - match.oks[gt.labelled], minlength=len(split))
    extra = np.bincount(rows[match.unmatched], preds.bbox_scores[match.unmatched], minlength=len(split))
    badness = np.where((count > 0) | (extra > 0), (missed + extra) / np.maximum(count, 1), -np.inf)
    to_stored = np.asarray(split.warp, np.float64)[rows]
    keypoints = _through(preds.keypoints, to_stored)
    boxes = _through(preds.bboxes.reshape(-1, 2, 2), to_stored).reshape(-1, 4)
    tiles = []
    for i in np.argsort(-badness, kind="stable")[: max(1, n)]:
        mine = np.flatnonzero((rows == i) & (preds.bbox_scores >= DRAW_SCORE_THR))
        people = np.flatnonzero((gt.image_index == i) & gt.labelled)
        pred = Poses(keypoints[mine], preds.keypoint_scores[mine], boxes[mine])
        truth = Poses(split.keypoints[people], gt.visible[people].astype(np.float64), split.bbox[people])
        found, extras = int(match.matched[people].sum()), int(match.unmatched[rows == i].sum())
        mean_oks = f"{match.oks[people].mean():.2f}" if len(people) else "-"
        label = f"img {int(split.image_id[i])}: {found}/{len(people)} found, OKS {mean_oks}, +{extras} unmatched"
        tiles.append(_panel(split.images([i])[0], pred, truth, meta, label))
    return make_grid(tiles, cols=min(4, len(tiles)))


def _through(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """points (N, ..., 2) through the affines m (N, 2, 3); N may be 0."""
    return transform_points_numpy(points, m) if len(points) else np.asarray(points, np.float64)


def _panel(
    image: np.ndarray, pred: Poses, truth: Poses, meta: DatasetMeta, label: str, min_height: int = 192
) -> np.ndarray:
    """prediction | ground truth on ``image`` (stored px), enlarged to at least ``min_height``, captioned."""
    s = max(1, int(np.ceil(min_height / image.shape[0])))
    big = cv2.resize(image, (image.shape[1] * s, image.shape[0] * s), interpolation=cv2.INTER_LINEAR)

    def scaled(poses: Poses) -> Poses:  # pixel centres stay pixel centres
        boxes = None if poses.bboxes is None else (np.asarray(poses.bboxes, np.float64) + 0.5) * s - 0.5
        return Poses((np.asarray(poses.keypoints, np.float64) + 0.5) * s - 0.5, poses.scores, boxes)

    tile = draw_side_by_side(big, scaled(pred), scaled(truth), meta, kpt_thr=DRAW_SCORE_THR, color_by="side")
    return draw_label(tile, label, origin=(0, tile.shape[0] - 20))
