"""Keypoint metrics and OKS non-maximum suppression as vectorised numpy functions.

Shapes: N instances, K keypoints, D coordinate dimensions (2, or 3 for MPJPE).
``pred``/``gt`` (N, K, D) float; ``mask`` (N, K) bool, True where the ground-truth keypoint
is labelled; ``norm_factor`` (N, D) float, one normaliser per instance and axis.

The conventions are MMPose 1.x's (``mmpose/evaluation/functional/keypoint_eval.py`` and
``nms.py``), so our numbers reproduce its published test expectations:

* A normalised distance is ``-1`` where the keypoint is masked out, and for every keypoint
  of an instance whose normaliser has a zero entry; such entries are ignored everywhere.
  A negative normaliser is replaced by ``1e6`` (the keypoint counts, and almost surely hits).
* A per-keypoint accuracy is ``-1`` when that keypoint has no valid distance; the average
  is taken over keypoints with an accuracy ``>= 0`` (``0`` when there are none).
* OKS between two predictions uses the mean of their areas and ``(2 * sigma)^2``, exactly
  as COCO's ``computeOks``; OKS-NMS keeps instances whose OKS with every kept,
  higher-scored one is ``<= thr``.

Unlike MMPose, no function modifies its inputs (MMPose's ``_calc_distances`` overwrites
non-positive entries of the caller's ``norm_factor``) and nothing returns NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np

# COCO's 17 OKS sigmas (https://cocodataset.org/#keypoints-eval), the default of ``oks_iou``.
COCO_SIGMAS = (
    np.array([0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89])
    / 10.0
)

Alignment = Literal["none", "scale", "procrustes"]


def _check_coords(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    mask = np.asarray(mask).astype(bool)
    if pred.ndim != 3 or pred.shape != gt.shape:
        raise ValueError(f"pred and gt must both be (N, K, D) arrays of one shape, got {pred.shape} and {gt.shape}")
    if mask.shape != pred.shape[:2]:
        raise ValueError(f"mask must be (N, K) = {pred.shape[:2]}, got {mask.shape}")
    return pred, gt, mask


def calc_distances(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, norm_factor: np.ndarray) -> np.ndarray:
    """Normalised distances (K, N) float64: ``|(pred - gt) / norm_factor|``, ``-1`` where invalid.

    pred, gt (N, K, D); mask (N, K); norm_factor (N, D). Invalid: masked keypoints, and all
    keypoints of an instance with a zero in its ``norm_factor`` row.
    """
    pred, gt, mask = _check_coords(pred, gt, mask)
    n, _, d = pred.shape
    norm = np.array(norm_factor, dtype=np.float64)  # a copy: the caller's array stays untouched
    if norm.shape != (n, d):
        raise ValueError(f"norm_factor must be (N, D) = {(n, d)}, got {norm.shape}")
    valid = mask & ~(norm == 0).any(axis=1)[:, None]
    norm[norm <= 0] = 1e6
    dist = np.linalg.norm((pred - gt) / norm[:, None, :], axis=-1)
    return np.where(valid, dist, -1.0).T


def _accuracy_per_keypoint(distances: np.ndarray, thr: float | np.ndarray) -> np.ndarray:
    """distances (K, N) -> accuracy (K,) (or (T, K) for T thresholds); ``-1`` where a row has no valid entry."""
    valid = distances != -1
    count = valid.sum(axis=-1)
    thrs = np.asarray(thr, dtype=np.float64)
    hits = ((distances[None] < thrs.reshape(-1, 1, 1)) & valid[None]).sum(axis=-1)
    acc = np.where(count > 0, hits / np.maximum(count, 1), -1.0)
    return acc[0] if thrs.ndim == 0 else acc


def _average(acc: np.ndarray) -> tuple[float, int]:
    valid = acc[acc >= 0]
    return (float(valid.mean()) if valid.size else 0.0), int(valid.size)


def keypoint_pck_accuracy(
    pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, thr: float, norm_factor: np.ndarray
) -> tuple[np.ndarray, float, int]:
    """PCK: the fraction of keypoints whose normalised distance is ``< thr``.

    pred, gt (N, K, 2); mask (N, K); norm_factor (N, 2) (e.g. the box size twice).
    Returns ``(acc (K,), avg_acc, cnt)``: per-keypoint accuracy (``-1`` for a keypoint with no
    valid instance), its mean over the ``cnt`` keypoints with an accuracy ``>= 0``.
    """
    acc = _accuracy_per_keypoint(calc_distances(pred, gt, mask, norm_factor), float(thr))
    avg, cnt = _average(acc)
    return acc, avg, cnt


def pck_curve(
    pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, norm_factor: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """PCK at each of T thresholds, computing the distances once.

    Returns ``(avg (T,), per_keypoint (T, K))``; ``avg[t]`` equals
    ``keypoint_pck_accuracy(..., thresholds[t], norm_factor)[1]``.
    """
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    acc = _accuracy_per_keypoint(calc_distances(pred, gt, mask, norm_factor), thresholds)
    avg = np.array([_average(row)[0] for row in acc])
    return avg, acc


def auc_thresholds(num_thrs: int = 20) -> np.ndarray:
    """MMPose's AUC thresholds ``i / num_thrs`` for ``i = 0 .. num_thrs - 1`` (1 itself is excluded)."""
    if num_thrs < 1:
        raise ValueError(f"num_thrs must be >= 1, got {num_thrs}")
    return np.arange(num_thrs, dtype=np.float64) / num_thrs


def keypoint_auc(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, norm_factor: float, num_thrs: int = 20) -> float:
    """Area under the PCK-vs-threshold curve: the mean PCK over :func:`auc_thresholds`.

    pred, gt (N, K, 2); mask (N, K); ``norm_factor`` one scalar (pixels) for every instance.
    """
    pred, gt, mask = _check_coords(pred, gt, mask)
    norm = np.full((pred.shape[0], 2), float(norm_factor))
    avg, _ = pck_curve(pred, gt, mask, norm, auc_thresholds(num_thrs))
    return float(avg.sum() / num_thrs)


def keypoint_epe(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    """End-point error: the mean Euclidean distance over the unmasked keypoints (0 when none)."""
    pred, gt, mask = _check_coords(pred, gt, mask)
    return keypoint_nme(pred, gt, mask, np.ones((pred.shape[0], pred.shape[2])))


def keypoint_nme(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, normalize_factor: np.ndarray) -> float:
    """Normalised mean error: the mean of the valid normalised distances (0 when none).

    pred, gt (N, K, 2); mask (N, K); normalize_factor (N, 2), e.g. the inter-ocular distance twice.
    """
    dist = calc_distances(pred, gt, mask, normalize_factor)
    valid = dist[dist != -1]
    return float(valid.sum() / max(1, valid.size))


def _similarity_align(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Batched orthogonal Procrustes (scale, rotation, translation): source (N, K, C) mapped onto target.

    The rotation is forced proper (det = +1) as in MMPose's ``compute_similarity_transform``; a
    degenerate (all-equal) source is only translated.
    """
    mu_s = source.mean(axis=1, keepdims=True)
    mu_t = target.mean(axis=1, keepdims=True)
    xs, xt = source - mu_s, target - mu_t
    var_s = np.einsum("nkc,nkc->n", xs, xs)
    cov = np.einsum("nkc,nkd->ncd", xs, xt)  # (N, C, C), MMPose's K = X1 X2^T
    u, _, vh = np.linalg.svd(cov)
    v = np.swapaxes(vh, 1, 2)
    z = np.broadcast_to(np.eye(cov.shape[-1]), cov.shape).copy()
    z[:, -1, -1] = np.sign(np.linalg.det(u @ np.swapaxes(v, 1, 2)))
    rot = v @ z @ np.swapaxes(u, 1, 2)  # (N, C, C)
    trace = np.einsum("nij,nji->n", rot, cov)
    scale = np.divide(trace, var_s, out=np.ones_like(trace), where=var_s > 0)
    rotated = np.einsum("nij,nkj->nki", rot, xs)
    return scale[:, None, None] * rotated + mu_t


def align_keypoints(pred: np.ndarray, gt: np.ndarray, alignment: Alignment = "none") -> np.ndarray:
    """``pred`` (N, K, C) mapped onto ``gt`` (N, K, C) instance by instance; float64 (N, K, C).

    ``alignment``: ``'none'`` (a copy); ``'scale'``, the least-squares scale
    ``<pred, gt> / <pred, pred>`` (N-MPJPE; a scale of 1 for an all-zero ``pred``);
    ``'procrustes'`` (P-MPJPE), the least-squares similarity transform (rotation, translation,
    scale). As in MMPose each transform is fitted on all K keypoints of an instance.
    """
    pred = np.array(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.ndim != 3 or pred.shape != gt.shape:
        raise ValueError(f"pred and gt must both be (N, K, C) arrays of one shape, got {pred.shape} and {gt.shape}")
    if alignment == "none":
        return pred
    if alignment == "scale":
        pp = np.einsum("nkc,nkc->n", pred, pred)
        pg = np.einsum("nkc,nkc->n", pred, gt)
        return pred * np.divide(pg, pp, out=np.ones_like(pp), where=pp > 0)[:, None, None]
    if alignment == "procrustes":
        return _similarity_align(pred, gt)
    raise ValueError(f"alignment must be 'none', 'scale' or 'procrustes', got {alignment!r}")


def keypoint_mpjpe(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, alignment: Alignment = "none") -> float:
    """Mean per-joint position error over the unmasked keypoints, after an optional alignment.

    pred, gt (N, K, C) (C = 3 for 3-D poses); mask (N, K). ``alignment`` as in
    :func:`align_keypoints`: fitted on all K keypoints of an instance, masked or not (MMPose).
    """
    pred, gt, mask = _check_coords(pred, gt, mask)
    if not mask.any():
        raise ValueError("keypoint_mpjpe needs at least one unmasked keypoint")
    return float(np.linalg.norm(align_keypoints(pred, gt, alignment) - gt, axis=-1)[mask].mean())


def heatmap_maximum(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """heatmaps (N, K, H, W) -> ``(locs (N, K, 2) float x, y, vals (N, K))``; locs ``-1`` where the max is <= 0."""
    heatmaps = np.asarray(heatmaps)
    if heatmaps.ndim != 4:
        raise ValueError(f"heatmaps must be (N, K, H, W), got shape {heatmaps.shape}")
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n * k, h * w)
    idx = np.argmax(flat, axis=1)
    vals = flat[np.arange(n * k), idx]
    locs = np.stack([idx % w, idx // w], axis=-1).astype(np.float64)
    locs[vals <= 0] = -1
    return locs.reshape(n, k, 2), vals.reshape(n, k)


def pose_pck_accuracy(
    output: np.ndarray, target: np.ndarray, mask: np.ndarray, thr: float = 0.05, normalize: np.ndarray | None = None
) -> tuple[np.ndarray, float, int]:
    """PCK between the argmax locations of predicted and target heatmaps (N, K, H, W).

    ``normalize`` (N, 2) defaults to ``[H, W]`` per instance — MMPose's order, which divides x
    by H and y by W.
    """
    n, _, h, w = np.shape(output)
    if normalize is None:
        normalize = np.tile(np.array([[h, w]], dtype=np.float64), (n, 1))
    pred, _ = heatmap_maximum(output)
    gt, _ = heatmap_maximum(target)
    return keypoint_pck_accuracy(pred, gt, mask, thr, normalize)


def _sigmas(sigmas: np.ndarray | None, k: int) -> np.ndarray:
    s = COCO_SIGMAS if sigmas is None else np.asarray(sigmas, dtype=np.float64).reshape(-1)
    if s.size != k:
        hint = " (the default is COCO's 17; pass meta.sigmas)" if sigmas is None else ""
        raise ValueError(f"got {s.size} OKS sigmas for {k} keypoints{hint}")
    return s


def oks_iou(
    g: np.ndarray,
    d: np.ndarray,
    a_g: float,
    a_d: np.ndarray,
    sigmas: np.ndarray | None = None,
    vis_thr: float | None = None,
) -> np.ndarray:
    """OKS (M,) between one instance and M others.

    g (K, 3) or (3K,) x, y, score; d (M, K, 3) or (M, 3K); a_g its area; a_d (M,) areas.
    ``e = d^2 / (2 sigma)^2 / ((a_g + a_d) / 2 + eps) / 2`` and OKS = mean ``exp(-e)``. With
    ``vis_thr`` only keypoints whose score exceeds it in both instances count (OKS 0 when
    none does); without it every keypoint counts.
    """
    g = np.asarray(g, dtype=np.float64).reshape(-1, 3)
    d = np.asarray(d, dtype=np.float64).reshape(-1, g.shape[0], 3)
    vars_ = (_sigmas(sigmas, g.shape[0]) * 2) ** 2
    a_d = np.asarray(a_d, dtype=np.float64).reshape(-1)
    sq = (d[..., 0] - g[:, 0]) ** 2 + (d[..., 1] - g[:, 1]) ** 2
    e = sq / vars_ / ((a_g + a_d[:, None]) / 2 + np.spacing(1)) / 2
    if vis_thr is None:
        return np.exp(-e).mean(axis=1) if g.shape[0] else np.zeros(d.shape[0])
    use = (g[:, 2] > vis_thr) & (d[..., 2] > vis_thr)
    count = use.sum(axis=1)
    return np.where(count > 0, (np.exp(-e) * use).sum(axis=1) / np.maximum(count, 1), 0.0)


def _nms_inputs(
    keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    kpts = np.asarray(keypoints, dtype=np.float64)
    if kpts.ndim != 3 or kpts.shape[-1] != 3:
        raise ValueError(f"keypoints must be (N, K, 3) x, y, score, got shape {kpts.shape}")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    areas = np.asarray(areas, dtype=np.float64).reshape(-1)
    if scores.size != kpts.shape[0] or areas.size != kpts.shape[0]:
        raise ValueError(f"scores and areas need one value per instance ({kpts.shape[0]})")
    return kpts, scores, areas


_PAIRWISE_MAX = 512  # above this many instances, OKS rows are computed one at a time (memory)


def _oks_rows(
    kpts: np.ndarray, areas: np.ndarray, sigmas: np.ndarray | None, vis_thr: float | None
) -> Callable[[int, np.ndarray], np.ndarray]:
    """``row(i, others)``: OKS of instance i with ``others`` (indices), as :func:`oks_iou` computes it.

    Up to ``_PAIRWISE_MAX`` instances, the whole (N, N) matrix is computed once (OKS is
    symmetric and each row equals ``oks_iou``'s result bit for bit); above, row by row.
    """
    n, k = kpts.shape[:2]
    if n > _PAIRWISE_MAX or k == 0:
        return lambda i, others: oks_iou(kpts[i], kpts[others], areas[i], areas[others], sigmas, vis_thr)
    vars_ = (_sigmas(sigmas, k) * 2) ** 2
    sq = ((kpts[None, :, :, :2] - kpts[:, None, :, :2]) ** 2).sum(axis=-1)  # (N, N, K)
    e = sq / vars_ / ((areas[:, None] + areas[None, :])[..., None] / 2 + np.spacing(1)) / 2
    if vis_thr is None:
        full = np.exp(-e).mean(axis=-1)
    else:
        vis = kpts[..., 2] > vis_thr
        use = vis[:, None, :] & vis[None, :, :]
        count = use.sum(axis=-1)
        full = np.where(count > 0, (np.exp(-e) * use).sum(axis=-1) / np.maximum(count, 1), 0.0)
    return lambda i, others: full[i, others]


def oks_nms(
    keypoints: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    thr: float,
    sigmas: np.ndarray | None = None,
    vis_thr: float | None = None,
) -> np.ndarray:
    """Greedy OKS-NMS over the instances of one image; returns the kept indices (int64), best first.

    keypoints (N, K, 3) x, y, score; scores (N,); areas (N,). An instance is dropped when its
    OKS with a kept, higher-scored one is ``> thr``. Ties in score are broken like MMPose
    (``argsort(scores)[::-1]``).
    """
    kpts, scores, areas = _nms_inputs(keypoints, scores, areas)
    row = _oks_rows(kpts, areas, sigmas, vis_thr)
    order = scores.argsort()[::-1]
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        order = order[1:][row(i, order[1:]) <= thr]
    return np.array(keep, dtype=np.int64)


def soft_oks_nms(
    keypoints: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    thr: float,
    max_dets: int = 20,
    sigmas: np.ndarray | None = None,
    vis_thr: float | None = None,
    method: Literal["gaussian", "linear"] = "gaussian",
) -> tuple[np.ndarray, np.ndarray]:
    """Soft OKS-NMS over one image: returns ``(keep (M,) int64, decayed scores (M,))``, M <= max_dets.

    Repeatedly takes the best-scored remaining instance and decays the others by their OKS
    ``o`` with it: ``gaussian`` ``s * exp(-o^2 / thr)``; ``linear`` ``s * (1 - o)`` where
    ``o >= thr``. Nothing is removed except beyond ``max_dets``. MMPose's ``CocoMetric``
    uses only ``keep`` (the instances keep their undecayed scores).
    """
    if method not in ("gaussian", "linear"):
        raise ValueError(f"method must be 'gaussian' or 'linear', got {method!r}")
    kpts, scores, areas = _nms_inputs(keypoints, scores, areas)
    row = _oks_rows(kpts, areas, sigmas, vis_thr)
    order = scores.argsort()[::-1]
    current = scores[order]
    keep: list[int] = []
    kept_scores: list[float] = []
    while order.size and len(keep) < max_dets:
        i = int(order[0])
        keep.append(i)
        kept_scores.append(float(current[0]))
        ovr = row(i, order[1:])
        order, current = order[1:], current[1:]
        if method == "linear":
            current = np.where(ovr >= thr, current * (1 - ovr), current)
        else:
            current = current * np.exp(-(ovr**2) / thr)
        resort = current.argsort()[::-1]
        order, current = order[resort], current[resort]
    return np.array(keep, dtype=np.int64), np.array(kept_scores, dtype=np.float64)
