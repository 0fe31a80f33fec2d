from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch import Tensor

from posecore.transforms import KeyedRNG, Normalize, PhotometricDistortion
from posecore.transforms.common import hsv_to_rgb, rgb_to_hsv


def test_hsv_matches_opencv(real_images: Tensor) -> None:
    rgb = real_images[:2].float() / 255.0
    ours = rgb_to_hsv(rgb)
    image = rgb[0].permute(1, 2, 0).numpy().astype(np.float32)
    ref = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)  # float: H in degrees, S and V in [0, 1]
    got = ours[0].permute(1, 2, 0).numpy() * np.array([360.0, 1.0, 1.0], np.float32)
    hue_diff = np.abs(got[..., 0] - ref[..., 0])
    hue_diff = np.minimum(hue_diff, 360.0 - hue_diff)
    assert hue_diff.max() < 0.05
    np.testing.assert_allclose(got[..., 1:], ref[..., 1:], atol=1e-5)
    assert torch.allclose(hsv_to_rgb(ours), rgb, atol=1e-5)


def test_hue_shift_golden() -> None:
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    hsv = rgb_to_hsv(red)
    hsv[:, 0] += 18 / 180  # 18 OpenCV hue units = 36 degrees
    np.testing.assert_allclose(hsv_to_rgb(hsv).flatten().numpy(), [1.0, 0.6, 0.0], atol=1e-6)


def test_photometric_keeps_dtype_range_and_is_keyed(real_images: Tensor) -> None:
    batch = {"images": real_images, "keys": torch.arange(8)}
    out = PhotometricDistortion()(batch, KeyedRNG(0))["images"]
    assert out.dtype == torch.uint8 and out.shape == real_images.shape
    assert (out != real_images).any()
    floats = PhotometricDistortion()({"images": real_images.float(), "keys": torch.arange(8)}, KeyedRNG(0))["images"]
    assert floats.dtype == torch.float32 and floats.min() >= 0 and floats.max() <= 255
    single = PhotometricDistortion()({"images": real_images[5:6].float(), "keys": torch.tensor([5])}, KeyedRNG(0))[
        "images"
    ]
    assert (single - floats[5:6]).abs().max() < 1e-3


def test_photometric_without_range_only_permutes_channels(real_images: Tensor) -> None:
    still = PhotometricDistortion(brightness_delta=0, contrast_range=(1, 1), saturation_range=(1, 1), hue_delta=0)
    x = real_images.float()
    out = still({"images": x, "keys": torch.arange(100, 108)}, KeyedRNG(1))["images"]
    perms = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
    swapped = 0
    for i in range(8):
        errs = [(out[i] - x[i, list(p)]).abs().max().item() for p in perms]
        assert min(errs) < 0.01  # the HSV round trip is exact to float precision
        swapped += errs[0] >= 0.01
    assert 0 < swapped < 8


def test_photometric_rates() -> None:
    """Each step is taken with MMPose's probabilities: on a grey pixel only brightness and contrast act."""
    n = 8000
    grey = torch.full((n, 3, 1, 1), 100.0)
    out = PhotometricDistortion(contrast_range=(1, 1))({"images": grey, "keys": torch.arange(n)}, KeyedRNG(2))["images"]
    changed = (out[:, 0, 0, 0] - 100.0).abs() > 1e-3
    assert changed.float().mean().item() == pytest.approx(0.5, abs=0.03)
    assert (out[:, 0] - 100).abs().max() <= 32.0 + 1e-3


def test_normalize_golden() -> None:
    images = torch.tensor([123.675, 116.28, 103.53 + 57.375]).view(1, 3, 1, 1).to(torch.float32)
    out = Normalize()({"images": images})["images"]
    np.testing.assert_allclose(out.flatten().numpy(), [0.0, 0.0, 1.0], atol=1e-5)
    with pytest.raises(ValueError, match="positive std"):
        Normalize(mean=(0.0,), std=(0.0,))


def _saturate_cv2(image: np.ndarray, alpha: float) -> np.ndarray:
    """MMPose's saturation step done in OpenCV's float HSV: S x alpha, clipped at 1."""
    hsv = cv2.cvtColor(image / 255.0, cv2.COLOR_RGB2HSV)
    hsv[..., 1] = np.clip(hsv[..., 1] * alpha, 0, 1)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0


@pytest.mark.parametrize("alpha", [0.6, 1.4])
def test_saturation_in_rgb_equals_the_hsv_route(real_images: Tensor, alpha: float) -> None:
    still = PhotometricDistortion(
        brightness_delta=0, contrast_range=(1, 1), saturation_range=(alpha, alpha), hue_delta=0
    )
    x = real_images.float()
    out = still({"images": x, "keys": torch.arange(8)}, KeyedRNG(4))["images"]
    perms = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
    saturated = 0
    for i in range(8):
        image = x[i].permute(1, 2, 0).numpy()
        sat = _saturate_cv2(image, alpha)
        got = out[i].permute(1, 2, 0).numpy()
        plain = min(np.abs(got - image[..., list(p)]).max() for p in perms)
        scaled = min(np.abs(got - sat[..., list(p)]).max() for p in perms)
        assert min(plain, scaled) < 0.05
        saturated += scaled < 0.05 and plain > 0.05
    assert saturated > 0
