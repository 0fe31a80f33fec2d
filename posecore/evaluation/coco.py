"""COCO keypoint AP/AR through pycocotools, with MMPose 1.x ``CocoMetric``'s rescoring and OKS-NMS.

What happens to predictions, in order (``mmpose/evaluation/metrics/coco_metric.py``):

1. duplicates (same image and ``instance_ids`` value, as distributed testing produces) are
   dropped, the first kept;
2. each instance gets a score by ``score_mode``: ``'bbox_keypoint'`` (default) the box score
   times the mean of the keypoint scores ``> keypoint_score_thr`` (0 when none is);
   ``'bbox'`` the box score; ``'keypoint'`` the mean of all keypoint scores;
3. per image, ``nms_mode`` ``'oks_nms'`` keeps instances whose OKS with every kept,
   higher-scored one is ``<= nms_thr``; ``'soft_oks_nms'`` reorders by decayed score and
   keeps at most 20 (with the undecayed scores, as MMPose); ``'none'`` keeps all. OKS uses
   ``meta.sigmas`` and the instances' ``areas`` (MMPose: the padded top-down box area; when
   absent, the keypoints' extent);
4. the survivors go to pycocotools ``COCOeval(..., 'keypoints')`` with
   ``params.kpt_oks_sigmas = meta.sigmas``, so any schema, not only COCO's 17 keypoints, works.

MMPose evaluates with xtcocotools, whose ``use_area=False`` replaces a ground-truth
``area`` by ``0.53 * w * h`` of its box (for both OKS and the M/L area ranges; also
used where ``area`` is missing). We do exactly that to the loaded ground truth, then run the
stock pycocotools ``COCOeval``, which is otherwise identical for ``'keypoints'``.

Results JSON (COCO results format), one record per kept instance::

    {"image_id": 785, "category_id": 1, "keypoints": [x, y, score, ...3K], "score": 0.93,
     "bbox": [x, y, w, h]}   # bbox only when the predictions carry boxes

As in MMPose, results with a ``bbox`` get pycocotools' detection ``area`` from that box
(else from the keypoints' extent); it matters only for the M/L area ranges.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from posecore.evaluation.functional import oks_nms, soft_oks_nms
from posecore.io import atomic_write_json
from posecore.metainfo import DatasetMeta

log = logging.getLogger(__name__)

ScoreMode = Literal["bbox_keypoint", "bbox", "keypoint"]
NmsMode = Literal["oks_nms", "soft_oks_nms", "none"]
STATS_NAMES = ("AP", "AP .5", "AP .75", "AP (M)", "AP (L)", "AR", "AR .5", "AR .75", "AR (M)", "AR (L)")
NO_AREA_FACTOR = 0.53  # xtcocotools' box-area-to-object-area factor when ``use_area`` is off

SOFT_NMS_MAX_DETS = 20


@dataclass(frozen=True, eq=False)
class InstancePrediction:
    """One predicted person: keypoints (K, 2) image pixels, keypoint_scores (K,); see :class:`KeypointPredictions`."""

    image_id: int
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    bbox_score: float = 1.0
    area: float | None = None
    bbox: np.ndarray | None = None
    instance_id: int | None = None
    category_id: int = 1


@dataclass(frozen=True, eq=False)
class KeypointPredictions:
    """N predicted instances from any images, batched.

    image_ids (N,) int64; keypoints (N, K, 2) float64 x, y in image pixels; keypoint_scores
    (N, K) float64; bbox_scores (N,) float64 (the detector's box score; ones for bottom-up);
    areas (N,) float64 for OKS-NMS (the box area; ``None``: the keypoints' extent, MMPose's
    fallback); bboxes (N, 4) xyxy or ``None`` (written to the results as xywh);
    instance_ids (N,) int64 or ``None`` (duplicates per image are dropped); category_ids
    (N,) int64 (default 1).
    """

    image_ids: np.ndarray
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    bbox_scores: np.ndarray | None = None
    areas: np.ndarray | None = None
    bboxes: np.ndarray | None = None
    instance_ids: np.ndarray | None = None
    category_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        kpts = np.asarray(self.keypoints, dtype=np.float64)
        if kpts.ndim != 3 or kpts.shape[-1] != 2:
            raise ValueError(f"keypoints must be (N, K, 2), got shape {kpts.shape}")
        n, k = kpts.shape[:2]

        def column(
            name: str, value: Any, shape: tuple[int, ...], dtype: type, default: Any = None
        ) -> np.ndarray | None:
            if value is None:
                if default is None:
                    return None
                value = np.full(shape, default)
            arr = np.asarray(value, dtype=dtype)
            if arr.shape != shape:
                raise ValueError(f"{name} must have shape {shape} (N={n}, K={k}), got {arr.shape}")
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise ValueError(f"{name} contains NaN or infinite values")
            return arr

        set_ = object.__setattr__
        set_(self, "keypoints", column("keypoints", kpts, (n, k, 2), np.float64))
        set_(self, "image_ids", column("image_ids", self.image_ids, (n,), np.int64))
        set_(self, "keypoint_scores", column("keypoint_scores", self.keypoint_scores, (n, k), np.float64))
        set_(self, "bbox_scores", column("bbox_scores", self.bbox_scores, (n,), np.float64, 1.0))
        set_(self, "areas", column("areas", self.areas, (n,), np.float64))
        set_(self, "bboxes", column("bboxes", self.bboxes, (n, 4), np.float64))
        set_(self, "instance_ids", column("instance_ids", self.instance_ids, (n,), np.int64))
        set_(self, "category_ids", column("category_ids", self.category_ids, (n,), np.int64, 1))

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    @property
    def num_keypoints(self) -> int:
        return int(self.keypoints.shape[1])

    def keypoint_extent_areas(self) -> np.ndarray:
        """(N,) ``(max x - min x) * (max y - min y)`` over all K keypoints (MMPose's area fallback)."""
        if len(self) == 0:
            return np.zeros(0)
        span = self.keypoints.max(axis=1) - self.keypoints.min(axis=1)
        return span[:, 0] * span[:, 1]

    def resolved_areas(self) -> np.ndarray:
        return self.areas if self.areas is not None else self.keypoint_extent_areas()

    def take(self, index: np.ndarray) -> KeypointPredictions:
        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[index]

        return KeypointPredictions(
            image_ids=self.image_ids[index],
            keypoints=self.keypoints[index],
            keypoint_scores=self.keypoint_scores[index],
            bbox_scores=pick(self.bbox_scores),
            areas=pick(self.areas),
            bboxes=pick(self.bboxes),
            instance_ids=pick(self.instance_ids),
            category_ids=pick(self.category_ids),
        )

    @classmethod
    def concat(cls, parts: Sequence[KeypointPredictions]) -> KeypointPredictions:
        """Stack batches. ``bboxes``/``instance_ids`` must be given for all or none; missing ``areas``
        among given ones are filled with the keypoints' extent."""
        if not parts:
            raise ValueError("nothing to concatenate")

        def cat(name: str) -> np.ndarray | None:
            values = [getattr(p, name) for p in parts]
            present = [v is not None for v in values]
            if not any(present):
                return None
            if not all(present):
                if name == "areas":
                    return np.concatenate([p.resolved_areas() for p in parts])
                raise ValueError(f"{name} is given for some prediction batches but not for others")
            return np.concatenate(values)

        return cls(
            image_ids=np.concatenate([p.image_ids for p in parts]),
            keypoints=np.concatenate([p.keypoints for p in parts]),
            keypoint_scores=np.concatenate([p.keypoint_scores for p in parts]),
            bbox_scores=np.concatenate([p.bbox_scores for p in parts]),
            areas=cat("areas"),
            bboxes=cat("bboxes"),
            instance_ids=cat("instance_ids"),
            category_ids=np.concatenate([p.category_ids for p in parts]),
        )

    @classmethod
    def from_instances(cls, instances: Sequence[InstancePrediction], num_keypoints: int) -> KeypointPredictions:
        """Batch single instances (``num_keypoints`` fixes K when the list is empty)."""
        if not instances:
            return cls(
                image_ids=np.zeros(0),
                keypoints=np.zeros((0, num_keypoints, 2)),
                keypoint_scores=np.zeros((0, num_keypoints)),
            )
        parts = []
        for inst in instances:
            kpts = np.asarray(inst.keypoints, dtype=np.float64)[None]
            parts.append(
                cls(
                    image_ids=np.array([inst.image_id]),
                    keypoints=kpts,
                    keypoint_scores=np.asarray(inst.keypoint_scores, dtype=np.float64)[None],
                    bbox_scores=np.array([inst.bbox_score]),
                    areas=None if inst.area is None else np.array([inst.area]),
                    bboxes=None if inst.bbox is None else np.asarray(inst.bbox, dtype=np.float64)[None],
                    instance_ids=None if inst.instance_id is None else np.array([inst.instance_id]),
                    category_ids=np.array([inst.category_id]),
                )
            )
        return cls.concat(parts)


PredictionInput = KeypointPredictions | Sequence[KeypointPredictions] | Sequence[InstancePrediction]


@dataclass
class CocoEvalOutput:
    """The stats of one evaluation, the records evaluated and pycocotools' printed summary."""

    stats: dict[str, float]
    results: list[dict[str, Any]] = field(repr=False)
    log: str = field(default="", repr=False)


def rescore(predictions: KeypointPredictions, score_mode: ScoreMode, keypoint_score_thr: float = 0.2) -> np.ndarray:
    """Instance scores (N,) by MMPose ``CocoMetric``'s ``score_mode`` (see the module docstring)."""
    ks = predictions.keypoint_scores
    if score_mode == "bbox":
        return predictions.bbox_scores.copy()
    if score_mode == "keypoint":
        return ks.mean(axis=1) if ks.shape[1] else np.zeros(len(predictions))
    if score_mode == "bbox_keypoint":
        valid = ks > keypoint_score_thr
        count = valid.sum(axis=1)
        mean = np.where(count > 0, (ks * valid).sum(axis=1) / np.maximum(count, 1), 0.0)
        return predictions.bbox_scores * mean
    raise ValueError(f"score_mode must be 'bbox_keypoint', 'bbox' or 'keypoint', got {score_mode!r}")


class CocoKeypointEvaluator:
    """COCO keypoint AP/AR of predictions against a COCO keypoint annotation file.

    ``gt_ann_file`` is a canonical ``annotations/<split>.json`` (or any COCO keypoint file
    whose annotations have ``3 * meta.num_keypoints`` keypoint values). Every image in it
    is evaluated; an image without predictions costs recall.
    """

    def __init__(
        self,
        gt_ann_file: str | Path,
        meta: DatasetMeta,
        use_area: bool = True,
        score_mode: ScoreMode = "bbox_keypoint",
        keypoint_score_thr: float = 0.2,
        nms_mode: NmsMode = "oks_nms",
        nms_thr: float = 0.9,
    ) -> None:
        if score_mode not in ("bbox_keypoint", "bbox", "keypoint"):
            raise ValueError(f"score_mode must be 'bbox_keypoint', 'bbox' or 'keypoint', got {score_mode!r}")
        if nms_mode not in ("oks_nms", "soft_oks_nms", "none"):
            raise ValueError(f"nms_mode must be 'oks_nms', 'soft_oks_nms' or 'none', got {nms_mode!r}")
        self.gt_ann_file = Path(gt_ann_file)
        self.meta = meta
        self.use_area = use_area
        self.score_mode: ScoreMode = score_mode
        self.keypoint_score_thr = float(keypoint_score_thr)
        self.nms_mode: NmsMode = nms_mode
        self.nms_thr = float(nms_thr)
        self.sigmas = np.asarray(meta.sigmas, dtype=np.float64)
        self.coco = self._load_gt()
        self.last: CocoEvalOutput | None = None

    def _load_gt(self) -> COCO:
        if not self.gt_ann_file.is_file():
            raise FileNotFoundError(f"ground-truth annotation file {self.gt_ann_file} does not exist")
        doc = json.loads(self.gt_ann_file.read_text())
        k = self.meta.num_keypoints
        for ann in doc.get("annotations", []):
            kps = ann.get("keypoints") or []
            if len(kps) != 3 * k:
                raise ValueError(
                    f"{self.gt_ann_file}: annotation id={ann.get('id')} has {len(kps) // 3} keypoints but the meta "
                    f"{self.meta.name!r} has {k}; pass the dataset's own meta (its meta.yaml)"
                )
            if "num_keypoints" not in ann:
                ann["num_keypoints"] = int(np.count_nonzero(np.asarray(kps[2::3]) > 0))
            if not self.use_area or "area" not in ann:
                _, _, w, h = ann["bbox"]
                ann["area"] = float(w) * float(h) * NO_AREA_FACTOR
        doc.setdefault("categories", [self.meta.coco_category()])
        coco = COCO()
        coco.dataset = doc
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        return coco

    def _as_batch(self, predictions: PredictionInput) -> KeypointPredictions:
        if isinstance(predictions, KeypointPredictions):
            batch = predictions
        elif len(predictions) and all(isinstance(p, KeypointPredictions) for p in predictions):
            batch = KeypointPredictions.concat(predictions)  # type: ignore[arg-type]
        elif all(isinstance(p, InstancePrediction) for p in predictions):
            batch = KeypointPredictions.from_instances(predictions, self.meta.num_keypoints)  # type: ignore[arg-type]
        else:
            raise TypeError("predictions must be KeypointPredictions, a list of them, or a list of InstancePrediction")
        if batch.num_keypoints != self.meta.num_keypoints:
            raise ValueError(
                f"predictions have {batch.num_keypoints} keypoints but the meta {self.meta.name!r} has "
                f"{self.meta.num_keypoints}"
            )
        unknown = sorted(set(batch.image_ids.tolist()) - set(self.coco.getImgIds()))
        if unknown:
            raise ValueError(
                f"{len(unknown)} predicted image ids are not in {self.gt_ann_file} (first: {unknown[:5]}); "
                "evaluate each split against its own annotation file"
            )
        return batch

    def format_results(self, predictions: PredictionInput) -> list[dict[str, Any]]:
        """Dedupe, rescore and NMS the predictions; return COCO result records (images in ascending id)."""
        batch = self._as_batch(predictions)
        if batch.instance_ids is not None:
            pairs = np.stack([batch.image_ids, batch.instance_ids], axis=1)
            # (image, id) order with the first of each duplicate kept, as MMPose's _sort_and_unique_bboxes
            _, first = np.unique(pairs, axis=0, return_index=True)
            batch = batch.take(first)
        scores = rescore(batch, self.score_mode, self.keypoint_score_thr)
        areas = batch.resolved_areas()
        kpts = np.concatenate([batch.keypoints, batch.keypoint_scores[..., None]], axis=-1)

        order = np.argsort(batch.image_ids, kind="stable")
        bounds = np.flatnonzero(np.diff(batch.image_ids[order])) + 1
        kept: list[np.ndarray] = []
        for idx in np.split(order, bounds) if len(order) else []:
            if self.nms_mode == "oks_nms":
                idx = idx[oks_nms(kpts[idx], scores[idx], areas[idx], self.nms_thr, self.sigmas)]
            elif self.nms_mode == "soft_oks_nms":
                keep, _ = soft_oks_nms(kpts[idx], scores[idx], areas[idx], self.nms_thr, SOFT_NMS_MAX_DETS, self.sigmas)
                idx = idx[keep]
            kept.append(idx)

        idx = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
        columns = zip(
            batch.image_ids[idx].tolist(),
            batch.category_ids[idx].tolist(),
            kpts[idx].reshape(len(idx), 3 * batch.num_keypoints).tolist(),
            scores[idx].tolist(),
            strict=True,
        )
        results = [
            {"image_id": image_id, "category_id": cat, "keypoints": flat, "score": score}
            for image_id, cat, flat, score in columns
        ]
        if batch.bboxes is not None:
            xywh = batch.bboxes[idx].copy()
            xywh[:, 2:] -= xywh[:, :2]
            for rec, box in zip(results, xywh.tolist(), strict=True):
                rec["bbox"] = box
        return results

    def evaluate_results(self, results: list[dict[str, Any]]) -> CocoEvalOutput:
        """Run ``COCOeval(..., 'keypoints')`` on result records; pycocotools' prints go to ``.log``."""
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            if results:
                coco_dt = self.coco.loadRes(json.loads(json.dumps(results)))  # loadRes edits the records
            else:
                coco_dt = COCO()
                coco_dt.dataset = {"images": list(self.coco.dataset["images"]), "annotations": []}
                coco_dt.dataset["categories"] = list(self.coco.dataset["categories"])
                coco_dt.createIndex()
            coco_eval = COCOeval(self.coco, coco_dt, "keypoints")
            coco_eval.params.kpt_oks_sigmas = self.sigmas
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        stats = {name: float(v) for name, v in zip(STATS_NAMES, coco_eval.stats, strict=True)}
        text = buffer.getvalue()
        log.debug("pycocotools output:\n%s", text)
        return CocoEvalOutput(stats=stats, results=results, log=text)

    def evaluate(self, predictions: PredictionInput) -> dict[str, float]:
        """The 10 COCO keypoint stats (``STATS_NAMES``) of the predictions; details in ``self.last``."""
        self.last = self.evaluate_results(self.format_results(predictions))
        return dict(self.last.stats)

    def write_results_json(self, path: str | Path, predictions: PredictionInput | None = None) -> Path:
        """Write the COCO results of ``predictions`` (default: those last evaluated) atomically."""
        if predictions is not None:
            results = self.format_results(predictions)
        elif self.last is not None:
            results = self.last.results
        else:
            raise ValueError("nothing to write: pass predictions or call evaluate() first")
        return atomic_write_json(path, results)
