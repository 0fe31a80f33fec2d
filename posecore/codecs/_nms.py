"""Greedy non-maximum suppression of people, by box IoU or by keypoint OKS, in torch and in NumPy.

One-stage models predict every person at several anchors; NMS keeps the best of each cluster.
Each function has its NumPy twin (``*_numpy``) right below it, with the same definitions and the
same operation order, so that a codec's ``decode_numpy`` (the torch-free bundle runtime) keeps
the people its ``decode`` keeps. No torchvision: its ``nms`` has no OKS variant, no top-k cap
and no NumPy twin, and the greedy loop below is short.

Definitions (shared by both variants):

- IoU of boxes a, b (xyxy): area(a ∩ b) / area(a ∪ b), widths and heights clamped at 0;
  0 when the union is empty (two degenerate boxes), so degenerate boxes never suppress anything.
- OKS of person i (the kept, higher-scored one) with person j, COCO's formula with i's box
  area as the scale::

      OKS(i, j) = 1/|V| * sum_{k in V} exp(-|p_ik - p_jk|^2 / (2 * (2 sigma_k)^2 * (area_i + eps)))

  eps = ``np.spacing(1)`` (as COCO and MMPose's ``oks_iou``), V = every keypoint when
  ``vis_thr`` is None, else the keypoints whose score is > ``vis_thr`` in both people;
  OKS = 0 when V is empty. MMPose averages the two people's areas instead; the kept person's
  area makes the row of one kept person a single broadcast.
- Greedy NMS: visit people by descending score (ties: lower index first); keep one unless an
  already kept person overlaps it by more than ``thr`` (overlap > thr suppresses, as torchvision
  and MMPose's ``oks_nms``). ``max_keep`` is the top-k cap: the loop stops after that many kept
  people, which are exactly the first ``max_keep`` of the uncapped result.

The loop computes one row of overlaps per kept person (O(kept * n * K)), never the n x n matrix:
with ``max_keep`` (a codec's ``max_detections``) an untrained model that scores all 8400
anchors of a 640 input above the threshold still costs 30 rows, not a 8400^2 x K array.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from posecore._lazy import lazy_import

if TYPE_CHECKING:
    import torch
    from torch import Tensor
else:
    torch = lazy_import("torch")

__all__ = [
    "OKS_EPS",
    "box_iou",
    "box_iou_numpy",
    "keypoint_oks",
    "keypoint_oks_numpy",
    "nms",
    "nms_numpy",
    "oks_nms",
    "oks_nms_numpy",
]

#: Added to the area in OKS (COCO's ``np.spacing(1)``): a zero-area person still has a finite scale.
OKS_EPS = float(np.spacing(1))


def _greedy(order: Any, overlap: Callable[[Any, Any], Any], thr: float, max_keep: int | None) -> list[Any]:
    """Greedy NMS over ``order`` (indices, best first); ``overlap(i, rest)`` -> (len(rest),) overlaps.

    Works unchanged on torch and NumPy index arrays: both index with a 0-d index and a bool mask.
    """
    kept = []
    while len(order) and (max_keep is None or len(kept) < max_keep):
        i, order = order[0], order[1:]
        kept.append(i)
        if len(order):
            order = order[overlap(i, order) <= thr]
    return kept


def _check_cap(max_keep: int | None) -> None:
    if max_keep is not None and (isinstance(max_keep, bool) or not isinstance(max_keep, int) or max_keep < 0):
        raise ValueError(f"max_keep must be None or an int >= 0; got {max_keep!r}")


# --------------------------------------------------------------------------- overlaps


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of xyxy boxes a (..., 4) and b (..., 4), broadcast -> (...); 0 where the union is empty.

    Pairwise matrix: ``box_iou(a[:, None], b[None])`` (n, m).
    """
    wh = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp_min(0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[..., 2:] - a[..., :2]).clamp_min(0).prod(dim=-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp_min(0).prod(dim=-1)
    union = area_a + area_b - inter
    return torch.where(union > 0, inter / torch.where(union > 0, union, 1), 0)


def box_iou_numpy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    wh = np.clip(np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2]), 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = np.clip(a[..., 2:] - a[..., :2], 0, None).prod(axis=-1)
    area_b = np.clip(b[..., 2:] - b[..., :2], 0, None).prod(axis=-1)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0).astype(inter.dtype, copy=False)


def keypoint_oks(a: Tensor, b: Tensor, area: Tensor, sigmas: Tensor, mask: Tensor | None = None) -> Tensor:
    """OKS (module docstring) of keypoints a (..., K, 2) against b (..., K, 2), broadcast -> (...).

    area (...) is a's box area (the scale), sigmas (K,) (computed in a's dtype); mask (..., K) bool marks the keypoints
    that count (V), None = all. Pairwise matrix: ``keypoint_oks(a[:, None], b[None], area[:, None], s)``.
    """
    d2 = (a - b).square().sum(dim=-1)
    sigmas = sigmas.to(device=d2.device, dtype=d2.dtype)
    e = d2 / ((2 * (2 * sigmas) ** 2) * (area[..., None] + OKS_EPS))
    terms = torch.exp(-e)
    if mask is None:
        return terms.mean(dim=-1)
    count = mask.sum(dim=-1)
    total = torch.where(mask, terms, 0).sum(dim=-1)
    return torch.where(count > 0, total / count.clamp_min(1), 0)


def keypoint_oks_numpy(
    a: np.ndarray, b: np.ndarray, area: np.ndarray, sigmas: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    d2 = np.square(a - b).sum(axis=-1)
    sigmas = np.asarray(sigmas, dtype=d2.dtype)
    e = d2 / ((2 * (2 * sigmas) ** 2) * (area[..., None] + OKS_EPS))
    terms = np.exp(-e)
    if mask is None:
        return terms.mean(axis=-1)
    count = mask.sum(axis=-1)
    total = np.where(mask, terms, 0).sum(axis=-1)
    return np.where(count > 0, total / np.maximum(count, 1), 0).astype(terms.dtype, copy=False)


# --------------------------------------------------------------------------- NMS


def _order(scores: Tensor) -> Tensor:
    return torch.sort(scores, descending=True, stable=True).indices


def _order_numpy(scores: np.ndarray) -> np.ndarray:
    return np.argsort(-scores, kind="stable")


def _as_index(kept: list[Any], like: Tensor) -> Tensor:
    return torch.stack(kept) if kept else torch.zeros(0, dtype=torch.long, device=like.device)


def nms(boxes: Tensor, scores: Tensor, iou_thr: float, max_keep: int | None = None) -> Tensor:
    """Box-IoU NMS: boxes (n, 4) xyxy, scores (n,) -> kept indices (m,) int64, by descending score.

    ``scores`` is any ranking key (higher is better; a codec passes logits, which float32
    sigmoids would tie at 1.0); ``max_keep`` caps the result (the top-k).
    """
    _check_cap(max_keep)
    kept = _greedy(_order(scores), lambda i, rest: box_iou(boxes[i], boxes[rest]), iou_thr, max_keep)
    return _as_index(kept, scores)


def nms_numpy(boxes: np.ndarray, scores: np.ndarray, iou_thr: float, max_keep: int | None = None) -> np.ndarray:
    _check_cap(max_keep)
    kept = _greedy(_order_numpy(scores), lambda i, rest: box_iou_numpy(boxes[i], boxes[rest]), iou_thr, max_keep)
    return np.asarray(kept, dtype=np.int64)


def oks_nms(
    keypoints: Tensor,
    scores: Tensor,
    areas: Tensor,
    sigmas: Sequence[float] | Tensor,
    oks_thr: float,
    keypoint_scores: Tensor | None = None,
    vis_thr: float | None = None,
    max_keep: int | None = None,
) -> Tensor:
    """OKS NMS: keypoints (n, K, 2), scores (n,), areas (n,) box areas -> kept indices (m,) int64.

    sigmas (K,) per keypoint; with ``vis_thr``, only keypoints whose ``keypoint_scores`` (n, K)
    are > vis_thr in both people count (module docstring). ``scores`` and ``max_keep`` as in :func:`nms`.
    """
    _check_cap(max_keep)
    s = _sigmas(sigmas, keypoints.shape[1])
    sig = torch.as_tensor(s, dtype=keypoints.dtype, device=keypoints.device)
    vis = _visible_mask(keypoint_scores, vis_thr)

    def overlap(i: Tensor, rest: Tensor) -> Tensor:
        mask = None if vis is None else vis[i] & vis[rest]
        return keypoint_oks(keypoints[i], keypoints[rest], areas[i], sig, mask)

    return _as_index(_greedy(_order(scores), overlap, oks_thr, max_keep), scores)


def oks_nms_numpy(
    keypoints: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    sigmas: Sequence[float] | np.ndarray,
    oks_thr: float,
    keypoint_scores: np.ndarray | None = None,
    vis_thr: float | None = None,
    max_keep: int | None = None,
) -> np.ndarray:
    _check_cap(max_keep)
    sig = np.asarray(_sigmas(sigmas, keypoints.shape[1]), dtype=keypoints.dtype)
    vis = _visible_mask(keypoint_scores, vis_thr)

    def overlap(i: np.ndarray, rest: np.ndarray) -> np.ndarray:
        mask = None if vis is None else vis[i] & vis[rest]
        return keypoint_oks_numpy(keypoints[i], keypoints[rest], areas[i], sig, mask)

    return np.asarray(_greedy(_order_numpy(scores), overlap, oks_thr, max_keep), dtype=np.int64)


def _sigmas(sigmas: Sequence[float] | Any, num_keypoints: int) -> list[float]:
    values = [float(s) for s in (sigmas.tolist() if hasattr(sigmas, "tolist") else sigmas)]
    if len(values) != num_keypoints:
        raise ValueError(f"OKS NMS needs one sigma per keypoint ({num_keypoints}); got {len(values)}")
    return values


def _visible_mask(keypoint_scores: Any, vis_thr: float | None) -> Any:
    if vis_thr is None:
        return None
    if keypoint_scores is None:
        raise ValueError("OKS NMS with vis_thr needs keypoint_scores (n, K)")
    return keypoint_scores > vis_thr
