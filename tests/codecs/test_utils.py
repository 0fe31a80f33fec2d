"""The shared codec pieces against OpenCV and MMPose's conventions."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from posecore.codecs._utils import gaussian_blur, gaussian_blur1d, heatmap_argmax, in_reach, simcc_argmax


@pytest.mark.parametrize("ksize", [3, 5, 7, 11, 17, 23])
def test_blur_kernels_are_opencv_kernels(ksize: int) -> None:
    impulse = torch.zeros(1, 1, 41, 41)
    impulse[0, 0, 20, 20] = 1.0
    kernel_2d = gaussian_blur(impulse, ksize)[
        0, 0, 20 - ksize // 2 : 21 + ksize // 2, 20 - ksize // 2 : 21 + ksize // 2
    ]
    k = cv2.getGaussianKernel(ksize, 0)
    np.testing.assert_allclose(kernel_2d.numpy(), k @ k.T, atol=1e-7)


@pytest.mark.parametrize("ksize", [5, 11, 23])
def test_blur_borders_match_opencv(ksize: int) -> None:
    maps = torch.rand(2, 30, 24, generator=torch.Generator().manual_seed(0))
    border = ksize // 2
    for m, zero, reflect in zip(maps, gaussian_blur(maps, ksize), gaussian_blur(maps, ksize, "reflect"), strict=True):
        padded = np.pad(m.numpy(), border)  # MMPose's gaussian_blur: zero-pad, blur, crop
        expected = cv2.GaussianBlur(padded, (ksize, ksize), 0)[border:-border, border:-border]
        np.testing.assert_allclose(zero.numpy(), expected, atol=1e-6)
        np.testing.assert_allclose(reflect.numpy(), cv2.GaussianBlur(m.numpy(), (ksize, ksize), 0), atol=1e-6)


def test_blur1d_matches_opencv_row_blur() -> None:
    seq = torch.rand(3, 100, generator=torch.Generator().manual_seed(1))
    ks = 37
    padded = np.pad(seq.numpy(), ((0, 0), (ks // 2, ks // 2)))
    expected = np.stack([cv2.GaussianBlur(row[None], (ks, 1), 0)[0] for row in padded])[:, ks // 2 : -(ks // 2)]
    np.testing.assert_allclose(gaussian_blur1d(seq, ks).numpy(), expected, atol=1e-6)


def test_argmax_takes_the_first_maximum_and_marks_non_positive_maps() -> None:
    maps = torch.zeros(1, 3, 4, 5)
    maps[0, 0, 1, 3] = maps[0, 0, 2, 0] = 2.0  # tie: row-major first wins, as np.argmax
    maps[0, 1] = -1.0
    locs, vals = heatmap_argmax(maps)
    assert locs[0].tolist() == [[3.0, 1.0], [-1.0, -1.0], [-1.0, -1.0]]
    assert vals[0].tolist() == [2.0, -1.0, 0.0]


def test_simcc_argmax_scores_the_smaller_peak() -> None:
    sx = torch.tensor([[[0.1, 0.7, 0.2]]])
    sy = torch.tensor([[[0.5, 0.1]]])
    locs, vals = simcc_argmax(sx, sy)
    assert locs.tolist() == [[[1.0, 0.0]]] and vals.tolist() == [[0.5]]


def test_in_reach_is_mmpose_bound() -> None:
    # W = H = 10, radius 3: kept while centre - 3 < 10 and centre + 3 + 1 >= 0.
    centre = torch.tensor([[[12.9, 5.0], [13.0, 5.0], [-4.0, 5.0], [-4.1, 5.0]]])
    assert in_reach(centre, 3.0, (10, 10)).tolist() == [[True, False, True, False]]
