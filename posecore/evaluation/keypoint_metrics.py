"""Top-down keypoint metrics over a whole split: PCK (bbox / head / torso), MPII PCKh, AUC, EPE, NME.

Every evaluator takes batched arrays — pred, gt (N, K, 2) float in image pixels, mask (N, K)
(bool, or ``keypoints_visible`` where > 0 means labelled) — plus the normaliser inputs it
needs, and returns a :class:`MetricReport`: summary numbers and a per-keypoint table keyed
by the meta's keypoint names. A per-keypoint value is ``-1`` where that keypoint has no
valid instance (MMPose's convention; ``count`` says how many labelled instances it has).

Normalisers, following MMPose 1.x ``keypoint_2d_metrics.py``:

* ``bbox``: ``max(w, h)`` of the ground-truth box (PCK);
* ``head``: a head size per instance (PCKh). MPII's is ``0.6 *`` the diagonal of its
  annotated head box (:func:`mpii_head_sizes`); without head boxes
  :func:`head_sizes_from_keypoints` gives the head segment ``|head_top - upper_neck|``,
  which is *not* MPII's number — say which one you report;
* ``torso``: ``|left_shoulder - right_hip|`` of the ground truth (tPCK; MMPose's JHMDB
  indices 4 and 5), the prediction's where the ground truth's is ``< 1`` px, as MMPose.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from posecore.evaluation.functional import (
    auc_thresholds,
    calc_distances,
    keypoint_epe,
    keypoint_nme,
    pck_curve,
)
from posecore.metainfo import DatasetMeta

NormItem = Literal["bbox", "head", "torso"]
PCK_NAMES: dict[str, str] = {"bbox": "PCK", "head": "PCKh", "torso": "tPCK"}
MPII_SC_BIAS = 0.6  # MPII's head-size factor on the head-box diagonal

# NME inter-ocular pairs by meta name (MMPose NME.DEFAULT_KEYPOINT_INDICES), as indices or names.
DEFAULT_NME_KEYPOINTS: dict[str, tuple[int, int] | tuple[str, str]] = {
    "horse10": (0, 1),  # nose, eye
    "300w": (36, 45),  # outer eye corners
    "coco_wholebody_face": (36, 45),
    "coco_wholebody": ("face-36", "face-45"),  # the same corners inside the 133-keypoint schema
    "cofw": (8, 9),
    "wflw": (60, 72),
    "lapa": (66, 79),
}


@dataclass
class MetricReport:
    """Summary numbers and a per-keypoint table ``{keypoint name: {column: value}}``."""

    metrics: dict[str, float]
    per_keypoint: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**self.metrics, "per_keypoint": {k: dict(v) for k, v in self.per_keypoint.items()}}


def _inputs(meta: DatasetMeta, pred: Any, gt: Any, mask: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    mask = mask > 0
    k = meta.num_keypoints
    if pred.ndim != 3 or pred.shape != gt.shape or pred.shape[1:] != (k, 2):
        raise ValueError(f"pred and gt must both be (N, {k}, 2) for meta {meta.name!r}, got {pred.shape}, {gt.shape}")
    if mask.shape != pred.shape[:2]:
        raise ValueError(f"mask must be (N, K) = {pred.shape[:2]}, got {mask.shape}")
    return pred, gt, mask


def _per_instance(name: str, values: Any, n: int) -> np.ndarray:
    if values is None:
        raise ValueError(f"{name} are needed for this normalisation; pass {name}=(N,) or (N, 4) values")
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape[0] != n:
        raise ValueError(f"{name} must have one entry per instance ({n}), got shape {arr.shape}")
    return arr


def _tile(sizes: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(sizes, dtype=np.float64).reshape(-1, 1), 2, axis=1)


def _keypoint_index(meta: DatasetMeta, key: int | str) -> int:
    if isinstance(key, str):
        if key not in meta.keypoint_names:
            raise ValueError(f"meta {meta.name!r} has no keypoint {key!r}")
        return meta.index(key)
    if not 0 <= int(key) < meta.num_keypoints:
        raise ValueError(f"keypoint index {key} is out of range for meta {meta.name!r} ({meta.num_keypoints})")
    return int(key)


def bbox_sizes(bboxes: Any) -> np.ndarray:
    """(N,) ``max(x2 - x1, y2 - y1)`` of (N, 4) xyxy boxes: MMPose's PCK/NME box normaliser."""
    b = np.asarray(bboxes, dtype=np.float64).reshape(-1, 4)
    return np.max(b[:, 2:] - b[:, :2], axis=1)


def mpii_head_sizes(headboxes: Any) -> np.ndarray:
    """(N,) MPII head sizes from head boxes (N, 2, 2) ``[[x1, y1], [x2, y2]]``: ``0.6 * |p2 - p1|``."""
    hb = np.asarray(headboxes, dtype=np.float64).reshape(-1, 2, 2)
    return np.linalg.norm(hb[:, 1] - hb[:, 0], axis=1) * MPII_SC_BIAS


def head_sizes_from_keypoints(
    keypoints: Any, meta: DatasetMeta, top: str = "head_top", neck: str = "upper_neck", scale: float = 1.0
) -> np.ndarray:
    """(N,) ``scale * |top - neck|`` from ground-truth keypoints (N, K, 2): the head segment length.

    A stand-in where no head boxes exist (LSP-style PCKh); MPII's official head size is
    :func:`mpii_head_sizes`. A zero size (an unlabelled endpoint at 0, 0 twice) makes the
    instance's keypoints invalid, not wrong.
    """
    kpts = np.asarray(keypoints, dtype=np.float64)
    a, b = _keypoint_index(meta, top), _keypoint_index(meta, neck)
    return scale * np.linalg.norm(kpts[:, a] - kpts[:, b], axis=1)


def torso_sizes(
    gt: Any, pred: Any, meta: DatasetMeta, keypoints: tuple[int | str, int | str] = ("left_shoulder", "right_hip")
) -> np.ndarray:
    """(N,) ``|gt[a] - gt[b]|``; where that is ``< 1`` px, the prediction's (MMPose, with a warning)."""
    gt = np.asarray(gt, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    a, b = (_keypoint_index(meta, k) for k in keypoints)
    size = np.linalg.norm(gt[:, a] - gt[:, b], axis=1)
    small = size < 1
    if small.any():
        warnings.warn(
            f"{int(small.sum())} instances have a ground-truth torso size < 1 px; using the predicted torso size",
            stacklevel=2,
        )
        size = np.where(small, np.linalg.norm(pred[:, a] - pred[:, b], axis=1), size)
    return size


def _thr_key(name: str, thr: float) -> str:
    return f"{name}@{thr:g}"


class PCKEvaluator:
    """PCK: the share of labelled keypoints within ``thr`` times a per-instance size.

    ``norm_item`` ``'bbox'`` (key ``PCK``), ``'head'`` (``PCKh``), ``'torso'`` (``tPCK``), or
    several. Metrics: ``<name>@<thr>`` for every threshold and ``<name>`` at the first one
    (MMPose's key); per keypoint: ``<name>@<thr>`` and ``count`` (labelled instances).
    """

    def __init__(
        self,
        meta: DatasetMeta,
        thr: float | Sequence[float] = 0.2,
        norm_item: NormItem | Sequence[NormItem] = "bbox",
        torso_keypoints: tuple[int | str, int | str] = ("left_shoulder", "right_hip"),
    ) -> None:
        self.meta = meta
        self.thrs = [float(thr)] if isinstance(thr, int | float) else [float(t) for t in thr]
        if not self.thrs:
            raise ValueError("thr must be a number or a non-empty list of numbers")
        self.norm_items: list[str] = [norm_item] if isinstance(norm_item, str) else list(norm_item)
        for item in self.norm_items:
            if item not in PCK_NAMES:
                raise ValueError(f"norm_item must be 'bbox', 'head' or 'torso', got {item!r}")
        self.torso_keypoints = torso_keypoints
        if "torso" in self.norm_items:
            for k in torso_keypoints:
                _keypoint_index(meta, k)

    def norm_factor(
        self, item: str, pred: np.ndarray, gt: np.ndarray, bboxes: Any = None, head_sizes: Any = None
    ) -> np.ndarray:
        """(N, 2) normaliser for ``item``."""
        n = pred.shape[0]
        if item == "bbox":
            return _tile(bbox_sizes(_per_instance("bboxes", bboxes, n)))
        if item == "head":
            return _tile(_per_instance("head_sizes", head_sizes, n).reshape(n))
        return _tile(torso_sizes(gt, pred, self.meta, self.torso_keypoints))

    def evaluate(self, pred: Any, gt: Any, mask: Any, bboxes: Any = None, head_sizes: Any = None) -> MetricReport:
        """pred, gt (N, K, 2); mask (N, K); bboxes (N, 4) xyxy for ``bbox``; head_sizes (N,) for ``head``."""
        pred, gt, mask = _inputs(self.meta, pred, gt, mask)
        names = self.meta.keypoint_names
        report = MetricReport({}, {name: {} for name in names})
        for item in self.norm_items:
            norm = self.norm_factor(item, pred, gt, bboxes, head_sizes)
            avg, per_kpt = pck_curve(pred, gt, mask, norm, np.array(self.thrs))
            label = PCK_NAMES[item]
            report.metrics[label] = float(avg[0])
            for t, thr in enumerate(self.thrs):
                report.metrics[_thr_key(label, thr)] = float(avg[t])
                for k, name in enumerate(names):
                    report.per_keypoint[name][_thr_key(label, thr)] = float(per_kpt[t, k])
        for k, name in enumerate(names):
            report.per_keypoint[name]["count"] = float(mask[:, k].sum())
        return report

    def curve(
        self,
        pred: Any,
        gt: Any,
        mask: Any,
        thresholds: Any = None,
        bboxes: Any = None,
        head_sizes: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """PCK-vs-threshold data for the first ``norm_item``: ``(thresholds (T,), pck (T,))``.

        Default thresholds ``0, 0.01, ..., 0.5`` (MPII's PCKh curve range).
        """
        pred, gt, mask = _inputs(self.meta, pred, gt, mask)
        thresholds = np.round(np.arange(0, 0.51, 0.01), 2) if thresholds is None else np.asarray(thresholds, float)
        norm = self.norm_factor(self.norm_items[0], pred, gt, bboxes, head_sizes)
        avg, _ = pck_curve(pred, gt, mask, norm, thresholds)
        return thresholds, avg


class MpiiPCKhEvaluator:
    """MPII's PCKh report, as MMPose's ``MpiiPCKAccuracy`` computes it, in percent.

    Keys: ``Head PCK`` (head_top), ``Shoulder``/``Elbow``/``Wrist``/``Hip``/``Knee``/``Ankle
    PCK`` (left/right means), ``PCK`` (at ``thr``) and ``PCK@0.1``: means over the keypoints
    weighted by their labelled counts, pelvis and thorax excluded. MMPose adds 1 px to the
    predictions because its MPII ground truth stays 1-based; our MPII converter makes the
    ground truth 0-based, so nothing is added here.
    """

    GROUPS = {
        "Head PCK": ("head_top",),
        "Shoulder PCK": ("left_shoulder", "right_shoulder"),
        "Elbow PCK": ("left_elbow", "right_elbow"),
        "Wrist PCK": ("left_wrist", "right_wrist"),
        "Hip PCK": ("left_hip", "right_hip"),
        "Knee PCK": ("left_knee", "right_knee"),
        "Ankle PCK": ("left_ankle", "right_ankle"),
    }
    EXCLUDED = ("pelvis", "thorax")

    def __init__(self, meta: DatasetMeta, thr: float = 0.5) -> None:
        missing = sorted(
            ({n for names in self.GROUPS.values() for n in names} | set(self.EXCLUDED)) - set(meta.keypoint_names)
        )
        if missing:
            raise ValueError(f"MPII PCKh needs the MPII keypoints; meta {meta.name!r} lacks {', '.join(missing)}")
        self.meta = meta
        self.thr = float(thr)

    def evaluate(self, pred: Any, gt: Any, mask: Any, head_sizes: Any) -> MetricReport:
        """pred, gt (N, 16, 2); mask (N, 16); head_sizes (N,) (see :func:`mpii_head_sizes`)."""
        pred, gt, mask = _inputs(self.meta, pred, gt, mask)
        norm = _tile(_per_instance("head_sizes", head_sizes, pred.shape[0]).reshape(-1))
        # np.arange(0, 0.51, 0.01)[10] is MMPose's 0.1 exactly
        _, per_kpt = pck_curve(pred, gt, mask, norm, np.array([self.thr, np.arange(0, 0.51, 0.01)[10]]))
        pckh, pckh_01 = 100.0 * per_kpt[0], 100.0 * per_kpt[1]
        index = {name: self.meta.index(name) for name in self.meta.keypoint_names}
        used = np.ones(self.meta.num_keypoints, dtype=bool)
        used[[index[n] for n in self.EXCLUDED]] = False
        count = mask.sum(axis=0).astype(np.float64) * used
        ratio = count / count.sum() if count.sum() > 0 else count
        metrics = {key: float(np.mean([pckh[index[n]] for n in names])) for key, names in self.GROUPS.items()}
        metrics["PCK"] = float(np.sum((pckh * ratio)[used]))
        metrics["PCK@0.1"] = float(np.sum((pckh_01 * ratio)[used]))
        per_keypoint = {
            name: {"PCKh": float(pckh[k]), "PCKh@0.1": float(pckh_01[k]), "count": float(mask[:, k].sum())}
            for k, name in enumerate(self.meta.keypoint_names)
        }
        return MetricReport(metrics, per_keypoint)


class AUCEvaluator:
    """AUC of PCK over thresholds ``i / num_thrs`` of one fixed size ``norm_factor`` (pixels; MMPose 30)."""

    def __init__(self, meta: DatasetMeta, norm_factor: float = 30.0, num_thrs: int = 20) -> None:
        self.meta = meta
        self.norm_factor = float(norm_factor)
        self.thresholds = auc_thresholds(num_thrs)

    def curve(self, pred: Any, gt: Any, mask: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(thresholds (T,), pck (T,), per-keypoint pck (T, K))``."""
        pred, gt, mask = _inputs(self.meta, pred, gt, mask)
        norm = np.full((pred.shape[0], 2), self.norm_factor)
        avg, per_kpt = pck_curve(pred, gt, mask, norm, self.thresholds)
        return self.thresholds, avg, per_kpt

    def evaluate(self, pred: Any, gt: Any, mask: Any) -> MetricReport:
        """Metrics ``AUC``; per keypoint ``AUC`` (its own PCK curve's mean) and ``count``."""
        pred, gt, mask = _inputs(self.meta, pred, gt, mask)
        _, avg, per_kpt = self.curve(pred, gt, mask)
        t = len(self.thresholds)
        # a keypoint's validity does not depend on the threshold: all -1 or none
        kpt_auc = np.where((per_kpt >= 0).all(axis=0), per_kpt.sum(axis=0) / t, -1.0)
        per_keypoint = {
            name: {"AUC": float(kpt_auc[k]), "count": float(mask[:, k].sum())}
            for k, name in enumerate(self.meta.keypoint_names)
        }
        return MetricReport({"AUC": float(avg.sum() / t)}, per_keypoint)


def _mean_per_keypoint(distances: np.ndarray) -> np.ndarray:
    """distances (K, N) with -1 for invalid -> (K,) mean over valid, -1 where none."""
    valid = distances != -1
    count = valid.sum(axis=1)
    total = np.where(valid, distances, 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), -1.0)


class EPEEvaluator:
    """End-point error: mean pixel distance over labelled keypoints (key ``EPE``)."""

    def __init__(self, meta: DatasetMeta) -> None:
        self.meta = meta

    def evaluate(self, pred: Any, gt: Any, mask: Any) -> MetricReport:
        pred, gt, mask = _inputs(self.meta, pred, gt, mask)
        per_kpt = _mean_per_keypoint(calc_distances(pred, gt, mask, np.ones((pred.shape[0], 2))))
        per_keypoint = {
            name: {"EPE": float(per_kpt[k]), "count": float(mask[:, k].sum())}
            for k, name in enumerate(self.meta.keypoint_names)
        }
        return MetricReport({"EPE": keypoint_epe(pred, gt, mask)}, per_keypoint)


class NMEEvaluator:
    """Normalised mean error (key ``NME``).

    ``norm_mode='keypoint_distance'``: per instance, the ground-truth distance between two
    keypoints (``keypoint_indices``, indices or names; default by meta name from
    :data:`DEFAULT_NME_KEYPOINTS`, e.g. WFLW's outer eye corners 60 and 72).
    ``norm_mode='use_norm_item'``: ``norm_item='bbox_size'`` (``max(w, h)`` of ``bboxes``) or
    any other name, whose per-instance values are passed as ``norm_values``.
    """

    def __init__(
        self,
        meta: DatasetMeta,
        norm_mode: Literal["keypoint_distance", "use_norm_item"] = "keypoint_distance",
        norm_item: str = "bbox_size",
        keypoint_indices: tuple[int | str, int | str] | None = None,
    ) -> None:
        if norm_mode not in ("keypoint_distance", "use_norm_item"):
            raise ValueError(f"norm_mode must be 'keypoint_distance' or 'use_norm_item', got {norm_mode!r}")
        self.meta = meta
        self.norm_mode = norm_mode
        self.norm_item = norm_item
        self.pair: tuple[int, int] | None = None
        if norm_mode == "keypoint_distance":
            if keypoint_indices is None:
                if meta.name not in DEFAULT_NME_KEYPOINTS:
                    raise ValueError(
                        f"no default NME keypoint pair for meta {meta.name!r} (known: "
                        f"{', '.join(sorted(DEFAULT_NME_KEYPOINTS))}); pass keypoint_indices=(a, b) "
                        "by index or name, e.g. the outer eye corners"
                    )
                keypoint_indices = DEFAULT_NME_KEYPOINTS[meta.name]
            if len(keypoint_indices) != 2:
                raise ValueError(f"keypoint_indices must be a pair, got {keypoint_indices!r}")
            a, b = (_keypoint_index(meta, k) for k in keypoint_indices)
            self.pair = (a, b)

    def normalize_factor(self, gt: np.ndarray, bboxes: Any = None, norm_values: Any = None) -> np.ndarray:
        """(N, 2) normaliser."""
        n = gt.shape[0]
        if self.pair is not None:
            a, b = self.pair
            return _tile(np.linalg.norm(gt[:, a] - gt[:, b], axis=1))
        if self.norm_item == "bbox_size" and norm_values is None:
            return _tile(bbox_sizes(_per_instance("bboxes", bboxes, n)))
        return _tile(_per_instance("norm_values", norm_values, n).reshape(n))

    def evaluate(self, pred: Any, gt: Any, mask: Any, bboxes: Any = None, norm_values: Any = None) -> MetricReport:
        pred, gt, mask = _inputs(self.meta, pred, gt, mask)
        norm = self.normalize_factor(gt, bboxes, norm_values)
        per_kpt = _mean_per_keypoint(calc_distances(pred, gt, mask, norm))
        per_keypoint = {
            name: {"NME": float(per_kpt[k]), "count": float(mask[:, k].sum())}
            for k, name in enumerate(self.meta.keypoint_names)
        }
        return MetricReport({"NME": keypoint_nme(pred, gt, mask, norm)}, per_keypoint)
