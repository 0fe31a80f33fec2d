"""Top-down prediction and scoring on a cached split: used by validation during training and by ``evaluate``.

Predictions are decoded in model-input pixels and mapped back to image pixels with the
inverse of each crop's warp, then scored against the split's ground-truth COCO file
(COCO AP with the meta's sigmas) and by PCK (box-normalised) / AUC / EPE.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from posecore.data.cache import CacheSplit
from posecore.evaluation.coco import CocoKeypointEvaluator, KeypointPredictions
from posecore.evaluation.functional import pck_curve
from posecore.evaluation.keypoint_metrics import (
    DEFAULT_NME_KEYPOINTS,
    AUCEvaluator,
    EPEEvaluator,
    MetricReport,
    NMEEvaluator,
    NormItem,
    PCKEvaluator,
)
from posecore.evaluation.parts import PARTS_BY_META, evaluate_parts
from posecore.evaluation.posetrack import POSETRACK_PARTS, posetrack_ap, posetrack_frames
from posecore.metainfo import DatasetMeta
from posecore.progress import Progress
from posecore.transforms.geometry import invert_affine, transform_points
from posecore.validation import DataValidationError, Problem

_LOG = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
TORSO_KEYPOINTS = ("left_shoulder", "right_hip")
"""The torso of torso-normalised PCK (``tPCK``, LSP's and JHMDB's strict measure; MMPose's default pair)."""
"""The name of the evaluate stage's metrics file (DVC metrics) in its output folder."""


@dataclass(frozen=True)
class EvalConfig:
    """How predictions are scored (``evaluate:`` in params.yaml)."""

    metric: Literal["AP", "PCK", "AUC", "EPE", "NME"] = "AP"
    pck_thr: float = field(default=0.2, metadata={"range": (0.0, 1.0)})
    auc_norm: float = field(default=30.0, metadata={"range": (1e-6, 1e6)})
    nms_mode: Literal["oks_nms", "soft_oks_nms", "none"] = "oks_nms"
    nms_thr: float = field(default=0.9, metadata={"range": (0.0, 1.0)})
    score_mode: Literal["bbox_keypoint", "bbox", "keypoint"] = "bbox_keypoint"
    keypoint_score_thr: float = field(default=0.2, metadata={"range": (0.0, 1.0)})
    flip_test: bool = True
    batch_size: int = field(default=64, metadata={"range": (1, 100_000)})
    out: str = "reports/eval"
    #: One-stage models only: the top-down model scored beside them on the same val images (with
    #: one whole-image box, and with the ground-truth boxes): a bundle folder, a registry
    #: reference (``NAME@ALIAS``, ``NAME/VERSION``), or "" for none.
    compare_topdown: str = "posecore-pose@champion"
    #: Top-down models: whose person boxes the COCO metrics (AP, AR) are taken with. ``gt``: the
    #: ground-truth boxes; ``file``: a COCO detection-results file (``bbox_file``, MMPose's
    #: ``bbox_file``); ``model``: a person finder (``detector``). With ``file``/``model`` the
    #: ground-truth-box numbers stay beside them as ``gt_boxes/*``; PCK, AUC and EPE are per labelled
    #: person and always use its ground-truth box.
    boxes: Literal["gt", "file", "model"] = "gt"
    #: ``boxes: file``: COCO detection results (``[{image_id, category_id, bbox: [x, y, w, h], score}]``)
    #: for the val images.
    bbox_file: str = ""
    #: ``boxes: model``: a one-stage bundle or training folder, an ONNX detector file, or a registry
    #: reference (``NAME@ALIAS``, ``NAME/VERSION``); "" is the champion of the one-stage model this
    #: pipeline registers (``<register.model_name>-onestage@champion``).
    detector: str = ""
    #: Detected boxes scoring below this are dropped (MMPose's ``det_bbox_thr``).
    det_score_thr: float = field(default=0.0, metadata={"range": (0.0, 1.0)})

    @property
    def higher_is_better(self) -> bool:
        return self.metric not in ("EPE", "NME")

    @property
    def metrics_file(self) -> Path:
        """``<out>/metrics.json``: the evaluate stage's metrics, which the export and register stages read."""
        return Path(self.out) / METRICS_FILE


def normalized_inputs(
    split: CacheSplit, indices: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]
) -> Tensor:
    """(B, 3, h, w) float32 model inputs for ``indices`` of a preprocessed (val) split."""
    images = torch.from_numpy(split.images(indices)).permute(0, 3, 1, 2).to(torch.float32)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (images - m) / s


@dataclass
class SplitPredictions:
    """keypoints (N, K, 2) in image pixels, scores (N, K); rows follow the split's index."""

    keypoints: np.ndarray
    scores: np.ndarray

    def for_coco(self, split: CacheSplit) -> KeypointPredictions:
        boxes = split.image_bbox
        return KeypointPredictions(
            image_ids=split.image_id,
            keypoints=self.keypoints,
            keypoint_scores=self.scores,
            bbox_scores=split.bbox_score,
            areas=(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]),
            bboxes=boxes,
        )


class Predictor(Protocol):
    """What :func:`predict_split` runs: a torch :class:`~posecore.models.estimator.PoseEstimator`, or an
    ONNX Runtime session with its bundle's decoding (:class:`posecore.export.scoring.OnnxPredictor`).

    ``predict`` takes normalised inputs (B, 3, h, w) float32 and returns keypoints (B, K, 2) in
    model-input pixels and scores (B, K), flip-test averaged when ``flip_test``; ``mean``/``std``
    (RGB, 0..255) normalise the cached uint8 crops; ``flip_indices`` has one entry per keypoint.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip_indices: Sequence[int]

    def predict(self, inputs: Tensor, flip_test: bool) -> tuple[Tensor, Tensor]: ...


@contextlib.contextmanager
def eval_mode(model: object, device: torch.device | None) -> Iterator[torch.device | None]:
    """A torch module in eval mode for the block (its mode restored after), yielding the device to
    feed it (``device``, default its parameters'); any other predictor runs as it is."""
    if not isinstance(model, nn.Module):
        yield device
        return
    was_training = model.training
    model.eval()
    try:
        yield device or next(model.parameters()).device
    finally:
        model.train(was_training)


@torch.no_grad()
def predict_split(
    model: Predictor, split: CacheSplit, flip_test: bool, batch_size: int = 64, device: torch.device | None = None
) -> SplitPredictions:
    """Run ``model.predict`` over a preprocessed split and map keypoints back to image pixels.

    The one prediction loop of validation, the evaluate stage, the export stage's ONNX accuracy and
    the champion re-evaluation, so their numbers agree. A torch module is put in eval mode for the
    loop (and back after) and fed on ``device`` (default: its parameters'); anything else runs as
    it is. Reports progress as the ``evaluate`` step.
    """
    kps, scores = [], []
    n = len(split)
    with eval_mode(model, device) as device:
        with Progress("evaluate", total=n, unit="inst") as bar:
            for start in range(0, n, batch_size):
                idx = np.arange(start, min(n, start + batch_size))
                inputs = normalized_inputs(split, idx, model.mean, model.std)
                kp, sc = model.predict(inputs if device is None else inputs.to(device), flip_test=flip_test)
                to_image = invert_affine(torch.from_numpy(split.warp[idx]).to(torch.float64))
                kps.append(transform_points(kp.cpu().to(torch.float64), to_image).to(torch.float32).numpy())
                scores.append(sc.cpu().numpy().astype(np.float32))
                bar.update(len(idx))
    k = len(model.flip_indices)
    return SplitPredictions(
        np.concatenate(kps) if kps else np.zeros((0, k, 2), np.float32),
        np.concatenate(scores) if scores else np.zeros((0, k), np.float32),
    )


@dataclass
class BoxedScore:
    """COCO metrics taken with boxes from a source other than the cache's ground truth.

    ``metrics``: metrics.json names (``AP``, ``AP_.5``, ``AR``, ...); ``predictions``: the poses
    scored (before rescoring and NMS); ``boxes``: how many boxes were posed.
    """

    metrics: dict[str, float]
    predictions: KeypointPredictions
    boxes: int


@dataclass
class EvalResult:
    metrics: dict[str, float]
    per_keypoint: dict[str, dict[str, float]]
    pck_curve: tuple[np.ndarray, np.ndarray]
    errors: np.ndarray  # (N,) mean keypoint error per instance in image pixels (NaN: none labelled)


def score_predictions(
    preds: SplitPredictions, split: CacheSplit, gt_file: Path, meta: DatasetMeta, cfg: EvalConfig
) -> EvalResult:
    """COCO AP/AR (10 stats) + PCK@thr (box; and torso, ``tPCK``, when the meta has ``left_shoulder`` and
    ``right_hip``) + AUC + EPE, with per-keypoint tables."""
    gt = image_keypoints(split)
    mask = split.visible > 0
    evaluator = coco_evaluator(gt_file, meta, cfg)
    metrics = coco_metrics(evaluator, preds.for_coco(split))
    norms: list[NormItem] = ["bbox", *(["torso"] if set(TORSO_KEYPOINTS) <= set(meta.keypoint_names) else [])]
    reports: list[MetricReport] = [
        PCKEvaluator(meta, thr=cfg.pck_thr, norm_item=norms, torso_keypoints=TORSO_KEYPOINTS).evaluate(
            preds.keypoints, gt, mask, bboxes=split.image_bbox
        ),
        AUCEvaluator(meta, norm_factor=cfg.auc_norm).evaluate(preds.keypoints, gt, mask),
        EPEEvaluator(meta).evaluate(preds.keypoints, gt, mask),
    ]
    if cfg.metric == "NME" or meta.name in DEFAULT_NME_KEYPOINTS:
        reports.append(_nme(preds.keypoints, gt, mask, split, meta, gt_file))
    per_keypoint: dict[str, dict[str, float]] = {name: {} for name in meta.keypoint_names}
    for report in reports:
        metrics.update(report.metrics)
        for name, row in report.per_keypoint.items():
            per_keypoint[name].update(row)
    if meta.name in POSETRACK_METAS and evaluator.last is not None and _has_head_boxes(evaluator.coco.dataset, gt_file):
        pt = posetrack_metrics(evaluator.coco.dataset, evaluator.last.results, meta, gt_file)
        metrics.update({f"posetrack/{part}": pt[part] for part in (*POSETRACK_PARTS, "AP")})
        for name in meta.keypoint_names:
            if name in pt:
                per_keypoint[name]["AP_PCKh"] = pt[name]
    thresholds = np.round(np.linspace(0.0, 0.5, 51), 4)
    boxes = split.image_bbox
    sizes = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    norm = np.tile(sizes[:, None], (1, 2)).astype(np.float64) if len(sizes) else np.zeros((0, 2))
    avg, _ = pck_curve(preds.keypoints, gt, mask, norm, thresholds) if len(sizes) else (np.zeros(51), None)
    dist = np.linalg.norm(preds.keypoints - gt, axis=-1)
    with np.errstate(invalid="ignore"):
        errors = np.where(mask.any(1), (dist * mask).sum(1) / np.maximum(mask.sum(1), 1), np.nan)
    return EvalResult(metrics, per_keypoint, (thresholds, np.asarray(avg)), errors)


PART_STATS = ("AP", "AP .5", "AP .75", "AR")
"""The stats kept per part (``<part>/AP``, ...) for metas scored per part."""


def coco_metrics(evaluator: CocoKeypointEvaluator, preds: KeypointPredictions) -> dict[str, float]:
    """The 10 COCO stats of ``preds``; for a meta with parts (:data:`~posecore.evaluation.parts.PARTS_BY_META`,
    COCO-WholeBody) those of the whole skeleton, plus :data:`PART_STATS` per part as ``<part>/AP``, ..."""
    parts = PARTS_BY_META.get(evaluator.meta.name)
    if not parts:
        return dict(evaluator.evaluate(preds))
    by_part = evaluate_parts(evaluator, preds, parts)
    metrics = dict(by_part.pop("wholebody"))
    metrics.update({f"{part}/{k}": stats[k] for part, stats in by_part.items() for k in PART_STATS})
    return metrics


def _nme(
    pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, split: CacheSplit, meta: DatasetMeta, gt_file: Path
) -> MetricReport:
    """Face landmarks' NME (MMPose's ``NME``, ``keypoint_distance``): errors over the ground-truth distance
    of the meta's normalising pair (:data:`DEFAULT_NME_KEYPOINTS`, e.g. WFLW's outer eye corners), which
    every val face must have labelled."""
    if meta.name not in DEFAULT_NME_KEYPOINTS:
        raise ValueError(
            f"evaluate.metric is NME, but the meta {meta.name!r} has no normalising keypoint pair (NME is defined for "
            f"{', '.join(sorted(DEFAULT_NME_KEYPOINTS))}); choose evaluate.metric AP, PCK, AUC or EPE"
        )
    evaluator = NMEEvaluator(meta)
    assert evaluator.pair is not None
    a, b = evaluator.pair
    names = meta.keypoint_names
    bad = np.flatnonzero(~(mask[:, a] & mask[:, b]))
    if len(bad):
        raise DataValidationError(
            [
                Problem(
                    str(gt_file),
                    f"annotation id={int(split.ann_id[i])}",
                    "keypoints",
                    f"NME needs {names[a]} and {names[b]} labelled (its normaliser), but they are not",
                )
                for i in bad
            ],  # fmt: skip
            hint="Label both joints of every val face, or choose another evaluate.metric.",
        )
    return evaluator.evaluate(pred, gt, mask)


POSETRACK_METAS = ("posetrack18",)
"""Metas whose reports add PoseTrack18's per-joint AP (``posetrack/<part>``, ``AP_PCKh`` per keypoint)."""


def _has_head_boxes(gt_doc: dict, gt_file: Path) -> bool:
    if all("bbox_head" in a for a in gt_doc.get("annotations", []) if not a.get("iscrowd")):
        return True
    _LOG.warning(
        "%s has people without bbox_head: PoseTrack18 AP (posetrack/*) is skipped; convert with "
        "data.source=posetrack18 to keep the head boxes",
        gt_file,
    )
    return False


def posetrack_metrics(gt_doc: dict, results: list[dict], meta: DatasetMeta, gt_file: Path) -> dict[str, float]:
    """PoseTrack18's AP (:mod:`posecore.evaluation.posetrack`) of the post-NMS results, which needs the
    head box of every val person (``data.source=posetrack18`` keeps it)."""
    try:
        frames = posetrack_frames(gt_doc, results, meta)
    except KeyError as exc:
        raise DataValidationError(
            [
                Problem(
                    str(gt_file), f"annotation id={exc.args[0]}", "bbox_head", "missing (PoseTrack18 AP's head size)"
                )
            ],
            hint="Convert PoseTrack18 with data.source=posetrack18, which keeps each person's bbox_head.",
        ) from None
    return posetrack_ap(frames, [n for part in POSETRACK_PARTS.values() for n in part])


def coco_evaluator(gt_file: Path, meta: DatasetMeta, cfg: EvalConfig) -> CocoKeypointEvaluator:
    """The COCO evaluator with ``cfg``'s rescoring and NMS, so scoring and the written results.json agree."""
    return CocoKeypointEvaluator(
        gt_file,
        meta,
        score_mode=cfg.score_mode,
        keypoint_score_thr=cfg.keypoint_score_thr,
        nms_mode=cfg.nms_mode,
        nms_thr=cfg.nms_thr,
    )


def image_keypoints(split: CacheSplit) -> np.ndarray:
    """Ground-truth keypoints (N, K, 2) float64 in image pixels, from the input-pixel ones and the warps
    (the cache keeps them in input pixels)."""
    to_image = invert_affine(torch.from_numpy(split.warp).to(torch.float64))
    return transform_points(torch.from_numpy(split.keypoints).to(torch.float64), to_image).numpy()


def make_validator(
    split: CacheSplit, gt_file: Path, meta: DatasetMeta, cfg: EvalConfig
) -> Callable[[nn.Module, int], dict[str, float]]:
    """``validate(model, epoch) -> metrics`` for the trainer (prefixes nothing; the trainer adds ``val/``)."""

    def validate(model: nn.Module, epoch: int) -> dict[str, float]:
        preds = predict_split(model, split, cfg.flip_test, cfg.batch_size)
        return metric_names(score_predictions(preds, split, gt_file, meta, cfg).metrics)

    return validate


def metric_names(metrics: dict[str, float]) -> dict[str, float]:
    """Names MLflow accepts (letters, digits, ``_-./:``): ``AP (M)`` -> ``AP_M``, ``PCK@0.2`` -> ``PCK_0.2``."""
    out = {}
    for name, value in metrics.items():
        clean = name.replace(" (", "_").replace(")", "").replace(" ", "_")
        out[re.sub(r"[^A-Za-z0-9_\-./:]", "_", clean)] = value
    return out
