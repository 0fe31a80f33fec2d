"""UDPHeatmap: corner-aligned scaling, sub-pixel gaussians, combined maps, and the reference loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from posecore.codecs import UDPHeatmap


def test_corner_aligned_scaling_and_sub_pixel_gaussian() -> None:
    # (input - 1) / (heatmap - 1) = 8 / 4 = 2: input pixel 8 is heatmap pixel 4.
    codec = UDPHeatmap(input_size=(9, 9), heatmap_size=(5, 5), sigma=1.0)
    hm = codec.encode(torch.tensor([[[8.0, 4.0], [5.0, 4.0]]]), torch.ones(1, 2))["heatmaps"][0]
    assert hm[0, 2, 4] == 1.0  # (8, 4) -> (4, 2)
    # (5, 4) -> (2.5, 2): the gaussian sits between pixels 2 and 3.
    assert hm[1, 2, 2].item() == pytest.approx(math.exp(-0.125))
    assert hm[1, 2, 3].item() == pytest.approx(math.exp(-0.125))
    assert hm[1, 3, 2].item() == pytest.approx(math.exp(-0.125 - 0.5))


def test_patch_is_cut_around_the_rounded_position() -> None:
    codec = UDPHeatmap(input_size=(16, 16), heatmap_size=(16, 16), sigma=1.0)
    hm = codec.encode(torch.tensor([[[5.4, 8.0]]]), torch.ones(1, 1))["heatmaps"][0, 0]
    # centre int(5.4 + 0.5) = 5, patch x in [2, 8]; values use the exact 5.4.
    assert hm[8, 8].item() == pytest.approx(math.exp(-(2.6**2) / 2), rel=1e-5)
    assert hm[8, 9] == 0.0 and hm[8, 2].item() == pytest.approx(math.exp(-(3.4**2) / 2), rel=1e-5)


def test_decode_is_the_exact_inverse_of_encode() -> None:
    # MMPose's decode multiplies by input / (heatmap - 1) and would be ~0.5 px off at the centre.
    codec = UDPHeatmap(input_size=(192, 256), heatmap_size=(48, 64), sigma=2.0)
    keypoints = torch.tensor([[[95.5, 127.5], [100.3, 130.7], [30.2, 220.9]]])
    decoded, scores = codec.decode(codec.encode(keypoints, torch.ones(1, 3)))
    torch.testing.assert_close(decoded, keypoints, rtol=0, atol=0.01)
    assert bool((scores > 0.9).all())


def test_golden_combined_maps() -> None:
    # scale 1, radius = 0.25 * 17 = 4.25
    codec = UDPHeatmap(input_size=(17, 17), heatmap_size=(17, 17), heatmap_type="combined", radius_factor=0.25)
    targets = codec.encode(torch.tensor([[[8.0, 8.0], [3.0, 3.0]]]), torch.tensor([[1.0, 0.0]]))
    maps = targets["heatmaps"][0]
    assert maps.shape == (6, 17, 17)
    disc, x_off, y_off = maps[0], maps[1], maps[2]
    assert disc[12, 8] == 1.0 and disc[13, 8] == 0.0 and disc[11, 11] == 1.0 and disc[12, 11] == 0.0
    assert x_off[8, 10].item() == pytest.approx((8 - 10) / 4.25)
    assert y_off[5, 8].item() == pytest.approx(3 / 4.25)
    assert x_off[8, 14] == 0.0  # offsets only inside the disc
    assert int(disc.sum()) == sum(1 for y in range(17) for x in range(17) if (x - 8) ** 2 + (y - 8) ** 2 <= 4.25**2)
    assert maps[3:].abs().sum() == 0.0  # invisible keypoint: nothing drawn
    assert targets["keypoint_weights"].tolist() == [[1.0, 0.0]]


def test_combined_round_trip_is_lossy_like_mmpose() -> None:
    # Decoding blurs the offset maps together with the zeros around the disc, which shrinks the
    # offsets (MMPose's algorithm, matched below): ~0.85 px mean error, up to ~2 px in the interior.
    codec = UDPHeatmap(input_size=(192, 256), heatmap_size=(48, 64), heatmap_type="combined")
    keypoints = torch.tensor([[[95.5, 127.5], [100.3, 130.7], [30.2, 200.9]]])
    decoded, _ = codec.decode(codec.encode(keypoints, torch.ones(1, 3)))
    assert float((decoded - keypoints).norm(dim=-1).max()) < 2.0


def test_matches_mmpose_style_reference(reference, random_instances) -> None:
    codec = UDPHeatmap(input_size=(192, 256), heatmap_size=(48, 64), sigma=2.0)
    keypoints, visible = random_instances[0][:40], random_instances[1][:40]
    targets = codec.encode(keypoints, visible)
    g = torch.Generator().manual_seed(2)
    outputs = targets["heatmaps"] * 0.9 + 0.02 * torch.rand(targets["heatmaps"].shape, generator=g)
    decoded, scores = codec.decode({"heatmaps": outputs})
    scale = (np.array([192, 256]) - 1) / (np.array([48, 64]) - 1)
    for n in range(40):
        hm, w = reference.udp_encode(keypoints[n].numpy(), visible[n].numpy(), (192, 256), (48, 64), 2.0)
        np.testing.assert_allclose(targets["heatmaps"][n].numpy(), hm, atol=1e-6)
        np.testing.assert_array_equal(targets["keypoint_weights"][n].numpy(), w)
        kp, sc = reference.heatmap_decode(outputs[n].numpy(), scale, "dark_udp")
        valid = w > 0  # DARK on a noise-only map is ill-conditioned in both implementations
        np.testing.assert_allclose(decoded[n].numpy()[valid], kp[valid], atol=1e-3)
        np.testing.assert_allclose(scores[n].numpy(), sc, atol=1e-6)


def test_combined_matches_mmpose_style_reference(reference, random_instances) -> None:
    codec = UDPHeatmap(input_size=(192, 256), heatmap_size=(48, 64), heatmap_type="combined")
    keypoints, visible = random_instances[0][:20], random_instances[1][:20]
    targets = codec.encode(keypoints, visible)
    g = torch.Generator().manual_seed(3)
    outputs = targets["heatmaps"] + 0.02 * torch.rand(targets["heatmaps"].shape, generator=g)
    decoded, scores = codec.decode({"heatmaps": outputs})
    for n in range(20):
        maps = reference.udp_combined_encode(
            keypoints[n].numpy(), visible[n].numpy(), (192, 256), (48, 64), codec.radius_factor
        )
        np.testing.assert_allclose(targets["heatmaps"][n].numpy(), maps, atol=1e-6)
        kp, sc = reference.udp_combined_decode(outputs[n].numpy(), (48, 64), (192, 256), codec.radius_factor)
        np.testing.assert_allclose(decoded[n].numpy(), kp, atol=1e-3)
        np.testing.assert_allclose(scores[n].numpy(), sc, atol=1e-5)


def test_any_heatmap_size_is_fine() -> None:
    # UDP needs no integer stride: 192x256 -> 37x50 is accepted and round-trips.
    codec = UDPHeatmap(input_size=(192, 256), heatmap_size=(37, 50))
    keypoints = torch.tensor([[[100.3, 130.7]]])
    decoded, _ = codec.decode(codec.encode(keypoints, torch.ones(1, 1)))
    torch.testing.assert_close(decoded, keypoints, rtol=0, atol=0.02)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"heatmap_type": "offset"}, "heatmap_type must be 'gaussian' or 'combined'"),
        ({"sigma": -2.0}, "sigma must be a positive number"),
        ({"radius_factor": 0.0}, "radius_factor must be a positive number"),
        ({"heatmap_size": (1, 64)}, "need >= 2 pixels"),
        ({"heatmap_type": "combined", "heatmap_size": (8, 8)}, "lower blur_kernel_size below"),
    ],
)
def test_config_errors_say_how_to_fix(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        UDPHeatmap(**{"input_size": (192, 256), "heatmap_size": (48, 64), **kwargs})


def test_udp_codec_asks_for_the_udp_crop() -> None:
    assert UDPHeatmap(input_size=(192, 256), heatmap_size=(48, 64)).use_udp is True
