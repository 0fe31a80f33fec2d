"""One-stage prediction and scoring on a cached image split, and the top-down models scored beside it.

A one-stage model sees each whole val image (letterboxed to its input, :mod:`posecore.data.images`)
and returns every person it finds, already thresholded and NMS-ed by its codec. The people are
mapped back to image pixels with the inverse of each image's warp and scored:

* COCO AP/AR against the split's ground-truth file, each person ranked by ``evaluate.score_mode``
  as MMPose's ``CocoMetric`` ranks them (default ``bbox_keypoint``: the person score times the mean
  of its keypoint scores above ``keypoint_score_thr``; ``bbox``: the person score alone, MMPose's
  RTMO setting) and no further NMS (``nms_mode="none"``: the codec already suppressed duplicates,
  a second NMS would change what the model answered);
* PCK@thr (box-normalised), AUC and EPE on the ground-truth people, each matched to at most one
  prediction (:func:`match_people`): a person with labelled keypoints that no prediction matches is
  a miss, scored as if its keypoints were predicted infinitely far away, so it counts as wrong for
  PCK and AUC at every threshold and adds 0 to its keypoints' OKS. EPE, a distance, is the mean
  over the matched people only (``None`` when nobody is matched).

The top-down models scored beside a one-stage one on the same val images are run by
:func:`posecore.inference.compare.compare_topdown` (it needs the bundle runtime, a layer above this one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from posecore.evaluation.coco import NO_AREA_FACTOR, CocoKeypointEvaluator, KeypointPredictions
from posecore.evaluation.functional import pck_curve
from posecore.evaluation.keypoint_metrics import AUCEvaluator, EPEEvaluator, PCKEvaluator
from posecore.evaluation.topdown import EvalConfig, EvalResult, coco_metrics, eval_mode, metric_names, normalized_inputs
from posecore.metainfo import DatasetMeta
from posecore.progress import Progress
from posecore.transforms.geometry import invert_affine_numpy, transform_points_numpy

if TYPE_CHECKING:
    from posecore.codecs.base import Poses
    from posecore.data.images import ImageSplit

__all__ = [
    "MATCH_MIN_OKS",
    "GroundTruth",
    "OneStagePredictor",
    "PeopleMatch",
    "bottomup_coco_evaluator",
    "ground_truth",
    "make_bottomup_validator",
    "match_people",
    "predict_images",
    "score_bottomup",
]

MATCH_MIN_OKS = 0.1
"""Below this OKS a prediction is not that person, and both stay unmatched: at 0.1 a typical
keypoint is ~2.1 * 2 sigma * sqrt(area) away, about a quarter of the person's scale at COCO's sigmas."""

PCK_CURVE_THRESHOLDS = np.round(np.linspace(0.0, 0.5, 51), 4)


class OneStagePredictor(Protocol):
    """What :func:`predict_images` runs: a one-stage :class:`~posecore.models.estimator.PoseEstimator`
    or an ONNX predictor with the same ``predict``.

    ``predict`` takes normalised inputs (B, 3, h, w) float32 and ``flip_test`` (average the
    keypoint heatmaps with the mirrored image's, where the model has them) and returns one
    :class:`~posecore.codecs.base.Poses` per image (model-input pixels, best first, torch or
    NumPy); ``mean``/``std`` (RGB, 0..255) normalise the cached uint8 images; ``flip_indices``
    has one entry per keypoint (it gives K when nothing is found).
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip_indices: Sequence[int]

    def predict(self, inputs: Tensor, flip_test: bool = False) -> list[Poses]: ...


def _numpy(x: Any) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _boxes_through(boxes: np.ndarray, m: np.ndarray) -> np.ndarray:
    """xyxy boxes (n, 4) through the affine m (2, 3): the extent of the mapped corners (exact for the
    letterbox's scale and shift)."""
    x1, y1, x2, y2 = boxes.T
    corners = np.stack([np.stack([x1, y1], -1), np.stack([x2, y1], -1), np.stack([x1, y2], -1)], 1)
    corners = np.concatenate([corners, np.stack([x2, y2], -1)[:, None]], 1)
    mapped = transform_points_numpy(corners[None], m[None])[0]
    return np.concatenate([mapped.min(1), mapped.max(1)], axis=-1)


@torch.no_grad()
def predict_images(
    model: OneStagePredictor,
    split: ImageSplit,
    batch_size: int = 64,
    device: torch.device | None = None,
    flip_test: bool = False,
) -> KeypointPredictions:
    """Run ``model.predict`` (with ``flip_test``) over every image of a one-stage val split; people in image pixels.

    Returns one row per person found (image_ids repeat; an image where nobody was found has no
    row): keypoints and boxes mapped back by the inverse warp, ``bbox_scores`` the person scores,
    ``areas`` the boxes' areas. A torch module is put in eval mode for the loop (and back after)
    and fed on ``device`` (default: its parameters'); anything else runs as it is. Reports
    progress as the ``evaluate`` step, as :func:`~posecore.evaluation.topdown.predict_split`.
    """
    k = len(model.flip_indices)
    columns: dict[str, list[np.ndarray]] = {"image_ids": [], "keypoints": [], "scores": [], "kscores": [], "boxes": []}
    n = len(split)
    with eval_mode(model, device) as device:
        with Progress("evaluate", total=n, unit="img") as bar:
            found = 0
            for start in range(0, n, batch_size):
                idx = np.arange(start, min(n, start + batch_size))
                inputs = normalized_inputs(split, idx, model.mean, model.std)
                poses = model.predict(inputs if device is None else inputs.to(device), flip_test=flip_test)
                if len(poses) != len(idx):
                    raise ValueError(f"predict returned {len(poses)} results for a batch of {len(idx)} images")
                to_image = invert_affine_numpy(split.warp[idx])
                for i, p, m in zip(idx, poses, to_image, strict=True):
                    people = len(p)
                    kp = _numpy(p.keypoints).reshape(people, k, 2)
                    columns["image_ids"].append(np.full(people, int(split.image_id[i]), np.int64))
                    columns["keypoints"].append(transform_points_numpy(kp.reshape(1, -1, 2), m[None]).reshape(kp.shape))
                    columns["scores"].append(_numpy(p.scores).reshape(people))
                    columns["kscores"].append(_numpy(p.keypoint_scores).reshape(people, k))
                    columns["boxes"].append(_boxes_through(_numpy(p.boxes).reshape(people, 4), m))
                    found += people
                bar.update(len(idx), people=found)
    empty = {"image_ids": (0,), "keypoints": (0, k, 2), "scores": (0,), "kscores": (0, k), "boxes": (0, 4)}
    cat = {name: np.concatenate(parts) if parts else np.zeros(empty[name]) for name, parts in columns.items()}
    boxes = cat["boxes"]
    return KeypointPredictions(
        image_ids=cat["image_ids"],
        keypoints=cat["keypoints"],
        keypoint_scores=cat["kscores"],
        bbox_scores=cat["scores"],
        areas=(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]),
        bboxes=boxes,
    )


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """Every person row of a one-stage split (the split's order), in image pixels.

    image_index (P,) int64: the split row of each person's image; keypoints (P, K, 2); visible
    (P, K) bool, labelled keypoints (crowd regions have none); bboxes (P, 4) xyxy; areas (P,) the
    OKS scale (the annotation's area; ``0.53 *`` the box's where there is none, as the COCO
    evaluator); labelled (P,) bool: not a crowd region and at least one labelled keypoint, the
    people the keypoint metrics count.
    """

    image_index: np.ndarray
    keypoints: np.ndarray
    visible: np.ndarray
    bboxes: np.ndarray
    areas: np.ndarray
    labelled: np.ndarray

    def __len__(self) -> int:
        return len(self.image_index)

    @property
    def mask(self) -> np.ndarray:
        """(P, K) bool: the keypoints the metrics score."""
        return self.visible & self.labelled[:, None]


def ground_truth(split: ImageSplit) -> GroundTruth:
    """The split's people mapped from stored to image pixels (the cache keeps stored pixels).

    Boxes map by their two corners, exact for the letterbox's scale and shift; areas by the
    warp's determinant.
    """
    starts = np.asarray(split.person_start, dtype=np.int64)
    image_index = np.repeat(np.arange(len(split)), np.diff(starts))
    k = int(np.shape(split.keypoints)[1])
    visible = np.asarray(split.visible).reshape(-1, k) > 0
    if not len(image_index):
        zeros = np.zeros(0)
        return GroundTruth(image_index, np.zeros((0, k, 2)), visible, np.zeros((0, 4)), zeros, zeros.astype(bool))
    warp = np.asarray(split.warp, dtype=np.float64)[image_index]
    to_image = invert_affine_numpy(warp)
    keypoints = transform_points_numpy(np.asarray(split.keypoints, np.float64), to_image)
    bboxes = transform_points_numpy(np.asarray(split.bbox, np.float64).reshape(-1, 2, 2), to_image).reshape(-1, 4)
    stored_per_image_px2 = np.abs(np.linalg.det(warp[:, :, :2]))
    box_area = (bboxes[:, 2] - bboxes[:, 0]) * (bboxes[:, 3] - bboxes[:, 1])
    area = np.asarray(split.area, np.float64)
    areas = np.where(area > 0, area / np.maximum(stored_per_image_px2, 1e-12), NO_AREA_FACTOR * box_area)
    labelled = ~np.asarray(split.crowd, bool) & visible.any(1)
    return GroundTruth(image_index, keypoints, visible, bboxes, areas, labelled)


@dataclass(frozen=True, eq=False)
class PeopleMatch:
    """Which prediction answers which ground-truth person (see :func:`match_people`).

    pred_index (P,) int64: the matched row of the predictions, -1 for a miss (and for every
    person that is not ``labelled``); oks (P,): the pair's OKS, 0 for a miss, NaN where not
    labelled; keypoints (P, K, 2): the matched prediction's keypoints in image pixels, +inf for
    a miss; unmatched (D,) bool: predictions that answer nobody; pred_rows (D,) int64: the split
    row of each prediction's image.
    """

    gt: GroundTruth
    pred_rows: np.ndarray
    pred_index: np.ndarray
    oks: np.ndarray
    keypoints: np.ndarray
    unmatched: np.ndarray

    @property
    def matched(self) -> np.ndarray:
        return self.pred_index >= 0


def _oks(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, areas: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """COCO's OKS (G, D) of ground truths gt (G, K, 2) with ``visible`` (G, K) and ``areas`` (G,)
    against predictions pred (D, K, 2)."""
    d2 = ((gt[:, None] - pred[None]) ** 2).sum(-1)
    e = d2 / ((2.0 * sigmas) ** 2)[None, None] / (np.maximum(areas, np.finfo(np.float64).eps)[:, None, None] * 2.0)
    count = np.maximum(visible.sum(1), 1)[:, None]
    return (np.exp(-e) * visible[:, None]).sum(-1) / count


def match_people(preds: KeypointPredictions, split: ImageSplit, meta: DatasetMeta) -> PeopleMatch:
    """Match each labelled ground-truth person to at most one prediction of its image, greedily by OKS.

    Per image, the pair with the highest OKS is matched first, then the highest of the rest, and
    so on, down to :data:`MATCH_MIN_OKS`; scores play no part (every prediction the codec kept is
    an answer). Greedy on OKS rather than COCO's score order: the question here is how well each
    person's keypoints were found, not how the answers were ranked (that is what AP measures).
    """
    gt = ground_truth(split)
    sigmas = np.asarray(meta.sigmas, np.float64)
    k = meta.num_keypoints
    pred_index = np.full(len(gt), -1, np.int64)
    oks = np.where(gt.labelled, 0.0, np.nan)
    row_of_image = {int(iid): i for i, iid in enumerate(np.asarray(split.image_id))}
    unknown = sorted(set(preds.image_ids.tolist()) - set(row_of_image))
    if unknown:
        raise ValueError(f"{len(unknown)} predicted image ids are not in the split (first: {unknown[:5]})")
    pred_rows = np.array([row_of_image[int(i)] for i in preds.image_ids], np.int64)
    for row in np.unique(gt.image_index[gt.labelled]):
        people = np.flatnonzero((gt.image_index == row) & gt.labelled)
        cands = np.flatnonzero(pred_rows == row)
        if not len(cands):
            continue
        sim = _oks(preds.keypoints[cands], gt.keypoints[people], gt.visible[people], gt.areas[people], sigmas)
        while sim.size and sim.max() >= MATCH_MIN_OKS:
            g, d = np.unravel_index(int(np.argmax(sim)), sim.shape)
            pred_index[people[g]], oks[people[g]] = cands[d], sim[g, d]
            sim[g, :], sim[:, d] = -1.0, -1.0
    keypoints = np.full((len(gt), k, 2), np.inf)
    matched = pred_index >= 0
    keypoints[matched] = preds.keypoints[pred_index[matched]]
    unmatched = np.ones(len(preds), bool)
    unmatched[pred_index[matched]] = False
    return PeopleMatch(gt, pred_rows, pred_index, oks, keypoints, unmatched)


def bottomup_coco_evaluator(gt_file: Path, meta: DatasetMeta, cfg: EvalConfig) -> CocoKeypointEvaluator:
    """The COCO evaluator of one-stage predictions: ``cfg.score_mode`` ranking, no second NMS (module docstring)."""
    return CocoKeypointEvaluator(
        gt_file, meta, score_mode=cfg.score_mode, keypoint_score_thr=cfg.keypoint_score_thr, nms_mode="none"
    )


def score_bottomup(
    preds: KeypointPredictions, split: ImageSplit, gt_file: Path, meta: DatasetMeta, cfg: EvalConfig
) -> EvalResult:
    """COCO AP/AR (10 stats) + PCK@thr (box) + AUC + EPE, with per-keypoint tables (module docstring).

    ``errors`` has one entry per person row of the split: the matched prediction's mean keypoint
    error in image pixels, +inf for a miss, NaN for a person that is not labelled.
    """
    metrics = coco_metrics(bottomup_coco_evaluator(gt_file, meta, cfg), preds)
    match = match_people(preds, split, meta)
    gt, mask = match.gt, match.gt.mask
    found = mask & match.matched[:, None]
    reports = [
        PCKEvaluator(meta, thr=cfg.pck_thr, norm_item="bbox").evaluate(match.keypoints, gt.keypoints, mask, gt.bboxes),
        AUCEvaluator(meta, norm_factor=cfg.auc_norm).evaluate(match.keypoints, gt.keypoints, mask),
    ]
    epe = EPEEvaluator(meta).evaluate(match.keypoints, gt.keypoints, found)
    per_keypoint: dict[str, dict[str, float]] = {name: {} for name in meta.keypoint_names}
    for report in reports:
        metrics.update(report.metrics)
        for name, row in report.per_keypoint.items():
            per_keypoint[name].update(row)
    metrics["EPE"] = epe.metrics["EPE"] if found.any() else float("nan")
    for name, row in epe.per_keypoint.items():
        per_keypoint[name].update(EPE=row["EPE"], matched=row["count"])
    sizes = np.maximum(gt.bboxes[:, 2] - gt.bboxes[:, 0], gt.bboxes[:, 3] - gt.bboxes[:, 1])
    norm = np.tile(sizes[:, None], (1, 2))
    avg = pck_curve(match.keypoints, gt.keypoints, mask, norm, PCK_CURVE_THRESHOLDS)[0] if len(gt) else None
    curve = np.asarray(avg) if avg is not None else np.zeros(len(PCK_CURVE_THRESHOLDS))
    with np.errstate(invalid="ignore"):
        dist = np.linalg.norm(np.where(found[..., None], match.keypoints - gt.keypoints, 0.0), axis=-1)
        errors = np.where(found.any(1), dist.sum(1) / np.maximum(found.sum(1), 1), np.inf)
    errors = np.where(gt.labelled, errors, np.nan)
    return EvalResult(metrics, per_keypoint, (PCK_CURVE_THRESHOLDS, curve), errors)


def make_bottomup_validator(
    split: ImageSplit, gt_file: Path, meta: DatasetMeta, cfg: EvalConfig
) -> Callable[[nn.Module, int], dict[str, float]]:
    """``validate(model, epoch) -> metrics`` for the trainer (MLflow names; the trainer adds ``val/``)."""

    def validate(model: nn.Module, epoch: int) -> dict[str, float]:
        preds = predict_images(model, split, cfg.batch_size, flip_test=cfg.flip_test)  # type: ignore[arg-type]
        return metric_names(score_bottomup(preds, split, gt_file, meta, cfg).metrics)

    return validate
