"""The decode steps the codecs share: argmax of heatmaps and SimCC vectors, and the refinements.

Conventions follow MMPose 1.x (``mmpose/codecs/utils``): the argmax marks locations whose value
is <= 0 as -1, and the refinements (quarter-pixel shift, DARK, DARK-UDP, SimCC-DARK) use the
same finite differences. As in ``_utils.py``, each step has its NumPy twin (``*_numpy``) right
below it for the torch-free bundle runtime; torch is imported lazily.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from posecore._lazy import lazy_import

from ._utils import (
    gaussian_blur,
    gaussian_blur1d,
    gaussian_blur1d_numpy,
    gaussian_blur_numpy,
    max_ratio,
    max_ratio_numpy,
)

if TYPE_CHECKING:
    import torch
    from torch import Tensor
else:
    torch = lazy_import("torch")


# --------------------------------------------------------------------------- argmax


def max_last(t: Tensor) -> tuple[Tensor, Tensor]:
    """(..., L) -> values, indices of the maximum along the last dim, as ``t.max(dim=-1)``.

    The first maximum wins and NaN counts as the maximum, as in torch and ``np.argmax``. On the
    CPU the index comes from NumPy (zero-copy): torch's CPU max/argmax along a dim is ~20x slower
    than ``np.argmax`` (torch 2.13/2.14, 1 thread, (1088, 3072) maps: 5.6 ms against 0.29 ms), and
    it was nearly all of a decode. The values are gathered in torch, so they keep autograd.
    """
    if t.device.type != "cpu" or t.dtype not in (torch.float32, torch.float64):
        return t.max(dim=-1)
    idx = torch.from_numpy(t.detach().numpy().argmax(axis=-1))
    return t.gather(-1, idx.unsqueeze(-1)).squeeze(-1), idx


def heatmap_argmax(heatmaps: Tensor) -> tuple[Tensor, Tensor]:
    """(N, K, H, W) -> locations (N, K, 2) as (x, y) and values (N, K); location -1 where value <= 0."""
    w = heatmaps.shape[-1]
    vals, idx = max_last(heatmaps.flatten(-2))
    locs = torch.stack((idx % w, torch.div(idx, w, rounding_mode="floor")), dim=-1).to(heatmaps.dtype)
    return torch.where((vals > 0)[..., None], locs, -1), vals


def heatmap_argmax_numpy(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = heatmaps.shape[-1]
    flat = heatmaps.reshape(*heatmaps.shape[:2], -1)
    idx = flat.argmax(axis=-1)
    vals = np.take_along_axis(flat, idx[..., None], -1)[..., 0]
    locs = np.stack((idx % w, idx // w), axis=-1).astype(heatmaps.dtype)
    return np.where((vals > 0)[..., None], locs, -1).astype(heatmaps.dtype), vals


def simcc_argmax(simcc_x: Tensor, simcc_y: Tensor) -> tuple[Tensor, Tensor]:
    """(N, K, Wx), (N, K, Wy) -> locations (N, K, 2) in bins and score min(max_x, max_y); -1 where score <= 0."""
    vx, ix = max_last(simcc_x)
    vy, iy = max_last(simcc_y)
    vals = torch.minimum(vx, vy)
    locs = torch.stack((ix, iy), dim=-1).to(simcc_x.dtype)
    return torch.where((vals > 0)[..., None], locs, -1), vals


def simcc_argmax_numpy(simcc_x: np.ndarray, simcc_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ix, iy = simcc_x.argmax(-1), simcc_y.argmax(-1)
    vals = np.minimum(
        np.take_along_axis(simcc_x, ix[..., None], -1)[..., 0], np.take_along_axis(simcc_y, iy[..., None], -1)[..., 0]
    )
    locs = np.stack((ix, iy), axis=-1).astype(simcc_x.dtype)
    return np.where((vals > 0)[..., None], locs, -1).astype(simcc_x.dtype), vals


# --------------------------------------------------------------------------- refinements
# Only the few taps around each argmax are needed, so the log is taken on gathered values
# rather than on whole maps. Clamping an index into the map is the same as MMPose's edge
# padding (UDP, SimCC); where MMPose reads no padding (MSRA DARK) the taps are guarded anyway.


def _sampler(maps: Tensor, x: Tensor, y: Tensor) -> Callable[[int, int], Tensor]:
    """f(dx, dy) -> maps[n, k, y + dy, x + dx] with indices clamped into the map; all (N, K)."""
    h, w = maps.shape[-2:]
    flat = maps.flatten(-2)

    def f(dx: int, dy: int) -> Tensor:
        xi = (x + dx).clamp(0, w - 1)
        yi = (y + dy).clamp(0, h - 1)
        return flat.gather(-1, (yi * w + xi).unsqueeze(-1)).squeeze(-1)

    return f


def _log_sampler(heatmaps: Tensor, locs: Tensor, ksize: int, lo: float, hi: float) -> Callable[[int, int], Tensor]:
    """Taps of log(clip(MMPose-blurred heatmaps, lo, hi)) around the integer locations."""
    blurred = gaussian_blur(heatmaps, ksize)
    ratio = max_ratio(heatmaps, blurred, dims=(-2, -1))
    f = _sampler(blurred, locs[..., 0].long(), locs[..., 1].long())
    return lambda dx, dy: (f(dx, dy) * ratio).clamp(lo, hi).log()


def _sampler_numpy(maps: np.ndarray, x: np.ndarray, y: np.ndarray) -> Callable[[int, int], np.ndarray]:
    h, w = maps.shape[-2:]
    flat = maps.reshape(*maps.shape[:2], -1)

    def f(dx: int, dy: int) -> np.ndarray:
        xi = np.clip(x + dx, 0, w - 1)
        yi = np.clip(y + dy, 0, h - 1)
        return np.take_along_axis(flat, (yi * w + xi)[..., None], -1)[..., 0]

    return f


def _log_sampler_numpy(
    heatmaps: np.ndarray, locs: np.ndarray, ksize: int, lo: float, hi: float
) -> Callable[[int, int], np.ndarray]:
    blurred = gaussian_blur_numpy(heatmaps, ksize)
    ratio = max_ratio_numpy(heatmaps, blurred, (-2, -1))
    f = _sampler_numpy(blurred, locs[..., 0].astype(np.int64), locs[..., 1].astype(np.int64))
    return lambda dx, dy: np.log(np.clip(f(dx, dy) * ratio, lo, hi))


def refine_quarter(locs: Tensor, heatmaps: Tensor) -> Tensor:
    """MMPose ``refine_keypoints``: move 0.25 px from the argmax toward the higher neighbour, per axis."""
    h, w = heatmaps.shape[-2:]
    x, y = locs[..., 0].long(), locs[..., 1].long()
    f = _sampler(heatmaps, x, y)
    # MMPose's bounds, quirks included (1 < x, 0 < y < H).
    ok_x = (x > 1) & (x < w - 1) & (y > 0) & (y < h)
    ok_y = (y > 1) & (y < h - 1) & (x > 0) & (x < w)
    dx = torch.where(ok_x, f(1, 0) - f(-1, 0), 0)
    dy = torch.where(ok_y, f(0, 1) - f(0, -1), 0)
    return locs + 0.25 * torch.stack((torch.sign(dx), torch.sign(dy)), dim=-1)


def refine_quarter_numpy(locs: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
    h, w = heatmaps.shape[-2:]
    x, y = locs[..., 0].astype(np.int64), locs[..., 1].astype(np.int64)
    f = _sampler_numpy(heatmaps, x, y)
    ok_x = (x > 1) & (x < w - 1) & (y > 0) & (y < h)
    ok_y = (y > 1) & (y < h - 1) & (x > 0) & (x < w)
    dx = np.where(ok_x, f(1, 0) - f(-1, 0), 0)
    dy = np.where(ok_y, f(0, 1) - f(0, -1), 0)
    return locs + (0.25 * np.stack((np.sign(dx), np.sign(dy)), axis=-1)).astype(locs.dtype)


def refine_dark(locs: Tensor, heatmaps: Tensor, blur_kernel_size: int) -> Tensor:
    """MMPose ``refine_keypoints_dark``: Newton step on the log of the blurred heatmap (DARK)."""
    h, w = heatmaps.shape[-2:]
    f = _log_sampler(heatmaps, locs, blur_kernel_size, 1e-10, math.inf)
    x, y = locs[..., 0], locs[..., 1]
    c = f(0, 0)
    dx = 0.5 * (f(1, 0) - f(-1, 0))
    dy = 0.5 * (f(0, 1) - f(0, -1))
    dxx = 0.25 * (f(2, 0) - 2 * c + f(-2, 0))
    dyy = 0.25 * (f(0, 2) - 2 * c + f(0, -2))
    dxy = 0.25 * (f(1, 1) - f(1, -1) - f(-1, 1) + f(-1, -1))
    det = dxx * dyy - dxy**2
    ok = (x > 1) & (x < w - 2) & (y > 1) & (y < h - 2) & (det != 0)
    det = torch.where(ok, det, 1)
    off_x = -(dyy * dx - dxy * dy) / det
    off_y = -(dxx * dy - dxy * dx) / det
    return locs + torch.where(ok[..., None], torch.stack((off_x, off_y), dim=-1), 0)


def refine_dark_numpy(locs: np.ndarray, heatmaps: np.ndarray, blur_kernel_size: int) -> np.ndarray:
    h, w = heatmaps.shape[-2:]
    f = _log_sampler_numpy(heatmaps, locs, blur_kernel_size, 1e-10, math.inf)
    x, y = locs[..., 0], locs[..., 1]
    c = f(0, 0)
    dx = 0.5 * (f(1, 0) - f(-1, 0))
    dy = 0.5 * (f(0, 1) - f(0, -1))
    dxx = 0.25 * (f(2, 0) - 2 * c + f(-2, 0))
    dyy = 0.25 * (f(0, 2) - 2 * c + f(0, -2))
    dxy = 0.25 * (f(1, 1) - f(1, -1) - f(-1, 1) + f(-1, -1))
    det = dxx * dyy - dxy**2
    ok = (x > 1) & (x < w - 2) & (y > 1) & (y < h - 2) & (det != 0)
    det = np.where(ok, det, 1).astype(det.dtype)
    off = np.stack((-(dyy * dx - dxy * dy) / det, -(dxx * dy - dxy * dx) / det), axis=-1)
    return locs + np.where(ok[..., None], off, 0).astype(locs.dtype)


def refine_dark_udp(locs: Tensor, heatmaps: Tensor, blur_kernel_size: int) -> Tensor:
    """MMPose ``refine_keypoints_dark_udp``: DARK with a clipped log, edge padding and 1-px differences."""
    f = _log_sampler(heatmaps, locs, blur_kernel_size, 1e-3, 50.0)
    i = f(0, 0)
    ix1, ix1_ = f(1, 0), f(-1, 0)
    iy1, iy1_ = f(0, 1), f(0, -1)
    dx = 0.5 * (ix1 - ix1_)
    dy = 0.5 * (iy1 - iy1_)
    eps = torch.finfo(torch.float32).eps  # MMPose adds eps * I to the hessian before inverting
    dxx = ix1 - 2 * i + ix1_ + eps
    dyy = iy1 - 2 * i + iy1_ + eps
    dxy = 0.5 * (f(1, 1) - ix1 - iy1 + 2 * i - ix1_ - iy1_ + f(-1, -1))
    det = dxx * dyy - dxy**2
    ok = det != 0
    det = torch.where(ok, det, 1)
    step = torch.stack(((dyy * dx - dxy * dy) / det, (dxx * dy - dxy * dx) / det), dim=-1)
    return locs - torch.where(ok[..., None], step, 0)


def refine_dark_udp_numpy(locs: np.ndarray, heatmaps: np.ndarray, blur_kernel_size: int) -> np.ndarray:
    f = _log_sampler_numpy(heatmaps, locs, blur_kernel_size, 1e-3, 50.0)
    i = f(0, 0)
    ix1, ix1_ = f(1, 0), f(-1, 0)
    iy1, iy1_ = f(0, 1), f(0, -1)
    dx = 0.5 * (ix1 - ix1_)
    dy = 0.5 * (iy1 - iy1_)
    eps = np.finfo(np.float32).eps
    dxx = ix1 - 2 * i + ix1_ + eps
    dyy = iy1 - 2 * i + iy1_ + eps
    dxy = 0.5 * (f(1, 1) - ix1 - iy1 + 2 * i - ix1_ - iy1_ + f(-1, -1))
    det = dxx * dyy - dxy**2
    ok = det != 0
    det = np.where(ok, det, 1).astype(det.dtype)
    step = np.stack(((dyy * dx - dxy * dy) / det, (dxx * dy - dxy * dx) / det), axis=-1)
    return locs - np.where(ok[..., None], step, 0).astype(locs.dtype)


def refine_simcc_dark(locs: Tensor, simcc: Tensor, blur_kernel_size: int) -> Tensor:
    """MMPose ``refine_simcc_dark`` on one axis: locs (N, K) in bins, simcc (N, K, L) -> refined (N, K)."""
    n = simcc.shape[-1]
    blurred = gaussian_blur1d(simcc, blur_kernel_size)
    ratio = max_ratio(simcc, blurred, dims=(-1,))
    px = torch.trunc(locs + 2.5).long() - 2  # MMPose: int(x + 2.5) in a copy edge-padded by 2 bins

    def f(d: int) -> Tensor:
        tap = blurred.gather(-1, (px + d).clamp(0, n - 1).unsqueeze(-1)).squeeze(-1)
        return (tap * ratio).clamp(1e-3, 50.0).log()

    dx = 0.5 * (f(1) - f(-1))
    dxx = 1e-9 + 0.25 * (f(2) - 2 * f(0) + f(-2))
    return locs - dx / dxx


def refine_simcc_dark_numpy(locs: np.ndarray, simcc: np.ndarray, blur_kernel_size: int) -> np.ndarray:
    n = simcc.shape[-1]
    blurred = gaussian_blur1d_numpy(simcc, blur_kernel_size)
    ratio = max_ratio_numpy(simcc, blurred, (-1,))
    px = np.trunc(locs + 2.5).astype(np.int64) - 2

    def f(d: int) -> np.ndarray:
        tap = np.take_along_axis(blurred, np.clip(px + d, 0, n - 1)[..., None], -1)[..., 0]
        return np.log(np.clip(tap * ratio, 1e-3, 50.0))

    dx = 0.5 * (f(1) - f(-1))
    dxx = 1e-9 + 0.25 * (f(2) - 2 * f(0) + f(-2))
    return locs - dx / dxx


def simcc_blur_kernel(sigma: float) -> int:
    """MMPose's SimCC-DARK blur kernel for a label sigma: (20 sigma - 7) // 3, made odd."""
    ks = int((sigma * 20 - 7) // 3)
    return ks - int(ks % 2 == 0)
