"""The shared codec pieces against OpenCV and MMPose's conventions."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from posecore.codecs._decode import heatmap_argmax, max_last, simcc_argmax
from posecore.codecs._utils import gaussian_1d, gaussian_blur, gaussian_blur1d, gaussian_rows, in_reach


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


@pytest.mark.parametrize(
    ("size", "sigma", "radius", "divisor"), [(48, 2.0, 6.0, 1.0), (384, 4.9, None, 12.3), (5, 3.0, None, 1.0)]
)
def test_gaussian_rows_equal_gaussian_1d_bit_for_bit(
    size: int, sigma: float, radius: float | None, divisor: float
) -> None:
    g = torch.Generator().manual_seed(0)
    centre = torch.randint(-3 * size, 4 * size, (6, 9), generator=g).float()
    centre[0, :6] = torch.tensor([0.0, size - 1.0, -1.0, float(size), float("inf"), -float("inf")])
    keep = torch.rand(6, 9, generator=g) > 0.3
    window = None if radius is None else (centre, radius)
    expected = gaussian_1d(centre, size, sigma, window) * (keep / divisor)[..., None]
    got = gaussian_rows(centre, size, sigma, radius, keep=keep, divisor=divisor)
    assert torch.equal(got, expected)
    assert torch.equal(gaussian_rows(centre, size, sigma, radius), gaussian_1d(centre, size, sigma, window))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_max_last_is_torch_max(dtype: torch.dtype) -> None:
    maps = torch.randint(0, 4, (3, 5, 7), generator=torch.Generator().manual_seed(0)).to(dtype)  # many ties
    maps[0, 0, 2] = maps[0, 0, 5] = float("nan")
    maps[0, 1] = -float("inf")
    maps = maps.transpose(0, 1).requires_grad_()  # not contiguous, needs grad
    vals, idx = max_last(maps)
    ref_vals, ref_idx = maps.max(dim=-1)
    assert torch.equal(idx, ref_idx)
    torch.testing.assert_close(vals, ref_vals, rtol=0, atol=0, equal_nan=True)
    assert vals.requires_grad
