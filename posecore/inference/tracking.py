"""Frame-to-frame identity for video: greedy matching of instances by OKS (or box IoU).

:class:`PoseTracker` keeps the last pose and box of each track. Each frame it scores every
(track, instance) pair, by object keypoint similarity with the model's OKS sigmas when it has
them (area: the mean of the two boxes' areas) or else by box IoU, then assigns pairs greedily
from the best down; a pair below ``threshold`` is never matched. With sigmas and
``box_fallback`` (the default) a pair scores max(OKS, IoU): poses that agree match, and so do
boxes that overlap while the keypoints jitter (an uncertain model, or a fixed whole-image box). Unmatched instances start new
tracks (ids 0, 1, 2, ... in order of appearance); a track missing from more than ``max_age``
frames in a row is dropped (MMPose's inferencer: OKS or IoU, threshold 0.3, previous frame
only, i.e. ``max_age=0``; the default 1 bridges a single missed detection).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["PoseTracker", "box_iou", "oks"]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU (M, N) between boxes a (M, 4) and b (N, 4), xyxy."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=-1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def oks(
    kp_a: np.ndarray, kp_b: np.ndarray, area_a: np.ndarray, area_b: np.ndarray, sigmas: Sequence[float]
) -> np.ndarray:
    """OKS (M, N) between poses kp_a (M, K, 2) and kp_b (N, K, 2); the area of a pair is the mean of theirs."""
    var = (2 * np.asarray(sigmas, dtype=np.float64)) ** 2
    d2 = ((np.asarray(kp_a, np.float64)[:, None] - np.asarray(kp_b, np.float64)[None]) ** 2).sum(-1)  # (M, N, K)
    area = (np.asarray(area_a, np.float64)[:, None] + np.asarray(area_b, np.float64)[None]) / 2
    e = d2 / var / (area[..., None] + np.spacing(1)) / 2
    return np.exp(-e).mean(-1)


@dataclass
class _Track:
    track_id: int
    bbox: np.ndarray
    keypoints: np.ndarray
    last_seen: int


@dataclass
class PoseTracker:
    """Assigns track ids frame by frame; see the module docstring."""

    sigmas: Sequence[float] | None = None
    threshold: float = 0.3
    max_age: int = 1
    box_fallback: bool = True
    _tracks: list[_Track] = field(default_factory=list, repr=False)
    _next_id: int = 0
    _frame: int = -1

    def update(self, bboxes: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        """One frame: bboxes (M, 4) xyxy, keypoints (M, K, 2) -> track ids (M,) int64."""
        self._frame += 1
        bboxes = np.asarray(bboxes, dtype=np.float64).reshape(-1, 4)
        keypoints = np.asarray(keypoints, dtype=np.float64)
        m = len(bboxes)
        ids = np.full(m, -1, dtype=np.int64)
        self._tracks = [t for t in self._tracks if self._frame - t.last_seen - 1 <= self.max_age]
        if self._tracks and m:
            sim = self.similarity(bboxes, keypoints)
            order = np.dstack(np.unravel_index(np.argsort(-sim, axis=None, kind="stable"), sim.shape))[0]
            used_t: set[int] = set()
            for ti, di in order:
                if sim[ti, di] < self.threshold:
                    break
                if ti in used_t or ids[di] >= 0:
                    continue
                used_t.add(int(ti))
                ids[di] = self._tracks[ti].track_id
                self._tracks[ti] = _Track(ids[di], bboxes[di], keypoints[di], self._frame)
        for di in np.flatnonzero(ids < 0):
            ids[di] = self._next_id
            self._tracks.append(_Track(self._next_id, bboxes[di], keypoints[di], self._frame))
            self._next_id += 1
        return ids

    def similarity(self, bboxes: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        """(tracks, instances): OKS when sigmas are set (max with box IoU if ``box_fallback``), else box IoU."""
        t_boxes = np.stack([t.bbox for t in self._tracks])
        if self.sigmas is None:
            return box_iou(t_boxes, bboxes)
        t_kps = np.stack([t.keypoints for t in self._tracks])

        def area(b: np.ndarray) -> np.ndarray:
            return np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=-1)

        sim = oks(t_kps, keypoints, area(t_boxes), area(bboxes), self.sigmas)
        return np.maximum(sim, box_iou(t_boxes, bboxes)) if self.box_fallback else sim
