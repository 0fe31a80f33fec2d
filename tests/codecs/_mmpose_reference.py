"""Per-instance, per-keypoint NumPy/OpenCV loops in the style of MMPose 1.x's codecs.

An independent re-statement of MMPose's formulas (patch arithmetic, cv2 blurs, finite
differences) used to check that the vectorised torch codecs compute the same numbers, and as the
"naive loop" baseline of ``benchmarks/bench_codecs.py``. Every function handles ONE instance
(keypoints (K, 2) in input pixels), like MMPose's single-instance encoders.
"""

from __future__ import annotations

import cv2
import numpy as np


def _patch_bounds(c: float, radius: float, size: int) -> tuple[int, int, int, int]:
    lo, hi = int(c - radius), int(c + radius + 1)
    return lo, hi, max(0, lo), min(size, hi)


def msra_encode(kp, vis, input_size, heatmap_size, sigma, unbiased=False):
    """(K, 2), (K,) -> heatmaps (K, H, W), weights (K,)."""
    w, h = heatmap_size
    scale = (np.array(input_size) / np.array(heatmap_size)).astype(np.float32)
    kp = kp / scale
    k_num = kp.shape[0]
    heatmaps = np.zeros((k_num, h, w), np.float32)
    weights = vis.astype(np.float32).copy()
    radius = sigma * 3
    xs = np.arange(w, dtype=np.float32)
    ys = np.arange(h, dtype=np.float32)[:, None]
    for k in range(k_num):
        if vis[k] < 0.5:
            weights[k] = 0
            continue
        if unbiased:
            mu = kp[k]
            if mu[0] - radius >= w or mu[1] - radius >= h or mu[0] + radius + 1 < 0 or mu[1] + radius + 1 < 0:
                weights[k] = 0
                continue
            heatmaps[k] = np.exp(-((xs - mu[0]) ** 2 + (ys - mu[1]) ** 2) / (2 * sigma**2))
            continue
        mu = (kp[k] + 0.5).astype(np.int64)
        if not _draw_patch(heatmaps[k], mu, mu, radius, sigma):
            weights[k] = 0
    return heatmaps, weights


def _draw_patch(heatmap, centre, mu, radius, sigma) -> bool:
    """Draw exp(-|p - mu|^2 / 2 sigma^2) on the patch |p - centre| <= radius; False if it misses the map."""
    h, w = heatmap.shape
    x0, x1, hx0, hx1 = _patch_bounds(centre[0], radius, w)
    y0, y1, hy0, hy1 = _patch_bounds(centre[1], radius, h)
    if x0 >= w or y0 >= h or x1 < 0 or y1 < 0:
        return False
    xs = np.arange(hx0, hx1, dtype=np.float32)
    ys = np.arange(hy0, hy1, dtype=np.float32)[:, None]
    heatmap[hy0:hy1, hx0:hx1] = np.exp(-((xs - mu[0]) ** 2 + (ys - mu[1]) ** 2) / (2 * sigma**2))
    return True


def udp_encode(kp, vis, input_size, heatmap_size, sigma):
    w, h = heatmap_size
    scale = ((np.array(input_size) - 1) / (np.array(heatmap_size) - 1)).astype(np.float32)
    kp = kp / scale
    k_num = kp.shape[0]
    heatmaps = np.zeros((k_num, h, w), np.float32)
    weights = vis.astype(np.float32).copy()
    radius = sigma * 3
    for k in range(k_num):
        if vis[k] < 0.5:
            weights[k] = 0
            continue
        if not _draw_patch(heatmaps[k], (kp[k] + 0.5).astype(np.int64), kp[k], radius, sigma):
            weights[k] = 0
    return heatmaps, weights


def udp_combined_encode(kp, vis, input_size, heatmap_size, radius_factor):
    w, h = heatmap_size
    scale = ((np.array(input_size) - 1) / (np.array(heatmap_size) - 1)).astype(np.float32)
    kp = kp / scale
    k_num = kp.shape[0]
    maps = np.zeros((k_num, 3, h, w), np.float32)
    radius = radius_factor * max(w, h)
    xs = np.arange(w)
    ys = np.arange(h)[:, None]
    for k in range(k_num):
        if vis[k] < 0.5:
            continue
        xo = (kp[k, 0] - xs) / radius
        yo = (kp[k, 1] - ys) / radius
        maps[k, 0] = np.where(xo**2 + yo**2 <= 1, 1.0, 0.0)
        maps[k, 1] = xo * maps[k, 0]
        maps[k, 2] = yo * maps[k, 0]
    return maps.reshape(3 * k_num, h, w)


def _argmax(maps):
    k_num, h, w = maps.shape
    flat = maps.reshape(k_num, -1)
    idx = np.argmax(flat, axis=1)
    locs = np.stack((idx % w, idx // w), axis=-1).astype(np.float32)
    vals = flat.max(axis=1)
    locs[vals <= 0] = -1
    return locs, vals


def _blur(maps, ks):
    out = maps.copy()
    border = (ks - 1) // 2
    k_num, h, w = maps.shape
    for k in range(k_num):
        peak = np.max(out[k])
        padded = np.zeros((h + 2 * border, w + 2 * border), np.float32)
        padded[border:-border, border:-border] = out[k]
        padded = cv2.GaussianBlur(padded, (ks, ks), 0)
        out[k] = padded[border:-border, border:-border]
        out[k] *= peak / np.max(out[k])
    return out


def heatmap_decode(maps, scale, mode="quarter", blur_kernel_size=11):
    """maps (K, H, W) -> keypoints (K, 2) in input pixels (after * scale), scores (K,)."""
    k_num, h, w = maps.shape
    locs, vals = _argmax(maps)
    if mode == "quarter":
        for k in range(k_num):
            x, y = locs[k].astype(int)
            dx = maps[k, y, x + 1] - maps[k, y, x - 1] if 1 < x < w - 1 and 0 < y < h else 0.0
            dy = maps[k, y + 1, x] - maps[k, y - 1, x] if 1 < y < h - 1 and 0 < x < w else 0.0
            locs[k] += np.sign([dx, dy]).astype(np.float32) * 0.25
    elif mode == "dark":
        logs = np.log(np.maximum(_blur(maps, blur_kernel_size), 1e-10))
        for k in range(k_num):
            x, y = locs[k].astype(int)
            if not (1 < x < w - 2 and 1 < y < h - 2):
                continue
            m = logs[k]
            d = np.array([0.5 * (m[y, x + 1] - m[y, x - 1]), 0.5 * (m[y + 1, x] - m[y - 1, x])])
            dxx = 0.25 * (m[y, x + 2] - 2 * m[y, x] + m[y, x - 2])
            dyy = 0.25 * (m[y + 2, x] - 2 * m[y, x] + m[y - 2, x])
            dxy = 0.25 * (m[y + 1, x + 1] - m[y - 1, x + 1] - m[y + 1, x - 1] + m[y - 1, x - 1])
            hess = np.array([[dxx, dxy], [dxy, dyy]])
            if dxx * dyy - dxy**2 != 0:
                locs[k] += -np.linalg.inv(hess) @ d
    elif mode == "dark_udp":
        logs = np.log(np.clip(_blur(maps, blur_kernel_size), 1e-3, 50.0))
        for k in range(k_num):
            m = np.pad(logs[k], 1, mode="edge")
            x, y = locs[k].astype(int) + 1
            i = m[y, x]
            d = np.array([0.5 * (m[y, x + 1] - m[y, x - 1]), 0.5 * (m[y + 1, x] - m[y - 1, x])])
            dxx = m[y, x + 1] - 2 * i + m[y, x - 1]
            dyy = m[y + 1, x] - 2 * i + m[y - 1, x]
            dxy = 0.5 * (
                m[y + 1, x + 1] - m[y, x + 1] - m[y + 1, x] + 2 * i - m[y, x - 1] - m[y - 1, x] + m[y - 1, x - 1]
            )
            hess = np.array([[dxx, dxy], [dxy, dyy]]) + np.finfo(np.float32).eps * np.eye(2)
            locs[k] -= np.linalg.inv(hess) @ d
    return locs * scale, vals


def udp_combined_decode(maps, heatmap_size, input_size, radius_factor, blur_kernel_size=11):
    w, h = heatmap_size
    maps = maps.copy()
    for c in range(maps.shape[0]):
        ks = 2 * blur_kernel_size + 1 if c % 3 == 0 else blur_kernel_size
        maps[c] = cv2.GaussianBlur(maps[c], (ks, ks), 0)
    radius = radius_factor * max(w, h)
    locs, vals = _argmax(maps[0::3])
    for k in range(locs.shape[0]):
        x, y = max(int(locs[k, 0]), 0), max(int(locs[k, 1]), 0)
        locs[k] += radius * np.array([maps[3 * k + 1, y, x], maps[3 * k + 2, y, x]])
    scale = (np.array(input_size) - 1) / (np.array(heatmap_size) - 1)
    return locs * scale, vals


def simcc_encode(
    kp, vis, input_size, sigma, split_ratio, smoothing="gaussian", label_smooth_weight=0.0, normalize=True
):
    sx, sy = (sigma, sigma) if np.isscalar(sigma) else sigma
    wx, wy = round(input_size[0] * split_ratio), round(input_size[1] * split_ratio)
    k_num = kp.shape[0]
    tx = np.zeros((k_num, wx), np.float32)
    ty = np.zeros((k_num, wy), np.float32)
    weights = vis.astype(np.float32).copy()
    mus = np.around(kp * split_ratio).astype(np.int64)
    for k in range(k_num):
        mx, my = mus[k]
        if vis[k] < 0.5:
            weights[k] = 0
            continue
        if smoothing == "standard":
            if not (0 <= mx < wx and 0 <= my < wy):
                weights[k] = 0
                continue
            if label_smooth_weight > 0:
                tx[k] = label_smooth_weight / (wx - 1)
                ty[k] = label_smooth_weight / (wy - 1)
            tx[k, mx] = 1 - label_smooth_weight
            ty[k, my] = 1 - label_smooth_weight
            continue
        if mx - 3 * sx >= wx or my - 3 * sy >= wy or mx + 3 * sx + 1 < 0 or my + 3 * sy + 1 < 0:
            weights[k] = 0
            continue
        tx[k] = np.exp(-((np.arange(wx, dtype=np.float32) - mx) ** 2) / (2 * sx**2))
        ty[k] = np.exp(-((np.arange(wy, dtype=np.float32) - my) ** 2) / (2 * sy**2))
    if smoothing == "gaussian" and normalize:
        tx /= sx * np.sqrt(2 * np.pi)
        ty /= sy * np.sqrt(2 * np.pi)
    return tx, ty, weights


def _simcc_dark(locs, simcc, ks):
    out = simcc.copy()
    border = (ks - 1) // 2
    for k in range(simcc.shape[0]):
        peak = np.max(out[k])
        padded = np.zeros((1, simcc.shape[1] + 2 * border), np.float32)
        padded[0, border:-border] = out[k]
        padded = cv2.GaussianBlur(padded, (ks, 1), 0)
        out[k] = padded[0, border:-border]
        out[k] *= peak / np.max(out[k])
    logs = np.pad(np.log(np.clip(out, 1e-3, 50.0)), ((0, 0), (2, 2)), mode="edge")
    locs = locs.copy()
    for k in range(simcc.shape[0]):
        p = int(locs[k] + 2.5)
        dx = 0.5 * (logs[k, p + 1] - logs[k, p - 1])
        dxx = 1e-9 + 0.25 * (logs[k, p + 2] - 2 * logs[k, p] + logs[k, p - 2])
        locs[k] -= dx / dxx
    return locs


def simcc_decode(simcc_x, simcc_y, split_ratio, sigma=None, use_dark=False):
    locs = np.stack((simcc_x.argmax(axis=1), simcc_y.argmax(axis=1)), axis=-1).astype(np.float32)
    vals = np.minimum(simcc_x.max(axis=1), simcc_y.max(axis=1))
    locs[vals <= 0] = -1
    if use_dark:
        sx, sy = (sigma, sigma) if np.isscalar(sigma) else sigma
        kernels = []
        for s in (sx, sy):
            ks = int((s * 20 - 7) // 3)
            kernels.append(ks - int(ks % 2 == 0))
        locs[:, 0] = _simcc_dark(locs[:, 0], simcc_x, kernels[0])
        locs[:, 1] = _simcc_dark(locs[:, 1], simcc_y, kernels[1])
    return locs / split_ratio, vals
