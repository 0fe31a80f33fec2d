"""IntegralRegression: normalised MSRA heatmaps + coordinates, combined weights."""

from __future__ import annotations

import pytest
import torch

from posecore.codecs import IntegralRegression, MSRAHeatmap


def test_heatmaps_are_normalised_msra_maps_and_coords_are_normalised() -> None:
    codec = IntegralRegression(input_size=(192, 256), heatmap_size=(48, 64), sigma=2.0)
    keypoints = torch.tensor([[[96.0, 128.0], [40.0, 50.0]]])
    visible = torch.tensor([[1.0, 0.0]])
    targets = codec.encode(keypoints, visible)
    msra = MSRAHeatmap(input_size=(192, 256), heatmap_size=(48, 64), sigma=2.0).encode(keypoints, visible)
    assert targets["heatmaps"][0, 0].sum().item() == pytest.approx(1.0)
    assert targets["heatmaps"][0, 1].sum() == 0.0  # invisible: stays all zero (the 1e-24 guards the division)
    torch.testing.assert_close(targets["heatmaps"][0, 0], msra["heatmaps"][0, 0] / msra["heatmaps"][0, 0].sum())
    assert targets["coords"][0, 0].tolist() == [0.5, 0.5]
    assert targets["keypoint_weights"].tolist() == [[1.0, 0.0]]


def test_weights_combine_heatmap_and_regression_validity() -> None:
    codec = IntegralRegression(input_size=(192, 256), heatmap_size=(48, 64), normalize=False)
    # x = -2 is within 3 sigma of the heatmap (heatmap weight 1) but outside the input (regression weight 0).
    targets = codec.encode(torch.tensor([[[-2.0, 128.0]]]), torch.ones(1, 1))
    assert targets["heatmaps"][0, 0].max() == 1.0  # unnormalised MSRA peak
    assert targets["keypoint_weights"].tolist() == [[0.0]]


def test_decode_reads_coords_only() -> None:
    codec = IntegralRegression(input_size=(192, 256), heatmap_size=(48, 64))
    outputs = {
        "coords": torch.tensor([[[0.5, 0.25]]]),
        "heatmaps": torch.zeros(1, 1, 64, 48),
        "sigmas": torch.ones(1, 1, 2),
    }
    keypoints, scores = codec.decode(outputs)
    assert keypoints.tolist() == [[[96.0, 64.0]]] and scores.tolist() == [[1.0]]


def test_inner_config_errors_surface() -> None:
    with pytest.raises(ValueError, match="sigma must be a positive number"):
        IntegralRegression(input_size=(192, 256), heatmap_size=(48, 64), sigma=-1.0)
