"""Registry-driven loss tests (finite, differentiable, zero weight = no contribution) and golden values."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

import posecore.models.losses  # noqa: F401  (registers the losses)
from posecore.models.builders import LOSSES
from posecore.models.losses import RealNVP

B, K = 2, 4


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _heatmaps(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(B, K, 8, 6, generator=g), torch.rand(B, K, 8, 6, generator=g)


def _simcc(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(B, K, 12, generator=g), torch.softmax(torch.randn(B, K, 12, generator=g), dim=-1)


def _coords(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(B, K, 2, generator=g), torch.rand(B, K, 2, generator=g)


def _rle(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    coords, target = _coords(g)
    sigmas = torch.rand(B, K, 2, generator=g) * 0.8 + 0.1
    return torch.cat([coords, sigmas], dim=-1), target


def _boxes(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """B x K overlapping xyxy boxes in pixels (the detection losses' leading shape is free)."""

    def boxes() -> torch.Tensor:
        xy = torch.rand(B, K, 2, generator=g) * 10
        return torch.cat([xy, xy + 20 + torch.rand(B, K, 2, generator=g) * 10], dim=-1)

    return boxes(), boxes()


def _peak_maps(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Heatmap logits and multi-peak targets in [0, 1] with exact 1s at the peaks (``focal_heatmap``)."""
    target = torch.rand(B, K, 8, 6, generator=g) * 0.9
    target[:, :, 2, 3] = 1.0
    target[:, :, 6, 1] = 1.0
    return torch.randn(B, K, 8, 6, generator=g), target


def _logits(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(B, K, generator=g), torch.rand(B, K, generator=g)


def _joints3d(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(B, K, 3, generator=g) * 100, torch.randn(B, K, 3, generator=g) * 100


def _sequences3d(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """B sequences of T = 3 frames of K 3D joints (B, T, K, 3); weights (B, K) hold for every frame."""
    return torch.randn(B, 3, K, 3, generator=g) * 100, torch.randn(B, 3, K, 3, generator=g) * 100


#: Inputs (pred, target) for each registered loss; weights are (B, K).
INPUTS: dict[str, Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]]] = {
    "keypoint_mse": _heatmaps,
    "keypoint_ohkm_mse": _heatmaps,
    "adaptive_wing": _heatmaps,
    "focal_heatmap": _peak_maps,
    "kl_discret": _simcc,
    "smooth_l1": _coords,
    "wing": _coords,
    "rle": _rle,
    "iou": _boxes,  # B x K boxes, a weight each
    "oks": _coords,  # B instances of K keypoints, weights = visibility
    "bce": _logits,
    "mpjpe": _joints3d,
    "mpjpe_velocity": _sequences3d,
}
OPTIONS = {"keypoint_ohkm_mse": {"topk": 2}}
#: Where keypoint (0, 1) of the (B, K) weights sits in pred, for losses whose keypoint axis is not 1.
KEYPOINT_INDEX: dict[str, tuple[int | slice, ...]] = {"mpjpe_velocity": (0, slice(None), 1)}


def _build(name: str, **kwargs):
    return LOSSES.build(name, **{**OPTIONS.get(name, {}), **kwargs})


def test_every_loss_has_inputs():
    missing = sorted(set(LOSSES.names()) - set(INPUTS))
    assert not missing, f"add an input recipe for loss(es) {missing} in tests/models/losses/test_losses.py"


@pytest.mark.parametrize("name", LOSSES.names())
def test_finite_and_differentiable(name):
    pred, target = INPUTS[name](_gen(0))
    pred.requires_grad_(True)
    weights = torch.ones(B, K)
    loss = _build(name)(pred, target, weights)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


@pytest.mark.parametrize("name", LOSSES.names())
def test_zero_weights_give_zero_loss(name):
    pred, target = INPUTS[name](_gen(1))
    pred.requires_grad_(True)
    loss = _build(name)(pred, target, torch.zeros(B, K))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert float(pred.grad.abs().sum()) == 0.0


@pytest.mark.parametrize("name", LOSSES.names())
def test_zero_weight_keypoint_does_not_contribute(name):
    pred, target = INPUTS[name](_gen(2))
    weights = torch.ones(B, K)
    weights[0, 1] = 0
    other = pred.clone()
    at = KEYPOINT_INDEX.get(name, (0, 1))
    other[at] = other[at] * 0.5 + 0.3  # a different prediction for the ignored keypoint
    loss = _build(name)
    torch.testing.assert_close(loss(pred, target, weights), loss(other, target, weights))


@pytest.mark.parametrize("name", LOSSES.names())
def test_mismatched_shapes_are_reported(name):
    pred, target = INPUTS[name](_gen(3))
    with pytest.raises(ValueError, match="pred|weights"):
        _build(name)(pred[:, :-1], target, torch.ones(B, K))


# ----------------------------------------------------------------------------- golden values


def test_keypoint_mse_golden():
    pred = torch.tensor([[[[0.0, 1.0]], [[2.0, 2.0]]]])  # (1, 2, 1, 2)
    target = torch.zeros_like(pred)
    weights = torch.tensor([[1.0, 0.5]])
    # squared errors 0, 1 | 4, 4; weighted 0, 1 | 2, 2 -> mean 5 / 4
    assert float(LOSSES.build("keypoint_mse")(pred, target, weights)) == pytest.approx(1.25)
    assert float(LOSSES.build("keypoint_mse", use_target_weight=False)(pred, target, weights)) == pytest.approx(2.25)
    assert float(LOSSES.build("keypoint_mse", loss_weight=2.0)(pred, target, weights)) == pytest.approx(2.5)


def test_focal_heatmap_golden():
    # one map of 3 cells: a peak (t = 1), a near cell (t = 0.5), a far one (t = 0); logits 0, ln 3, -ln 3
    logits = torch.tensor([[[[0.0, math.log(3.0), -math.log(3.0)]]]])
    target = torch.tensor([[[[1.0, 0.5, 0.0]]]])
    # peak: p = 1/2 -> (1/2)^2 ln 2; near: p = 3/4 -> (1/2)^4 (3/4)^2 ln 4; far: p = 1/4 -> (1/4)^2 ln(4/3)
    expected = 0.25 * math.log(2) + (1 / 16) * (9 / 16) * math.log(4) + (1 / 16) * math.log(4 / 3)
    loss = LOSSES.build("focal_heatmap")
    assert float(loss(logits, target, torch.ones(1, 1))) == pytest.approx(expected, rel=1e-6)  # / 1 peak
    two_peaks = torch.tensor([[[[1.0, 1.0, 0.0]]]])  # ln 3 on a peak: (1/4)^2 ln(4/3)
    expected = (0.25 * math.log(2) + (1 / 16) * math.log(4 / 3) + (1 / 16) * math.log(4 / 3)) / 2
    assert float(loss(logits, two_peaks, torch.ones(1, 1))) == pytest.approx(expected, rel=1e-6)
    # a very confident wrong logit stays finite (log-sigmoid, no clamp)
    assert math.isfinite(float(loss(torch.full((1, 1, 1, 3), -200.0), target, torch.ones(1, 1))))


def test_keypoint_mse_combined_maps_repeat_each_weight_over_its_channels():
    pred = torch.ones(1, 6, 1, 1)  # K = 2 keypoints x 3 channels
    weights = torch.tensor([[1.0, 0.0]])
    assert float(LOSSES.build("keypoint_mse")(pred, torch.zeros_like(pred), weights)) == pytest.approx(0.5)


def test_keypoint_mse_skip_empty_channel():
    pred = torch.ones(1, 2, 1, 2)
    target = torch.tensor([[[[1.0, 0.0]], [[0.0, 0.0]]]])  # channel 1 is empty
    loss = LOSSES.build("keypoint_mse", skip_empty_channel=True)
    assert float(loss(pred, target, torch.ones(1, 2))) == pytest.approx(1 / 4)


def test_ohkm_golden():
    pred = torch.tensor([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)
    weights = torch.tensor([[1.0, 1.0, 0.5]])
    # per-channel (w * d)^2: 1, 4, 2.25; top 2 = 4, 2.25 -> 3.125
    loss = LOSSES.build("keypoint_ohkm_mse", topk=2)
    assert float(loss(pred, torch.zeros_like(pred), weights)) == pytest.approx(3.125)
    with pytest.raises(ValueError, match="topk <= 3"):
        LOSSES.build("keypoint_ohkm_mse", topk=4)(pred, torch.zeros_like(pred), weights)


def test_kl_discret_identical_distributions_is_zero():
    logits = torch.randn(2, 3, 10, generator=_gen(4))
    labels = torch.softmax(logits, dim=-1)
    loss = LOSSES.build("kl_discret")(logits, labels, torch.ones(2, 3))
    assert float(loss) == pytest.approx(0.0, abs=1e-7)


def test_kl_discret_golden():
    # p = softmax([0, 0]) = (1/2, 1/2), q = (1, 0): KL terms ln 2, 0 -> mean ln2 / 2; keypoint 1 weight 0; / K = 2
    pred = torch.zeros(1, 2, 2)
    target = torch.tensor([[[1.0, 0.0], [0.3, 0.7]]])
    loss = LOSSES.build("kl_discret")(pred, target, torch.tensor([[1.0, 0.0]]))
    assert float(loss) == pytest.approx(math.log(2) / 4)  # 0.1732868
    # beta 10: logits (0, ln3 / 10) -> p = (1/4, 3/4); q = (1/2, 1/2): (1/2 ln 2 + 1/2 ln 2/3) / 2
    pred = torch.tensor([[[0.0, math.log(3) / 10]]])
    loss = LOSSES.build("kl_discret", beta=10.0)(pred, torch.full((1, 1, 2), 0.5), torch.ones(1, 1))
    assert float(loss) == pytest.approx(0.25 * math.log(4 / 3), rel=1e-5)  # 0.0719205
    # label_softmax (label_beta 10): labels (0, ln2 / 10) -> q = (1/3, 2/3); p = (1/2, 1/2)
    target = torch.tensor([[[0.0, math.log(2) / 10]]])
    loss = LOSSES.build("kl_discret", label_softmax=True)(torch.zeros(1, 1, 2), target, torch.ones(1, 1))
    expected = (1 / 3 * math.log(2 / 3) + 2 / 3 * math.log(4 / 3)) / 2  # 0.0283165
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_smooth_l1_golden():
    pred = torch.tensor([[[0.5, 3.0]]])
    target = torch.zeros_like(pred)
    ones = torch.ones(1, 1)
    # beta 1: 0.5 * 0.25 = 0.125 and 3 - 0.5 = 2.5 -> mean 1.3125
    assert float(LOSSES.build("smooth_l1")(pred, target, ones)) == pytest.approx(1.3125)
    # beta 2: 0.5 * 0.25 / 2 = 0.0625 and 3 - 1 = 2 -> mean 1.03125
    assert float(LOSSES.build("smooth_l1", beta=2.0)(pred, target, ones)) == pytest.approx(1.03125)


def test_wing_golden_near_and_far_branches():
    pred = torch.tensor([[[2.0, 20.0]]])
    # near (|d| = 2 < omega 10): 10 ln(1 + 2 / 2) = 6.931472
    # far (|d| = 20): 20 - C, C = 10 (1 - ln 6) = -7.917595 -> 27.917595; summed over K and D
    loss = LOSSES.build("wing")(pred, torch.zeros_like(pred), torch.ones(1, 1))
    assert float(loss) == pytest.approx(34.849066, rel=1e-6)
    # the two branches meet at omega
    wing = LOSSES.build("wing")
    at = [float(wing(torch.tensor([[[10.0 + e]]]), torch.zeros(1, 1, 1), torch.ones(1, 1))) for e in (-1e-4, 1e-4)]
    assert at[0] == pytest.approx(at[1], abs=1e-3)


def test_adaptive_wing_golden():
    loss = LOSSES.build("adaptive_wing")  # alpha 2.1, omega 14, epsilon 1, theta 0.5
    ones = torch.ones(1, 1)
    # near: target 0, pred 0.2 -> 14 ln(1 + 0.2^2.1) = 0.4688125
    near = loss(torch.full((1, 1, 1, 1), 0.2), torch.zeros(1, 1, 1, 1), ones)
    assert float(near) == pytest.approx(0.4688125, rel=1e-5)
    # far: target 1, pred 0 (d = 1 >= theta): A d - C with power 1.1: A = 9.797711, C = -0.461672 -> 10.259383
    far = loss(torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1), ones)
    assert float(far) == pytest.approx(10.259383, rel=1e-5)
    # continuous at theta (target 0: both branches give 2.935235)
    at = [float(loss(torch.full((1, 1, 1, 1), 0.5 + e), torch.zeros(1, 1, 1, 1), ones)) for e in (-1e-5, 1e-5)]
    assert at == pytest.approx([2.935235, 2.935235], abs=1e-3)


def _identity_flow(flow: RealNVP) -> None:
    for net in [*flow.s, *flow.t]:
        last = [m for m in net if isinstance(m, torch.nn.Linear)][-1]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)


def test_realnvp_identity_flow_is_standard_normal():
    flow = RealNVP()
    _identity_flow(flow)
    x = torch.randn(7, 2, generator=_gen(5))
    expected = torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2)).log_prob(x)
    torch.testing.assert_close(flow.log_prob(x), expected)


def test_rle_golden_with_identity_flow():
    loss = LOSSES.build("rle")
    _identity_flow(loss.flow_model)
    # coords off by (0.1, 0), sigma 0.5 -> e = (0.2, 0); log phi = -0.02 - ln 2pi (counted on both axes);
    # per axis log sigma - log phi = ln 0.5 + 0.02 + ln 2pi; Laplace q: ln(2 * 0.5) + |e| = 0.2 + 0
    pred = torch.tensor([[[0.6, 0.5, 0.5, 0.5]]])
    target = torch.tensor([[[0.5, 0.5]]])
    value = loss(pred, target, torch.ones(1, 1)).item()
    assert value == pytest.approx(2 * (math.log(0.5) + 0.02 + math.log(2 * math.pi)) + 0.2, rel=1e-5)  # 2.529460
    gaussian = LOSSES.build("rle", q_dis="gaussian")
    _identity_flow(gaussian.flow_model)
    # gaussian q: ln(0.5 sqrt(2pi)) * 2 + 0.5 * 0.2^2
    expected = 2 * (math.log(0.5) + 0.02 + math.log(2 * math.pi)) + 2 * math.log(0.5 * math.sqrt(2 * math.pi)) + 0.02
    assert gaussian(pred, target, torch.ones(1, 1)).item() == pytest.approx(expected, rel=1e-5)
