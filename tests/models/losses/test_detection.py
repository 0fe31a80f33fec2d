"""Detection losses (iou, oks, bce) and their helpers: golden values worked out by hand, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from posecore.models.builders import LOSSES
from posecore.models.losses.detection import box_iou, keypoint_oks

A = torch.tensor([0.0, 0.0, 2.0, 2.0])
B = torch.tensor([1.0, 1.0, 3.0, 3.0])  # overlap 1, union 4 + 4 - 1 = 7, enclosing box 3 x 3 = 9


# ----------------------------------------------------------------------------- IoU


def test_box_iou_and_giou_golden():
    assert float(box_iou(A, B)) == pytest.approx(1 / 7)
    assert float(box_iou(A, B, "giou")) == pytest.approx(1 / 7 - 2 / 9)  # -5/63
    apart = torch.tensor([2.0, 0.0, 3.0, 1.0])
    unit = torch.tensor([0.0, 0.0, 1.0, 1.0])
    assert float(box_iou(unit, apart)) == 0.0
    assert float(box_iou(unit, apart, "giou")) == pytest.approx(-1 / 3)  # union 2, enclosing 3
    assert float(box_iou(A, A)) == pytest.approx(1.0) and float(box_iou(A, A, "giou")) == pytest.approx(1.0)


def test_box_iou_broadcasts_to_pairwise():
    a = torch.stack([A, B])
    b = torch.stack([B, A, torch.tensor([10.0, 10.0, 11.0, 11.0])])
    pairwise = box_iou(a[:, None], b[None])
    assert pairwise.shape == (2, 3)
    expected = torch.tensor([[1 / 7, 1.0, 0.0], [1.0, 1 / 7, 0.0]])
    torch.testing.assert_close(pairwise, expected)


def test_box_iou_of_degenerate_boxes_is_finite():
    point = torch.tensor([1.0, 1.0, 1.0, 1.0])
    assert float(box_iou(point, point)) == 0.0
    assert math.isfinite(float(box_iou(point, point, "giou")))


@pytest.mark.parametrize(("mode", "expected"), [("iou", 6 / 7), ("square", 48 / 49), ("giou", 1 + 5 / 63)])
def test_iou_loss_modes_golden(mode, expected):
    loss = LOSSES.build("iou", mode=mode)
    assert float(loss(B[None], A[None])) == pytest.approx(expected)
    assert float(loss(A[None], A[None])) == pytest.approx(0.0, abs=1e-6)


def test_iou_loss_weights_and_reductions():
    pred, target = torch.stack([B, A]), torch.stack([A, A])  # losses 6/7 and 0
    weights = torch.tensor([0.5, 1.0])
    assert float(LOSSES.build("iou")(pred, target, weights)) == pytest.approx(0.5 * 6 / 7 / 2)
    assert float(LOSSES.build("iou", reduction="sum", loss_weight=2.0)(pred, target, weights)) == pytest.approx(6 / 7)
    assert float(LOSSES.build("iou", reduction="sum")(pred[:0], target[:0])) == 0.0  # no positives
    with pytest.raises(ValueError, match="weights"):
        LOSSES.build("iou")(pred, target, torch.ones(3))
    with pytest.raises(ValueError, match="mode"):
        LOSSES.build("iou", mode="diou")


def test_iou_loss_gradient_golden_and_gradcheck():
    # pred (1, 1, 3, 3) vs target (0, 0, 2, 2): d overlap / d x1 = -1, d union / d x1 = -2 + 1 = -1,
    # so d IoU / d x1 = (-1 * 7 + 1 * 1) / 49 = -6/49 and d loss / d x1 = +6/49: moving x1 left helps.
    pred = B[None].clone().requires_grad_(True)
    LOSSES.build("iou")(pred, A[None]).backward()
    assert float(pred.grad[0, 0]) == pytest.approx(6 / 49)
    for mode in ("iou", "square", "giou"):
        loss = LOSSES.build("iou", mode=mode)
        p = (B[None] + torch.tensor([[0.1, 0.2, -0.3, 0.4]])).double().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda x, loss=loss: loss(x, A[None].double()), (p,))


# ----------------------------------------------------------------------------- OKS


def test_keypoint_oks_golden():
    # d = 3 px, sigma 0.1, area 100: d / (2 sigma sqrt(area)) = 1.5 -> exp(-1.5^2 / 2) = exp(-1.125)
    pred = torch.tensor([[[3.0, 0.0], [5.0, 5.0]]])
    target = torch.tensor([[[0.0, 0.0], [5.0, 5.0]]])
    sigmas, area = torch.tensor([0.1, 0.1]), torch.tensor([100.0])
    one = math.exp(-1.125)  # 0.3246525
    oks = keypoint_oks(pred, target, torch.ones(1, 2), area, sigmas)
    assert float(oks) == pytest.approx((one + 1) / 2)  # weights / K
    oks = keypoint_oks(pred, target, torch.tensor([[1.0, 0.0]]), area, sigmas)
    assert float(oks) == pytest.approx(one / 2)
    oks = keypoint_oks(pred, target, torch.tensor([[1.0, 0.0]]), area, sigmas, norm_target_weight=True)
    assert float(oks) == pytest.approx(one)  # COCO's OKS over the visible keypoint
    # the COCO form exp(-d^2 / (2 s^2 k^2)) with s^2 = area, k = 2 sigma gives the same
    assert one == pytest.approx(math.exp(-9 / (2 * 100 * 0.2**2)))


def test_oks_loss_golden_modes_and_zero_weights():
    pred = torch.tensor([[[3.0, 0.0], [5.0, 5.0]]])
    target = torch.tensor([[[0.0, 0.0], [5.0, 5.0]]])
    area, one = torch.tensor([100.0]), math.exp(-1.125)
    oks = (one + 1) / 2
    for mode, expected in (("linear", 1 - oks), ("square", 1 - oks**2), ("log", -math.log(oks))):
        loss = LOSSES.build("oks", sigmas=[0.1, 0.1], mode=mode)
        assert float(loss(pred, target, torch.ones(1, 2), area)) == pytest.approx(expected)
    loss = LOSSES.build("oks", sigmas=[0.1, 0.1], loss_weight=30.0, norm_target_weight=True)
    assert float(loss(pred, target, torch.tensor([[1.0, 0.0]]), area)) == pytest.approx(30 * (1 - one))
    # an instance without visible keypoints contributes nothing (MMPose: the constant 1)
    two = torch.cat([pred, pred]), torch.cat([target, target]), torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    total = LOSSES.build("oks", sigmas=[0.1, 0.1], reduction="sum")(*two, torch.tensor([100.0, 100.0]))
    assert float(total) == pytest.approx(1 - oks)


def test_oks_loss_checks_sigmas_and_areas():
    pred = torch.zeros(2, 3, 2)
    with pytest.raises(ValueError, match="3 keypoints"):
        LOSSES.build("oks", sigmas=[0.1, 0.1])(pred, pred, torch.ones(2, 3))
    with pytest.raises(ValueError, match="areas"):
        LOSSES.build("oks")(pred, pred, torch.ones(2, 3), torch.ones(3))
    with pytest.raises(ValueError, match="positive"):
        LOSSES.build("oks", sigmas=[0.1, -0.1])


def test_oks_loss_gradient_points_to_the_target():
    target = torch.tensor([[[10.0, 10.0], [20.0, 15.0], [30.0, 40.0]]], dtype=torch.float64)
    pred = (target + torch.tensor([[[2.0, -1.0], [-3.0, 2.0], [1.0, 1.0]]], dtype=torch.float64)).requires_grad_(True)
    weights, area = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64), torch.tensor([400.0], dtype=torch.float64)
    loss = LOSSES.build("oks", sigmas=[0.05, 0.1, 0.1])
    loss(pred, target, weights, area).backward()
    step = (target - pred).detach()
    assert float((pred.grad[0, :2] * step[0, :2]).sum()) < 0  # descending moves visible keypoints to the target
    assert float(pred.grad[0, 2].abs().sum()) == 0.0  # the invisible one gets no gradient
    assert torch.autograd.gradcheck(lambda x: loss(x, target, weights, area), (pred.detach().requires_grad_(True),))


# ----------------------------------------------------------------------------- BCE


def test_bce_golden_soft_targets_and_weights():
    bce = LOSSES.build("bce")
    assert float(bce(torch.zeros(1), torch.full((1,), 0.5))) == pytest.approx(math.log(2))
    assert float(bce(torch.tensor([math.log(3)]), torch.ones(1))) == pytest.approx(math.log(4 / 3))  # p = 3/4
    # soft target 0.25 at p = 3/4: -(0.25 ln 0.75 + 0.75 ln 0.25)
    soft = -(0.25 * math.log(0.75) + 0.75 * math.log(0.25))
    assert float(bce(torch.tensor([math.log(3)]), torch.tensor([0.25]))) == pytest.approx(soft)
    pred, target = torch.tensor([0.0, math.log(3)]), torch.tensor([0.5, 1.0])
    weights = torch.tensor([0.0, 2.0])
    assert float(LOSSES.build("bce", reduction="sum")(pred, target, weights)) == pytest.approx(2 * math.log(4 / 3))
    assert float(bce(pred, target, weights)) == pytest.approx(math.log(4 / 3))  # mean over both elements


def test_bce_gradient_is_sigmoid_minus_target():
    pred = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0.3, 1.0, 0.0], dtype=torch.float64)
    LOSSES.build("bce", reduction="sum")(pred, target).backward()
    torch.testing.assert_close(pred.grad, torch.sigmoid(pred.detach()) - target)
    assert torch.autograd.gradcheck(lambda x: LOSSES.build("bce")(x, target), (pred.detach().requires_grad_(True),))
