"""PoseTrack18's per-joint AP, as MMPose's ``PoseTrack18Metric`` reports it through ``poseval``.

The protocol (Andriluka et al., CVPR 2018; ``poseval``'s ``evaluateAP``), on the labelled frames
(images with ``is_labeled`` and at least one labelled person) only:

* The ground truth of each person is its labelled joints (``v > 0``) of the 15 PoseTrack joints
  (the ears of the 17-point layout are never labelled and are not scored) and its head box
  (``bbox_head``, ``[x, y, w, h]``), whose reference length is ``0.6 * hypot(w, h)``.
* A predicted joint is correct for a ground-truth person when it lies within half that head size
  (PCKh@0.5). Each prediction keeps only the person it has most correct joints with (as a share of
  that person's labelled joints); each person then takes the prediction with the highest share,
  and a person with no correct joint takes none.
* Every predicted joint is a detection with its keypoint score; it is a true positive when its
  prediction was taken by a person and the joint is correct for that person, else a false
  positive. Per joint, AP is the area under the VOC-style interpolated precision-recall curve over
  all frames, with the number of labelled joints of that kind as positives.
* Points inside a frame's ignore regions (``ignore_regions_x`` / ``ignore_regions_y`` polygons) are
  removed from both sides first; a prediction left with no point is dropped. A frame with no
  labelled person is not scored, its predictions included (poseval's ``cleanupData``), and a
  predicted point at ``(0, 0)`` with score 0 counts as not predicted (poseval's reading of its
  JSON).

The reported parts are poseval's: ``Head`` (head top, head bottom, nose), ``Shou``, ``Elb``,
``Wri``, ``Hip``, ``Knee``, ``Ankl`` (the mean AP of the part's joints) and ``AP``, the mean over the
joints that have ground truth. Values are fractions (poseval prints percentages).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.path import Path as PolygonPath

from posecore.metainfo import DatasetMeta

__all__ = ["POSETRACK_PARTS", "PoseTrackFrame", "frame_detections", "posetrack_ap", "posetrack_frames", "voc_ap"]

POSETRACK_PARTS: dict[str, tuple[str, ...]] = {
    "Head": ("head_top", "head_bottom", "nose"),
    "Shou": ("left_shoulder", "right_shoulder"),
    "Elb": ("left_elbow", "right_elbow"),
    "Wri": ("left_wrist", "right_wrist"),
    "Hip": ("left_hip", "right_hip"),
    "Knee": ("left_knee", "right_knee"),
    "Ankl": ("left_ankle", "right_ankle"),
}
"""poseval's parts (``getCum``) by the joint names of the ``posetrack18`` meta."""

PCKH_THR = 0.5
"""A joint is correct within this share of the person's head size (poseval's ``distThresh``)."""


@dataclass
class PoseTrackFrame:
    """One labelled frame. ``gt``: (G, J, 2) pixels with ``labelled`` (G, J) bool and ``head`` (G,)
    head sizes; ``pred``: (P, J, 2) with ``scores`` (P, J) and ``has_pred`` (P, J) bool."""

    gt: np.ndarray
    labelled: np.ndarray
    head: np.ndarray
    pred: np.ndarray
    scores: np.ndarray
    has_pred: np.ndarray
    ignore: list[np.ndarray] = field(default_factory=list)


def _ignored(points: np.ndarray, polygons: Sequence[np.ndarray]) -> np.ndarray:
    """(N,) bool: points (N, 2) strictly inside any polygon (each (V, 2))."""
    out = np.zeros(len(points), dtype=bool)
    for poly in polygons:
        if len(poly) >= 3 and len(points):
            out |= PolygonPath(poly).contains_points(points)
    return out


def frame_detections(
    frame: PoseTrackFrame, thr: float = PCKH_THR
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The frame's joint detections after its ignore regions: ``scores`` (P, J), ``labels`` (P, J)
    bool (true positives), ``valid`` (P, J) bool (a predicted joint that counts), and the number of
    labelled joints (J,), the positives."""
    gt, labelled = frame.gt, frame.labelled.copy()
    pred, has_pred = frame.pred, frame.has_pred.copy()
    if frame.ignore:
        labelled &= ~_ignored(gt.reshape(-1, 2), frame.ignore).reshape(labelled.shape)
        has_pred &= ~_ignored(pred.reshape(-1, 2), frame.ignore).reshape(has_pred.shape)
    keep = has_pred.any(1)
    pred, has_pred, scores = pred[keep], has_pred[keep], frame.scores[keep]
    num_p, num_g = len(pred), len(gt)
    labels = np.zeros(has_pred.shape, dtype=bool)
    if num_p and num_g:
        dist = np.linalg.norm(pred[:, None] - gt[None], axis=-1) / frame.head[None, :, None]  # (P, G, J)
        match = (dist <= thr) & has_pred[:, None] & labelled[None]
        n_gt = labelled.sum(1)
        share = np.where(n_gt[None] > 0, match.sum(2) / np.maximum(n_gt[None], 1), 0.0)  # (P, G)
        best_gt = share.argmax(1)
        only_best = np.zeros_like(share)
        only_best[np.arange(num_p), best_gt] = share[np.arange(num_p), best_gt]
        taker = only_best.argmax(0)  # (G,) the prediction each person takes
        taken = only_best.max(0) > 0
        for g in np.flatnonzero(taken):
            labels[taker[g]] = match[taker[g], g]
    return scores, labels & has_pred, has_pred, labelled.sum(0)


def voc_ap(scores: np.ndarray, labels: np.ndarray, positives: int) -> float:
    """poseval's AP of detections ranked by score: the area under the precision-recall curve with
    precision made monotone (VOC). NaN with no positives, 0 with no detections."""
    if positives == 0:
        return float("nan")
    if len(scores) == 0:
        return 0.0
    order = np.asarray(scores, dtype=np.float64).argsort()[::-1]  # poseval's order, ties included
    tp = np.cumsum(np.asarray(labels, dtype=np.float64)[order])
    recall = tp / positives
    precision = tp / np.arange(1, len(tp) + 1)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


def posetrack_ap(frames: Sequence[PoseTrackFrame], joint_names: Sequence[str]) -> dict[str, float]:
    """Per-joint AP (``joint_names`` order of the frames' J joints), the parts of
    :data:`POSETRACK_PARTS` and the total ``AP`` (module docstring)."""
    pooled: dict[int, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    positives = np.zeros(len(joint_names), dtype=np.int64)
    for frame in frames:
        scores, labels, valid, labelled = frame_detections(frame)
        positives += labelled
        for j in range(len(joint_names)):
            pooled[j].append((scores[valid[:, j], j], labels[valid[:, j], j]))
    per_joint: dict[str, float] = {}
    for j, name in enumerate(joint_names):
        s = np.concatenate([p[0] for p in pooled[j]]) if pooled[j] else np.zeros(0)
        lab = np.concatenate([p[1] for p in pooled[j]]) if pooled[j] else np.zeros(0, dtype=bool)
        per_joint[name] = voc_ap(s, lab, int(positives[j]))
    out = dict(per_joint)
    for part, names in POSETRACK_PARTS.items():
        out[part] = float(np.mean([per_joint[n] for n in names]))
    scored = [v for v in per_joint.values() if not np.isnan(v)]
    out["AP"] = float(np.mean(scored)) if scored else float("nan")
    return out


def _polygons(image: dict[str, Any]) -> list[np.ndarray]:
    xs, ys = image.get("ignore_regions_x") or [], image.get("ignore_regions_y") or []
    return [np.stack([np.asarray(x, float), np.asarray(y, float)], 1) for x, y in zip(xs, ys, strict=False)]


def posetrack_frames(
    gt_doc: dict[str, Any], results: Sequence[dict[str, Any]], meta: DatasetMeta
) -> list[PoseTrackFrame]:
    """The labelled frames of a converted PoseTrack18 ground truth (``bbox_head`` on every person)
    with the COCO-format results on them (``keypoints`` ``[x, y, score, ...]``), restricted to the
    joints of :data:`POSETRACK_PARTS` in that order. Raises ``KeyError(annotation id)`` for the first
    person without a head box."""
    names = [n for part in POSETRACK_PARTS.values() for n in part]
    idx = np.array([meta.keypoint_names.index(n) for n in names])
    by_image: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for rec in results:
        by_image[rec["image_id"]].append(rec)
    anns: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for ann in gt_doc.get("annotations", []):
        if not ann.get("iscrowd"):
            anns[ann["image_id"]].append(ann)
    frames = []
    for image in gt_doc.get("images", []):
        if not image.get("is_labeled", True):
            continue
        people = [a for a in anns[image["id"]] if any(v > 0 for v in a["keypoints"][2::3])]
        if not people:
            continue
        heads = []
        for ann in people:
            if "bbox_head" not in ann:
                raise KeyError(ann.get("id"))
            heads.append(0.6 * float(np.hypot(ann["bbox_head"][2], ann["bbox_head"][3])))
        gt = np.asarray([a["keypoints"] for a in people], dtype=np.float64).reshape(len(people), -1, 3)[:, idx]
        preds = by_image.get(image["id"], [])
        pr = np.asarray([r["keypoints"] for r in preds], dtype=np.float64).reshape(len(preds), -1, 3)[:, idx]
        frames.append(
            PoseTrackFrame(
                gt=gt[..., :2],
                labelled=gt[..., 2] > 0,
                head=np.asarray(heads, dtype=np.float64),
                pred=pr[..., :2],
                scores=pr[..., 2],
                has_pred=~((pr[..., 0] == 0) & (pr[..., 1] == 0) & (pr[..., 2] == 0)),
                ignore=_polygons(image),
            )
        )
    return frames
