"""Keypoint heatmap refinement of one-stage people (CenterNet's multi-person pose), in torch and NumPy.

A one-stage head regresses each person's keypoints as offsets from an anchor point at stride 8
or more: the person is found, but keypoints far from the anchor (wrists, ankles) land several
pixels off, which is what keypoint AP's OKS punishes. CenterNet (Zhou et al. 2019, "Objects as
Points", section 4) adds a per-keypoint heatmap at a finer stride and moves each regressed
keypoint onto the nearest peak of its heatmap that belongs to the person: the anchor says which
person, the heatmap says where exactly.

Definitions (shared by the torch and the NumPy variant, same operation order):

- Peaks of heatmap k (probabilities, (K, h, w)): cells equal to the maximum of their 3x3
  neighbourhood and >= ``peak_thr``; the ``max_peaks`` highest per keypoint (ties: lower flat
  index first). A peak's position is its cell (x, y) plus the sub-cell offset of the parabola
  through the log-probabilities of the cell and its two neighbours along each axis,
  (l_+ - l_-) / (2 (2 l_0 - l_- - l_+)) kept in [-0.5, 0.5] (exact for a Gaussian peak; DARK's
  Taylor step, Zhang et al. 2020, one axis at a time; none at the border), times the heatmap
  stride s: input pixel x_in = x_hm * s, the heatmap codecs' convention. Unlike MMPose's quarter
  step towards the higher neighbour, the offset is continuous in the heatmap, so the ONNX
  model's last-digit differences cannot move a keypoint by a quarter cell (export parity).
- A person's keypoint k moves to the nearest peak of heatmap k that lies in the person's box
  grown by ``radius`` of its longer side on every side and within ``radius`` * longer side of
  the regressed point; with no such peak it stays where it was regressed.
- A keypoint's heatmap value: heatmap k sampled bilinearly at the keypoint's final position
  (x_in / s, y_in / s, clamped to the map). Multiplied into the keypoint's visibility score, it
  marks keypoints left where they were regressed, off any peak, as unsure, so that ranking people
  by their keypoint scores (``evaluate.score_mode: bbox_keypoint``) puts the well-located first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from posecore._lazy import lazy_import

if TYPE_CHECKING:
    import torch
    from torch import Tensor
else:
    torch = lazy_import("torch")

#: Smallest log-probability curvature the sub-cell step divides by: a trained peak (sigma <= 3 cells,
#: curvature 1 / sigma^2 >= 0.11) is fitted exactly, a flat top moves little and smoothly.
MIN_CURVATURE = 0.05
#: Probabilities are clipped to this before the log.
MIN_PROB = 1e-6

__all__ = [
    "heatmap_peaks",
    "heatmap_peaks_numpy",
    "heatmap_values",
    "heatmap_values_numpy",
    "snap_to_peaks",
    "snap_to_peaks_numpy",
]


def heatmap_peaks(heat: Tensor, stride: int, peak_thr: float, max_peaks: int) -> tuple[Tensor, Tensor]:
    """heat (K, h, w) probabilities -> peak positions (K, M, 2) in input pixels, scores (K, M)
    (0 where fewer than M peaks), M = min(max_peaks, h * w)."""
    k, h, w = heat.shape
    pooled = torch.nn.functional.max_pool2d(heat[None], 3, stride=1, padding=1)[0]
    peak = torch.where((heat == pooled) & (heat >= peak_thr), heat, torch.zeros_like(heat)).reshape(k, -1)
    m = min(max_peaks, h * w)
    # stable descending order: ties keep the lower flat index (topk does not promise that)
    order = torch.sort(peak, dim=1, descending=True, stable=True).indices[:, :m]
    score = peak.gather(1, order)
    y, x = order // w, order % w
    flat = heat.reshape(k, -1)

    def at(yy: Tensor, xx: Tensor) -> Tensor:
        return flat.gather(1, yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1))

    def step(before: Tensor, centre: Tensor, after: Tensor, inner: Tensor) -> Tensor:
        lb, lc, la = (v.clamp_min(MIN_PROB).log() for v in (before, centre, after))
        d = (la - lb) / (2 * (2 * lc - lb - la).clamp_min(MIN_CURVATURE))
        return d.clamp(-0.5, 0.5) * inner

    dx = step(at(y, x - 1), at(y, x), at(y, x + 1), (x > 0) & (x < w - 1))
    dy = step(at(y - 1, x), at(y, x), at(y + 1, x), (y > 0) & (y < h - 1))
    xy = torch.stack((x.to(heat.dtype) + dx, y.to(heat.dtype) + dy), dim=-1) * stride
    return xy, score


def heatmap_peaks_numpy(
    heat: np.ndarray, stride: int, peak_thr: float, max_peaks: int
) -> tuple[np.ndarray, np.ndarray]:
    """``heatmap_peaks`` in NumPy."""
    k, h, w = heat.shape
    padded = np.pad(heat, ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    pooled = np.max(np.stack([padded[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)]), axis=0)
    peak = np.where((heat == pooled) & (heat >= peak_thr), heat, 0.0).reshape(k, -1)
    m = min(max_peaks, h * w)
    order = np.argsort(-peak, axis=1, kind="stable")[:, :m]
    score = np.take_along_axis(peak, order, axis=1)
    y, x = order // w, order % w
    flat = heat.reshape(k, -1)

    def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        return np.take_along_axis(flat, np.clip(yy, 0, h - 1) * w + np.clip(xx, 0, w - 1), axis=1)

    def step(before: np.ndarray, centre: np.ndarray, after: np.ndarray, inner: np.ndarray) -> np.ndarray:
        lb, lc, la = (np.log(np.maximum(v, MIN_PROB)) for v in (before, centre, after))
        d = (la - lb) / (2 * np.maximum(2 * lc - lb - la, MIN_CURVATURE))
        return np.clip(d, -0.5, 0.5) * inner

    dx = step(at(y, x - 1), at(y, x), at(y, x + 1), (x > 0) & (x < w - 1))
    dy = step(at(y - 1, x), at(y, x), at(y + 1, x), (y > 0) & (y < h - 1))
    xy = (np.stack((x + dx, y + dy), axis=-1) * stride).astype(heat.dtype)
    return xy, score


def snap_to_peaks(
    keypoints: Tensor, boxes: Tensor, peaks: Tensor, peak_scores: Tensor, radius: float
) -> tuple[Tensor, Tensor]:
    """keypoints (P, K, 2), boxes (P, 4) xyxy, peaks (K, M, 2), peak_scores (K, M) ->
    keypoints (P, K, 2) moved to their peak (module docstring), snapped (P, K) bool."""
    if keypoints.shape[0] == 0 or peaks.shape[1] == 0:
        return keypoints, torch.zeros(keypoints.shape[:2], dtype=torch.bool, device=keypoints.device)
    side = (boxes[:, 2:] - boxes[:, :2]).amax(dim=1).clamp_min(0) * radius  # (P,)
    lo, hi = boxes[:, None, None, :2] - side[:, None, None, None], boxes[:, None, None, 2:] + side[:, None, None, None]
    cand = peaks[None]  # (1, K, M, 2)
    inside = ((cand >= lo) & (cand <= hi)).all(dim=-1)  # (P, K, M)
    dist = (keypoints[:, :, None] - cand).norm(dim=-1)
    ok = (peak_scores[None] > 0) & inside & (dist <= side[:, None, None])
    dist = torch.where(ok, dist, torch.full_like(dist, float("inf")))
    best = dist.argmin(dim=-1)  # (P, K): first of equal distances
    chosen = peaks[torch.arange(peaks.shape[0], device=peaks.device)[None], best]  # (P, K, 2)
    snapped = ok.any(dim=-1)
    return torch.where(snapped[..., None], chosen.to(keypoints.dtype), keypoints), snapped


def snap_to_peaks_numpy(
    keypoints: np.ndarray, boxes: np.ndarray, peaks: np.ndarray, peak_scores: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """``snap_to_peaks`` in NumPy."""
    if keypoints.shape[0] == 0 or peaks.shape[1] == 0:
        return keypoints, np.zeros(keypoints.shape[:2], dtype=bool)
    side = np.clip((boxes[:, 2:] - boxes[:, :2]).max(axis=1), 0, None) * radius
    lo, hi = boxes[:, None, None, :2] - side[:, None, None, None], boxes[:, None, None, 2:] + side[:, None, None, None]
    cand = peaks[None]
    inside = ((cand >= lo) & (cand <= hi)).all(axis=-1)
    dist = np.linalg.norm(keypoints[:, :, None] - cand, axis=-1)
    ok = (peak_scores[None] > 0) & inside & (dist <= side[:, None, None])
    dist = np.where(ok, dist, np.inf)
    best = dist.argmin(axis=-1)
    chosen = peaks[np.arange(peaks.shape[0])[None], best]
    snapped = ok.any(axis=-1)
    return np.where(snapped[..., None], chosen.astype(keypoints.dtype), keypoints), snapped


def heatmap_values(heat: Tensor, keypoints: Tensor, stride: int) -> Tensor:
    """heat (K, h, w) probabilities, keypoints (P, K, 2) in input pixels -> (P, K): heatmap k
    sampled bilinearly at keypoint k (cell i is input pixel i * stride; clamped to the map)."""
    k, h, w = heat.shape
    if keypoints.shape[0] == 0:
        return keypoints.new_zeros(keypoints.shape[:2])
    x = (keypoints[..., 0] / stride).clamp(0, w - 1)
    y = (keypoints[..., 1] / stride).clamp(0, h - 1)
    x0, y0 = x.floor().clamp(max=max(w - 2, 0)), y.floor().clamp(max=max(h - 2, 0))
    fx, fy = x - x0, y - y0
    x0, y0 = x0.long(), y0.long()
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    chan = torch.arange(k, device=heat.device)[None].expand_as(x0)

    def at(yy: Tensor, xx: Tensor) -> Tensor:
        return heat[chan, yy, xx]

    top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
    bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
    return top * (1 - fy) + bottom * fy


def heatmap_values_numpy(heat: np.ndarray, keypoints: np.ndarray, stride: int) -> np.ndarray:
    """``heatmap_values`` in NumPy."""
    k, h, w = heat.shape
    if keypoints.shape[0] == 0:
        return np.zeros(keypoints.shape[:2], dtype=heat.dtype)
    x = np.clip(keypoints[..., 0] / stride, 0, w - 1)
    y = np.clip(keypoints[..., 1] / stride, 0, h - 1)
    x0, y0 = np.minimum(np.floor(x), max(w - 2, 0)), np.minimum(np.floor(y), max(h - 2, 0))
    fx, fy = x - x0, y - y0
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    chan = np.broadcast_to(np.arange(k)[None], x0.shape)

    def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        return heat[chan, yy, xx]

    top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
    bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
    return top * (1 - fy) + bottom * fy
