"""SimCC: hand-computed labels, MMPose's decode conventions, and the reference loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from posecore.codecs import SimCC

SQRT_2PI = math.sqrt(2 * math.pi)


def test_golden_one_hot_with_label_smoothing() -> None:
    codec = SimCC(input_size=(4, 3), smoothing_type="standard", split_ratio=1.0, label_smooth_weight=0.3)
    targets = codec.encode(torch.tensor([[[1.2, 2.0]]]), torch.ones(1, 1))
    # x: 4 bins, 0.3 spread over the 3 others; y: 3 bins, 0.3 over the 2 others.
    np.testing.assert_allclose(targets["simcc_x"][0, 0].numpy(), [0.1, 0.7, 0.1, 0.1], atol=1e-7)
    np.testing.assert_allclose(targets["simcc_y"][0, 0].numpy(), [0.15, 0.15, 0.7], atol=1e-7)
    plain = SimCC(input_size=(4, 3), smoothing_type="standard", split_ratio=1.0)
    assert plain.encode(torch.tensor([[[1.2, 2.0]]]), torch.ones(1, 1))["simcc_x"][0, 0].tolist() == [0, 1, 0, 0]


def test_golden_gaussian_labels() -> None:
    codec = SimCC(input_size=(8, 4), sigma=(1.0, 2.0), split_ratio=2.0)
    assert codec.label_size == (16, 8)
    targets = codec.encode(torch.tensor([[[2.0, 1.5]]]), torch.ones(1, 1))  # bins (4, 3)
    x, y = targets["simcc_x"][0, 0], targets["simcc_y"][0, 0]
    assert x[4].item() == pytest.approx(1 / SQRT_2PI) and x[5].item() == pytest.approx(math.exp(-0.5) / SQRT_2PI)
    assert y[3].item() == pytest.approx(1 / (2 * SQRT_2PI))
    assert y[4].item() == pytest.approx(math.exp(-1 / 8) / (2 * SQRT_2PI))
    raw = SimCC(input_size=(8, 4), sigma=1.0, normalize=False).encode(torch.tensor([[[2.0, 1.5]]]), torch.ones(1, 1))
    assert raw["simcc_x"][0, 0, 4] == 1.0 and raw["simcc_x"][0, 0, 12].item() == pytest.approx(math.exp(-32))


def test_bins_round_half_to_even_like_numpy() -> None:
    codec = SimCC(input_size=(8, 8), smoothing_type="standard", split_ratio=2.0)
    # 0.25 * 2 = 0.5 -> 0; 0.75 * 2 = 1.5 -> 2; 1.25 * 2 = 2.5 -> 2
    targets = codec.encode(torch.tensor([[[0.25, 0.75], [1.25, 1.0]]]), torch.ones(1, 2))
    assert targets["simcc_x"][0].argmax(-1).tolist() == [0, 2] and targets["simcc_y"][0].argmax(-1).tolist() == [2, 2]


def test_weights_follow_mmpose() -> None:
    w, h = 8, 8
    gaussian = SimCC(input_size=(w, h), sigma=2.0, split_ratio=1.0)
    standard = SimCC(input_size=(w, h), smoothing_type="standard", split_ratio=1.0)
    keypoints = torch.tensor([[[-2.0, 4.0], [4.0, 9.0], [-20.0, 4.0], [3.0, 3.0]]])
    visible = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    # gaussian: dropped only when the 3-sigma window misses the axis; standard: when the bin is off the axis.
    assert gaussian.encode(keypoints, visible)["keypoint_weights"].tolist() == [[1.0, 1.0, 0.0, 0.0]]
    assert standard.encode(keypoints, visible)["keypoint_weights"].tolist() == [[0.0, 0.0, 0.0, 0.0]]


def test_decode_score_is_the_smaller_peak_and_empty_is_minus_one() -> None:
    codec = SimCC(input_size=(4, 3), split_ratio=2.0)
    sx = torch.zeros(1, 2, 8)
    sy = torch.zeros(1, 2, 6)
    sx[0, 0, 5], sy[0, 0, 2] = 0.9, 0.4
    sx[0, 1, 3], sy[0, 1, 1] = -0.2, -0.1  # logits all <= 0
    keypoints, scores = codec.decode({"simcc_x": sx, "simcc_y": sy})
    assert keypoints[0, 0].tolist() == [2.5, 1.0]
    assert scores[0, 0].item() == pytest.approx(0.4)
    assert keypoints[0, 1].tolist() == [-0.5, -0.5]  # MMPose: location -1 in bins, then / split_ratio


def test_dark_recovers_sub_bin_positions() -> None:
    codec = SimCC(input_size=(192, 256), use_dark=True)
    gx = torch.exp(-((torch.arange(384.0) - 100.3) ** 2) / 72) / (6 * SQRT_2PI)
    gy = torch.exp(-((torch.arange(512.0) - 301.8) ** 2) / 72) / (6 * SQRT_2PI)
    keypoints, _ = codec.decode({"simcc_x": gx.view(1, 1, -1), "simcc_y": gy.view(1, 1, -1)})
    torch.testing.assert_close(keypoints, torch.tensor([[[50.15, 150.9]]]), rtol=0, atol=0.005)
    plain, _ = SimCC(input_size=(192, 256)).decode({"simcc_x": gx.view(1, 1, -1), "simcc_y": gy.view(1, 1, -1)})
    assert plain.tolist() == [[[50.0, 151.0]]]


def test_decode_visibility_is_mmpose_softmax_peak() -> None:
    codec = SimCC(input_size=(4, 3), sigma=(2.0, 3.0), split_ratio=2.0, decode_beta=1.0)
    g = torch.Generator().manual_seed(0)
    sx, sy = torch.randn(2, 5, 8, generator=g), torch.randn(2, 5, 6, generator=g)
    vis = codec.decode_visibility({"simcc_x": sx, "simcc_y": sy})
    expected = torch.minimum(torch.softmax(sx * 2.0, -1).amax(-1), torch.softmax(sy * 3.0, -1).amax(-1))
    torch.testing.assert_close(vis, expected)
    assert vis.shape == (2, 5) and bool(((vis > 0) & (vis <= 1)).all())


@pytest.mark.parametrize(
    ("kwargs", "use_dark"),
    [
        ({"sigma": (4.9, 5.66)}, False),
        ({"sigma": 6.0}, True),
        ({"smoothing_type": "standard", "label_smooth_weight": 0.1}, False),
    ],
)
def test_matches_mmpose_style_reference(reference, random_instances, kwargs: dict, use_dark: bool) -> None:
    codec = SimCC(input_size=(192, 256), use_dark=use_dark, **kwargs)
    keypoints, visible = random_instances[0][:40], random_instances[1][:40]
    targets = codec.encode(keypoints, visible)
    g = torch.Generator().manual_seed(4)
    sx = targets["simcc_x"] + 0.002 * torch.rand(targets["simcc_x"].shape, generator=g)
    sy = targets["simcc_y"] + 0.002 * torch.rand(targets["simcc_y"].shape, generator=g)
    decoded, scores = codec.decode({"simcc_x": sx, "simcc_y": sy})
    smoothing = kwargs.get("smoothing_type", "gaussian")
    for n in range(40):
        tx, ty, w = reference.simcc_encode(
            keypoints[n].numpy(), visible[n].numpy(), (192, 256), codec.sigma, 2.0, smoothing,
            kwargs.get("label_smooth_weight", 0.0),
        )  # fmt: skip
        np.testing.assert_allclose(targets["simcc_x"][n].numpy(), tx, atol=1e-7)
        np.testing.assert_allclose(targets["simcc_y"][n].numpy(), ty, atol=1e-7)
        np.testing.assert_array_equal(targets["keypoint_weights"][n].numpy(), w)
        kp, sc = reference.simcc_decode(sx[n].numpy(), sy[n].numpy(), 2.0, codec.sigma, use_dark)
        valid = w > 0  # DARK on an empty (noise-only) label is ill-conditioned in both implementations
        np.testing.assert_allclose(decoded[n].numpy()[valid], kp[valid], atol=1e-3)
        np.testing.assert_allclose(scores[n].numpy(), sc, atol=1e-7)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"label_smooth_weight": 0.1}, "only applies to smoothing_type='standard'"),
        ({"smoothing_type": "standard", "label_smooth_weight": 1.5}, r"must be in \[0, 1\]"),
        ({"smoothing_type": "onehot"}, "must be 'gaussian' or 'standard'"),
        ({"sigma": (1.0, -1.0)}, "sigma must be a positive number"),
        ({"sigma": (1.0, 2.0, 3.0)}, r"\(sigma_x, sigma_y\) pair"),
        ({"split_ratio": 0.0}, "split_ratio must be a positive number"),
    ],
)
def test_config_errors_say_how_to_fix(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimCC(**{"input_size": (192, 256), **kwargs})


def test_sigma_is_stored_per_axis() -> None:
    assert SimCC(input_size=(192, 256), sigma=6).sigma == (6.0, 6.0)
    assert SimCC(input_size=(192, 256), sigma=[4.9, 5.66]).sigma == (4.9, 5.66)
