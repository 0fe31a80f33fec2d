"""MSRAHeatmap: hand-computed targets, MMPose's decode conventions, and equality with the reference loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from posecore.codecs import MSRAHeatmap

E_HALF, E_ONE = math.exp(-0.5), math.exp(-1.0)


def test_golden_gaussian_at_an_integer_position() -> None:
    codec = MSRAHeatmap(input_size=(8, 8), heatmap_size=(8, 8), sigma=1.0)
    targets = codec.encode(torch.tensor([[[3.0, 4.0]]]), torch.ones(1, 1))
    hm = targets["heatmaps"][0, 0]  # (H, W): row = y, column = x
    assert hm[4, 3] == 1.0
    for y, x in [(4, 2), (4, 4), (3, 3), (5, 3)]:
        assert hm[y, x].item() == pytest.approx(E_HALF, abs=1e-7)
    for y, x in [(3, 2), (3, 4), (5, 2), (5, 4)]:
        assert hm[y, x].item() == pytest.approx(E_ONE, abs=1e-7)
    assert hm[4, 6].item() == pytest.approx(math.exp(-4.5), abs=1e-7)  # 3 sigma away: still in the patch
    assert hm[4, 7] == 0.0 and hm[0, 3] == 0.0  # 4 sigma away: outside MMPose's (6 sigma + 1)^2 patch
    assert targets["keypoint_weights"].tolist() == [[1.0]]
    ys, xs = np.mgrid[0:8, 0:8]
    patch = (abs(xs - 3) <= 3) & (abs(ys - 4) <= 3)
    expected = np.exp(-((xs - 3) ** 2 + (ys - 4) ** 2) / 2.0) * patch
    np.testing.assert_allclose(hm.numpy(), expected, atol=1e-7)


def test_centre_is_rounded_after_scaling() -> None:
    codec = MSRAHeatmap(input_size=(32, 32), heatmap_size=(8, 8), sigma=1.0)
    # (13.9, 18.1) / 4 = (3.475, 4.525) -> int(x + 0.5) = (3, 5)
    hm = codec.encode(torch.tensor([[[13.9, 18.1]]]), torch.ones(1, 1))["heatmaps"][0, 0]
    assert hm[5, 3] == 1.0 and hm.argmax().item() == 5 * 8 + 3


def test_unbiased_gaussian_is_exact_and_untruncated() -> None:
    codec = MSRAHeatmap(input_size=(8, 8), heatmap_size=(8, 8), sigma=1.0, use_dark=True)
    hm = codec.encode(torch.tensor([[[3.5, 4.0]]]), torch.ones(1, 1))["heatmaps"][0, 0]
    assert hm[4, 3].item() == pytest.approx(math.exp(-0.125)) and hm[4, 4].item() == pytest.approx(math.exp(-0.125))
    assert hm[4, 7].item() == pytest.approx(math.exp(-12.25 / 2), rel=1e-5)  # no 3-sigma cut


def test_quarter_pixel_decode_and_scaling() -> None:
    codec = MSRAHeatmap(input_size=(16, 16), heatmap_size=(8, 8), sigma=1.0)
    hm = torch.zeros(1, 1, 8, 8)
    hm[0, 0, 4, 3] = 1.0
    hm[0, 0, 4, 4], hm[0, 0, 4, 2] = 0.5, 0.2  # right neighbour higher: x + 0.25
    hm[0, 0, 3, 3], hm[0, 0, 5, 3] = 0.6, 0.3  # upper neighbour higher: y - 0.25
    keypoints, scores = codec.decode({"heatmaps": hm})
    assert keypoints.tolist() == [[[6.5, 7.5]]]  # (3.25, 3.75) * 16 / 8
    assert scores.tolist() == [[1.0]]


def test_decode_follows_mmpose_bounds_and_marks_empty_maps() -> None:
    codec = MSRAHeatmap(input_size=(8, 8), heatmap_size=(8, 8), sigma=1.0)
    hm = torch.zeros(1, 2, 8, 8)
    hm[0, 0, 4, 1], hm[0, 0, 4, 2] = 1.0, 0.5  # argmax at x = 1: MMPose only shifts x when 1 < x < W - 1
    keypoints, scores = codec.decode({"heatmaps": hm})
    assert keypoints[0, 0].tolist() == [1.0, 4.0]
    assert keypoints[0, 1].tolist() == [-1.0, -1.0] and scores[0, 1] == 0.0  # no positive response


def test_dark_recovers_sub_pixel_positions() -> None:
    codec = MSRAHeatmap(input_size=(192, 256), heatmap_size=(48, 64), sigma=2.0, use_dark=True)
    keypoints = torch.tensor([[[100.3, 130.7], [57.9, 201.2], [150.0, 64.5]]])
    decoded, scores = codec.decode(codec.encode(keypoints, torch.ones(1, 3)))
    torch.testing.assert_close(decoded, keypoints, rtol=0, atol=0.01)
    assert bool((scores > 0.9).all())


def test_keypoint_outside_the_map_but_within_three_sigma_keeps_its_weight() -> None:
    # MMPose: a partly visible patch is a valid target.
    codec = MSRAHeatmap(input_size=(32, 32), heatmap_size=(8, 8), sigma=1.0)
    targets = codec.encode(torch.tensor([[[-12.0, 16.0], [-8.0, 16.0], [-30.0, 16.0]]]), torch.ones(1, 3))
    assert targets["keypoint_weights"].tolist() == [[1.0, 1.0, 0.0]]
    # -12 / 4 = -3 -> int(-2.5) = -2; -8 / 4 = -2 -> int(-1.5) = -1 (int() truncates toward zero, as in MMPose)
    assert targets["heatmaps"][0, 0, 4, 0].item() == pytest.approx(math.exp(-2.0))
    assert targets["heatmaps"][0, 1, 4, 0].item() == pytest.approx(math.exp(-0.5))
    assert targets["heatmaps"][0, 2].sum() == 0.0


@pytest.mark.parametrize("use_dark", [False, True])
def test_matches_mmpose_style_reference(reference, random_instances, use_dark: bool) -> None:
    codec = MSRAHeatmap(input_size=(192, 256), heatmap_size=(48, 64), sigma=2.0, use_dark=use_dark)
    keypoints, visible = random_instances[0][:40], random_instances[1][:40]
    targets = codec.encode(keypoints, visible)
    scale = np.array([4.0, 4.0], np.float32)
    g = torch.Generator().manual_seed(1)
    outputs = targets["heatmaps"] * 0.9 + 0.02 * torch.rand(targets["heatmaps"].shape, generator=g)
    decoded, scores = codec.decode({"heatmaps": outputs})
    for n in range(40):
        hm, w = reference.msra_encode(keypoints[n].numpy(), visible[n].numpy(), (192, 256), (48, 64), 2.0, use_dark)
        np.testing.assert_allclose(targets["heatmaps"][n].numpy(), hm, atol=1e-6)
        np.testing.assert_array_equal(targets["keypoint_weights"][n].numpy(), w)
        kp, sc = reference.heatmap_decode(outputs[n].numpy(), scale, "dark" if use_dark else "quarter")
        valid = w > 0  # DARK on a noise-only map is ill-conditioned in both implementations
        np.testing.assert_allclose(decoded[n].numpy()[valid], kp[valid], atol=1e-3)
        np.testing.assert_allclose(scores[n].numpy(), sc, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sigma": -1.0}, r"sigma must be a positive number \(gaussian std"),
        ({"sigma": 0}, "sigma must be a positive number"),
        ({"blur_kernel_size": 10}, "blur_kernel_size must be an odd positive int"),
        ({"heatmap_size": (48, 0)}, r"heatmap_size must be a \(W, H\) pair"),
    ],
)
def test_config_errors_say_how_to_fix(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MSRAHeatmap(**{"input_size": (192, 256), "heatmap_size": (48, 64), **kwargs})
