"""Regression (and RLE's scores): normalisation numbers and MMPose's validity rule."""

from __future__ import annotations

import pytest
import torch

from posecore.codecs import Regression


def test_golden_normalisation_and_weights() -> None:
    codec = Regression(input_size=(200, 100))
    keypoints = torch.tensor([[[50.0, 25.0], [199.0, 99.0], [199.5, 50.0], [-0.1, 3.0], [10.0, 10.0], [20.0, 20.0]]])
    visible = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.5, 0.0]])
    targets = codec.encode(keypoints, visible)
    assert targets["coords"][0, 0].tolist() == [0.25, 0.25]
    assert targets["coords"][0, 1].tolist() == pytest.approx([0.995, 0.99])
    # valid = 0 <= x <= W - 1 and 0 <= y <= H - 1 and visible > 0.5 (strictly)
    assert targets["keypoint_weights"].tolist() == [[1.0, 1.0, 0.0, 0.0, 0.0, 0.0]]


def test_decode_scales_back_and_scores_ones() -> None:
    codec = Regression(input_size=(200, 100))
    keypoints, scores = codec.decode({"coords": torch.tensor([[[0.25, 0.5], [1.0, 0.0]]])})
    assert keypoints.tolist() == [[[50.0, 50.0], [200.0, 0.0]]]
    assert scores.tolist() == [[1.0, 1.0]]


def test_rle_sigmas_give_the_scores() -> None:
    codec = Regression(input_size=(200, 100))
    coords = torch.full((1, 2, 2), 0.5)
    sigmas = torch.tensor([[[0.1, 0.3], [0.5, 0.9]]])
    _, scores = codec.decode({"coords": coords, "sigmas": sigmas})
    torch.testing.assert_close(scores, torch.tensor([[0.8, 0.3]]))


def test_round_trip_is_exact_to_float_precision() -> None:
    codec = Regression(input_size=(192, 256))
    keypoints = torch.rand(64, 17, 2) * torch.tensor([191.0, 255.0])
    decoded, _ = codec.decode(codec.encode(keypoints, torch.ones(64, 17)))
    torch.testing.assert_close(decoded, keypoints, rtol=0, atol=1e-4)
