"""Heatmap peaks and snapping (CenterNet's refinement), torch and NumPy, against a naive reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from posecore.codecs._refine import (
    heatmap_peaks,
    heatmap_peaks_numpy,
    heatmap_values,
    heatmap_values_numpy,
    snap_to_peaks,
    snap_to_peaks_numpy,
)


def naive_peaks(heat: np.ndarray, stride: int, thr: float) -> list[list[tuple[float, float, float]]]:
    """Per keypoint: (score, x, y) of every 3x3 local maximum >= thr, refined by the parabola through
    the log-probabilities along each axis, best first."""

    def step(before: float, centre: float, after: float) -> float:
        lb, lc, la = (math.log(max(v, 1e-6)) for v in (before, centre, after))
        return min(max((la - lb) / (2 * max(2 * lc - lb - la, 0.05)), -0.5), 0.5)

    k, h, w = heat.shape
    out = []
    for c in range(k):
        found = []
        for y in range(h):
            for x in range(w):
                v = heat[c, y, x]
                hood = [
                    heat[c, j, i] for j in range(y - 1, y + 2) for i in range(x - 1, x + 2) if 0 <= j < h and 0 <= i < w
                ]
                if v >= thr and v == max(hood) and v > 0:
                    dx = step(heat[c, y, x - 1], v, heat[c, y, x + 1]) if 0 < x < w - 1 else 0.0
                    dy = step(heat[c, y - 1, x], v, heat[c, y + 1, x]) if 0 < y < h - 1 else 0.0
                    found.append((float(v), (x + dx) * stride, (y + dy) * stride, y * w + x))
        found.sort(key=lambda t: (-t[0], t[3]))
        out.append([t[:3] for t in found])
    return out


def blobs(k: int, h: int, w: int, centres: list[tuple[int, float, float, float]]) -> np.ndarray:
    """Gaussian blobs (keypoint, x, y in cells, peak value) on a (k, h, w) map of probabilities."""
    ys, xs = np.mgrid[0:h, 0:w]
    heat = np.zeros((k, h, w))
    for c, x, y, v in centres:
        heat[c] = np.maximum(heat[c], v * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / 2.0))
    return heat


def test_peaks_match_the_naive_reference_in_torch_and_numpy():
    rng = np.random.default_rng(0)
    heat = blobs(3, 12, 10, [(0, 3.3, 4.0, 0.9), (0, 7.0, 9.6, 0.6), (1, 0.0, 5.0, 0.8), (2, 5.0, 5.0, 0.05)])
    heat += rng.uniform(0, 1e-3, heat.shape)  # no exact ties between neighbours
    ref = naive_peaks(heat, 4, 0.1)
    xy_t, s_t = heatmap_peaks(torch.from_numpy(heat), 4, 0.1, 5)
    xy_n, s_n = heatmap_peaks_numpy(heat, 4, 0.1, 5)
    for c in range(3):
        n = len(ref[c])
        assert int((s_n[c] > 0).sum()) == n == int((s_t[c] > 0).sum())
        for m, (score, x, y) in enumerate(ref[c]):
            assert s_n[c, m] == pytest.approx(score) and s_t[c, m].item() == pytest.approx(score)
            assert tuple(xy_n[c, m]) == pytest.approx((x, y)) and tuple(xy_t[c, m].tolist()) == pytest.approx((x, y))
    # the Gaussian blob at (3.3, 4.0) cells: peak cell (3, 4), the log-parabola finds 3.3 -> 13.2 px
    assert tuple(xy_n[0, 0]) == pytest.approx((13.2, 16.0), abs=0.02)
    assert ref[2] == []  # below the threshold


def test_peak_positions_are_continuous_in_the_heatmap():
    """Last-digit differences (an ONNX runtime's) move a peak by as little: no jump of a quarter
    cell when its two neighbours are nearly equal, nor of a cell when two cells share the top."""
    rng = np.random.default_rng(1)
    heat = blobs(2, 12, 10, [(0, 4.0, 5.0, 0.9), (1, 4.5, 5.0, 0.9)])  # centred on a cell; between two
    for _ in range(20):
        noisy = heat + rng.uniform(-1e-6, 1e-6, heat.shape)
        xy_t, _ = heatmap_peaks(torch.from_numpy(noisy), 4, 0.1, 1)
        xy_n, _ = heatmap_peaks_numpy(noisy, 4, 0.1, 1)
        np.testing.assert_allclose(xy_n[:, 0], [[16.0, 20.0], [18.0, 20.0]], atol=1e-3)
        np.testing.assert_allclose(xy_t[:, 0].numpy(), xy_n[:, 0], atol=1e-4)


def test_a_flat_top_moves_at_most_half_a_cell():
    heat = np.full((1, 3, 3), 0.5)
    heat[0, 1, 2] = 0.5 + 1e-9  # a flat plateau: the curvature floor bounds the step
    xy, score = heatmap_peaks_numpy(heat, 4, 0.1, 1)
    assert score[0, 0] == pytest.approx(0.5) and 0 <= xy[0, 0, 0] - 8 <= 2 + 1e-6


def test_peak_count_is_capped_by_the_map_size():
    heat = np.full((2, 2, 2), 0.5)
    xy, score = heatmap_peaks_numpy(heat, 8, 0.1, 30)
    assert xy.shape == (2, 4, 2) and score.shape == (2, 4)


def _case() -> tuple[np.ndarray, ...]:
    """Two people side by side; keypoint 0 of each has a peak 3 px from its regressed position."""
    keypoints = np.array([[[20.0, 20.0], [30.0, 40.0]], [[70.0, 20.0], [80.0, 40.0]]])
    boxes = np.array([[10.0, 10.0, 40.0, 60.0], [60.0, 10.0, 90.0, 60.0]])  # longer side 50: radius 15 px
    peaks = np.array(
        [
            [[23.0, 20.0], [67.0, 20.0], [0.0, 0.0]],  # keypoint 0: one peak per person, one empty slot
            [[45.0, 40.0], [0.0, 0.0], [0.0, 0.0]],  # keypoint 1: 15 px right of person 0's -> inside its grown box
        ]
    )
    scores = np.array([[0.9, 0.8, 0.0], [0.7, 0.0, 0.0]])
    return keypoints, boxes, peaks, scores


def test_snap_moves_each_keypoint_to_its_own_persons_nearest_peak():
    keypoints, boxes, peaks, scores = _case()
    got, snapped = snap_to_peaks_numpy(keypoints, boxes, peaks, scores, 0.3)
    np.testing.assert_allclose(got[0, 0], [23.0, 20.0])
    np.testing.assert_allclose(got[1, 0], [67.0, 20.0])
    np.testing.assert_allclose(got[0, 1], [45.0, 40.0])  # 15 px = radius: allowed
    np.testing.assert_allclose(got[1, 1], [80.0, 40.0])  # 35 px away: stays
    assert snapped.tolist() == [[True, True], [True, False]]
    got_t, snapped_t = snap_to_peaks(*(torch.from_numpy(a) for a in (keypoints, boxes, peaks, scores)), 0.3)
    np.testing.assert_allclose(got_t.numpy(), got)
    assert snapped_t.tolist() == snapped.tolist()


def test_snap_radius_and_empty_slots_limit_the_move():
    keypoints, boxes, peaks, scores = _case()
    got, snapped = snap_to_peaks_numpy(keypoints, boxes, peaks, scores, 0.05)  # 2.5 px: nothing is that close
    np.testing.assert_allclose(got, keypoints)
    assert not snapped.any()
    # an empty slot (score 0) at the regressed position itself is never taken
    peaks[0, 2] = keypoints[0, 0]
    got, _ = snap_to_peaks_numpy(keypoints, boxes, peaks, scores, 0.3)
    np.testing.assert_allclose(got[0, 0], [23.0, 20.0])


@pytest.mark.parametrize("people", [0, 2])
def test_snap_handles_no_people_and_no_peaks(people):
    keypoints = np.zeros((people, 3, 2))
    boxes = np.zeros((people, 4))
    for peaks in (np.zeros((3, 0, 2)), np.zeros((3, 2, 2))):
        scores = np.zeros(peaks.shape[:2])
        got, snapped = snap_to_peaks_numpy(keypoints, boxes, peaks, scores, 0.3)
        assert got.shape == (people, 3, 2) and snapped.shape == (people, 3) and not snapped.any()
        got_t, _ = snap_to_peaks(*(torch.from_numpy(a) for a in (keypoints, boxes, peaks, scores)), 0.3)
        assert got_t.shape == (people, 3, 2)


def test_random_cases_agree_between_torch_and_numpy():
    rng = np.random.default_rng(1)
    for _ in range(20):
        heat = rng.uniform(0, 1, (4, 9, 11)) ** 4
        keypoints = rng.uniform(0, 44, (3, 4, 2))
        lo = rng.uniform(0, 20, (3, 2))
        boxes = np.concatenate([lo, lo + rng.uniform(5, 25, (3, 2))], axis=1)
        xy_n, s_n = heatmap_peaks_numpy(heat, 4, 0.2, 6)
        xy_t, s_t = heatmap_peaks(torch.from_numpy(heat), 4, 0.2, 6)
        np.testing.assert_allclose(xy_t.numpy(), xy_n)
        np.testing.assert_allclose(s_t.numpy(), s_n)
        got_n, sn = snap_to_peaks_numpy(keypoints, boxes, xy_n, s_n, 0.4)
        got_t, st = snap_to_peaks(*(torch.from_numpy(a) for a in (keypoints, boxes, xy_n, s_n)), 0.4)
        np.testing.assert_allclose(got_t.numpy(), got_n)
        assert st.numpy().tolist() == sn.tolist()
        moved = np.linalg.norm(got_n - keypoints, axis=-1)
        side = (boxes[:, 2:] - boxes[:, :2]).max(axis=1)[:, None]
        assert (moved <= 0.4 * side + 1e-9).all() and not math.isnan(float(moved.sum()))


def test_heatmap_values_interpolate_between_cells_and_clamp_at_the_border():
    """Cell (x, y) of map k holds 10 y + x + 100 k: a bilinear sample is that plane at the sampled
    cell position (x_in / stride, y_in / stride), clamped to the map outside it."""
    k, h, w = 2, 3, 4
    ys, xs = np.mgrid[0:h, 0:w]
    heat = np.stack([10.0 * ys + xs + 100.0 * c for c in range(k)])
    keypoints = np.array(
        [
            [[0.0, 0.0], [4.0, 8.0]],  # cells (0, 0) and (1, 2): exact cells
            [[6.0, 2.0], [2.0, 6.0]],  # cells (1.5, 0.5) and (0.5, 1.5): between cells
            [[-8.0, 100.0], [13.0, 9.0]],  # outside: clamped to (0, 2); the last column/row, (3, 2)
        ]
    )
    want = np.array([[0.0, 121.0], [6.5, 115.5], [20.0, 123.0]])
    got = heatmap_values_numpy(heat, keypoints, 4)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    got_t = heatmap_values(torch.from_numpy(heat), torch.from_numpy(keypoints), 4)
    np.testing.assert_allclose(got_t.numpy(), want, rtol=0, atol=1e-12)
    assert heatmap_values_numpy(heat, np.zeros((0, k, 2)), 4).shape == (0, k)
    assert tuple(heatmap_values(torch.from_numpy(heat), torch.zeros(0, k, 2, dtype=torch.float64), 4).shape) == (0, k)
    # a map one cell wide or high: every sample is that cell
    one = np.array([[[7.0]]])
    assert heatmap_values_numpy(one, np.array([[[3.0, 5.0]]]), 4).tolist() == [[7.0]]
    assert heatmap_values(torch.from_numpy(one), torch.tensor([[[3.0, 5.0]]], dtype=torch.float64), 4).tolist() == [
        [7.0]
    ]
