"""Pose-lifting losses (mpjpe, mpjpe_velocity): golden values worked out by hand, gradients, weights."""

from __future__ import annotations

import math

import pytest
import torch

import posecore.models.losses  # noqa: F401  (registers the losses)
from posecore.models.builders import LOSSES


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# pred - target: joint 0 (3, 4, 0) -> 5 mm, joint 1 (0, 0, 2) -> 2 mm
PRED = torch.tensor([[[3.0, 4.0, 0.0], [1.0, 1.0, 3.0]]])
TARGET = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]])

# one joint over two frames: target still at (1, 0, 0); pred (2, 0, 0) then (0, 1, 0)
SEQ_PRED = torch.tensor([[[[2.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]]])  # (1, 2, 1, 3)
SEQ_TARGET = torch.tensor([[[[1.0, 0.0, 0.0]], [[1.0, 0.0, 0.0]]]])
# mpjpe (1 + sqrt 2) / 2; nmpjpe: frame 0 scale 2/4 -> 0, frame 1 scale 0 -> 1, mean 1/2;
# velocity: dpred (-2, 1, 0), dtarget 0 -> sqrt 5
SEQ_MPJPE, SEQ_NMPJPE, SEQ_VELOCITY = (1 + math.sqrt(2)) / 2, 0.5, math.sqrt(5)


def test_mpjpe_golden():
    ones = torch.ones(1, 2)
    assert float(LOSSES.build("mpjpe")(PRED, TARGET, ones)) == pytest.approx(3.5)
    # target weights scale each joint's error vector: 5 * 1 and 2 * 0.5 -> mean 3
    assert float(LOSSES.build("mpjpe")(PRED, TARGET, torch.tensor([[1.0, 0.5]]))) == pytest.approx(3.0)
    assert float(LOSSES.build("mpjpe", use_target_weight=False)(PRED, TARGET, torch.zeros(1, 2))) == 3.5
    # fixed per-joint weights multiply the target weights: 5 * 2 and 2 * 0 -> mean 5
    assert float(LOSSES.build("mpjpe", joint_weights=[2.0, 0.0])(PRED, TARGET, ones)) == pytest.approx(5.0)
    assert float(LOSSES.build("mpjpe", loss_weight=2.0)(PRED, TARGET, ones)) == pytest.approx(7.0)
    # a sequence (B, T, K, 3) with per-joint weights (B, K) is the mean over all frames
    seq = LOSSES.build("mpjpe")(SEQ_PRED, SEQ_TARGET, torch.ones(1, 1))
    assert float(seq) == pytest.approx(SEQ_MPJPE)


def test_mpjpe_gradient_by_hand():
    # d/dpred mean_k ||pred_k - target_k|| = (pred_k - target_k) / ||.|| / K
    pred = PRED.clone().requires_grad_(True)
    LOSSES.build("mpjpe")(pred, TARGET, torch.ones(1, 2)).backward()
    expected = torch.tensor([[[3 / 5, 4 / 5, 0.0], [0.0, 0.0, 1.0]]]) / 2
    torch.testing.assert_close(pred.grad, expected)


def test_velocity_loss_golden():
    ones = torch.ones(1, 1)
    loss = LOSSES.build("mpjpe_velocity")  # lambda_scale 0.5, lambda_3d_velocity 20 (MMPose)
    expected = SEQ_MPJPE + 0.5 * SEQ_NMPJPE + 20 * SEQ_VELOCITY  # 46.178468
    assert float(loss(SEQ_PRED, SEQ_TARGET, ones)) == pytest.approx(expected, rel=1e-6)
    only_velocity = LOSSES.build("mpjpe_velocity", lambda_scale=0.0, lambda_3d_velocity=1.0)
    assert float(only_velocity(SEQ_PRED, SEQ_TARGET, ones)) == pytest.approx(SEQ_MPJPE + SEQ_VELOCITY, rel=1e-6)
    only_scale = LOSSES.build("mpjpe_velocity", lambda_scale=1.0, lambda_3d_velocity=0.0, loss_weight=2.0)
    assert float(only_scale(SEQ_PRED, SEQ_TARGET, ones)) == pytest.approx(2 * (SEQ_MPJPE + SEQ_NMPJPE), rel=1e-6)


def test_velocity_term_ignores_a_constant_offset_and_nmpjpe_a_scale():
    target = torch.randn(2, 4, 5, 3, generator=_gen(0)) * 100
    weights = torch.ones(2, 5)
    velocity = LOSSES.build("mpjpe_velocity", lambda_scale=0.0, lambda_3d_velocity=1.0)
    shifted = target + torch.tensor([10.0, -20.0, 5.0])
    torch.testing.assert_close(velocity(shifted, target, weights), torch.tensor(math.sqrt(525.0)))
    scaled = target * 1.5  # each frame's scale fit undoes it: N-MPJPE 0, the loss is the MPJPE alone
    scale_only = LOSSES.build("mpjpe_velocity", lambda_scale=1.0, lambda_3d_velocity=0.0)
    mpjpe = LOSSES.build("mpjpe")(scaled, target, weights)
    torch.testing.assert_close(scale_only(scaled, target, weights), mpjpe, atol=1e-3, rtol=1e-5)


def test_velocity_loss_per_frame_weights():
    # three frames of one joint; frame 2 unlabelled: its error and the velocity 1 -> 2 drop out
    target = torch.zeros(1, 3, 1, 3)
    pred = torch.tensor([[[[1.0, 0.0, 0.0]], [[1.0, 0.0, 0.0]], [[50.0, 0.0, 0.0]]]])
    frame_weights = torch.tensor([[[1.0], [1.0], [0.0]]])  # (B, T, K)
    loss = LOSSES.build("mpjpe_velocity", lambda_scale=0.0, lambda_3d_velocity=1.0)
    # mpjpe (1 + 1 + 0) / 3; velocities: frame 0 -> 1 is 0, frame 1 -> 2 weighted 0
    assert float(loss(pred, target, frame_weights)) == pytest.approx(2 / 3)


def test_velocity_nmpjpe_scale_is_fitted_on_weighted_joints_only():
    # joint 1 has weight 0: a wild prediction there must not move joint 0's scale fit (s = 1 -> 0 error)
    target = torch.tensor([[[[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]] * 2])  # (1, 2, 2, 3)
    pred = target.clone()
    pred[:, :, 1] = torch.tensor([100.0, 100.0, 100.0])
    loss = LOSSES.build("mpjpe_velocity", lambda_scale=1.0, lambda_3d_velocity=0.0)
    assert float(loss(pred, target, torch.tensor([[1.0, 0.0]]))) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize(
    ("name", "shape", "weight_shape", "options"),
    [
        ("mpjpe", (2, 4, 3), (2, 4), {"joint_weights": [1.0, 0.5, 2.0, 1.0]}),
        ("mpjpe", (2, 3, 4, 3), (2, 3, 4), {}),
        ("mpjpe_velocity", (2, 3, 4, 3), (2, 4), {}),
        ("mpjpe_velocity", (2, 3, 4, 3), (2, 3, 4), {"joint_weights": [1.0, 0.5, 2.0, 1.0]}),
    ],
)
def test_gradcheck_float64(name, shape, weight_shape, options):
    g = _gen(1)
    pred = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(*shape, generator=g, dtype=torch.float64)
    weights = torch.rand(*weight_shape, generator=g, dtype=torch.float64) + 0.1
    loss = LOSSES.build(name, **options)
    assert torch.autograd.gradcheck(lambda p: loss(p, target, weights), (pred,))


def test_input_errors_say_what_to_pass():
    mpjpe, velocity = LOSSES.build("mpjpe"), LOSSES.build("mpjpe_velocity")
    with pytest.raises(ValueError, match=r"weights must be \(B, K\)"):
        mpjpe(PRED, TARGET, torch.ones(1, 3))
    with pytest.raises(ValueError, match="differ in shape"):
        mpjpe(PRED, TARGET[:, :1], torch.ones(1, 2))
    with pytest.raises(ValueError, match=r"\(B, K, D\) or \(B, T, K, D\)"):
        mpjpe(PRED[0], TARGET[0], torch.ones(1, 2))
    with pytest.raises(ValueError, match=r"\(B, T, K, D\)"):
        velocity(PRED, TARGET, torch.ones(1, 2))
    with pytest.raises(ValueError, match="T >= 2"):
        velocity(SEQ_PRED[:, :1], SEQ_TARGET[:, :1], torch.ones(1, 1))
    with pytest.raises(ValueError, match="joint_weights has 3 entries but pred has 2 joints"):
        LOSSES.build("mpjpe", joint_weights=[1.0, 1.0, 1.0])(PRED, TARGET, torch.ones(1, 2))
    with pytest.raises(ValueError, match="joint_weights must be >= 0"):
        LOSSES.build("mpjpe", joint_weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="lambda_scale"):
        LOSSES.build("mpjpe_velocity", lambda_scale=-1.0)


def test_joint_weights_follow_the_module_to_another_dtype():
    loss = LOSSES.build("mpjpe", joint_weights=[2.0, 0.0]).to(torch.float64)
    value = loss(PRED.double(), TARGET.double(), torch.ones(1, 2, dtype=torch.float64))
    assert value.dtype == torch.float64 and float(value) == pytest.approx(5.0)
