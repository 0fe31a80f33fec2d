"""Heatmap losses: pred / target (B, C, H, W) with C = K (or m * K), weights (B, K) -> scalar."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from posecore.models.builders import LOSSES

from ._utils import check_pair, expand_weights


@LOSSES.register("keypoint_mse")
class KeypointMSELoss(nn.Module):
    """Mean squared error of heatmaps: pred, target (B, C, H, W), weights (B, K) -> scalar.

    loss = loss_weight * mean((pred - target)^2 * w), w the keypoint weight of the channel
    (MMPose ``KeypointMSELoss``). ``skip_empty_channel`` also drops channels whose target is all
    zero (MMPose intends this per channel; its code reduces over the whole batch).
    """

    def __init__(self, use_target_weight: bool = True, skip_empty_channel: bool = False, loss_weight: float = 1.0):
        super().__init__()
        self.use_target_weight = use_target_weight
        self.skip_empty_channel = skip_empty_channel
        self.loss_weight = float(loss_weight)

    def forward(self, pred: Tensor, target: Tensor, weights: Tensor) -> Tensor:
        name = type(self).__name__
        check_pair(name, pred, target)
        loss = (pred - target) ** 2
        if self.use_target_weight:
            loss = loss * expand_weights(name, weights, pred)
        if self.skip_empty_channel:
            keep = (target != 0).flatten(2).any(dim=-1).to(loss.dtype)
            loss = loss * keep.reshape(*keep.shape, *([1] * (loss.ndim - 2)))
        return loss.mean() * self.loss_weight


@LOSSES.register("keypoint_ohkm_mse")
class KeypointOHKMMSELoss(nn.Module):
    """MSE with online hard keypoint mining: pred, target (B, C, H, W), weights (B, K) -> scalar.

    Per instance, the mean squared error of each channel (pred and target both multiplied by the
    weight); the ``topk`` largest are averaged, then the batch is averaged (MMPose
    ``KeypointOHKMMSELoss``). Needs ``topk <= C``.
    """

    def __init__(self, use_target_weight: bool = True, topk: int = 8, loss_weight: float = 1.0):
        super().__init__()
        if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
            raise ValueError(f"KeypointOHKMMSELoss.topk must be a positive int (hard keypoints kept); got {topk!r}")
        self.use_target_weight = use_target_weight
        self.topk = topk
        self.loss_weight = float(loss_weight)

    def forward(self, pred: Tensor, target: Tensor, weights: Tensor) -> Tensor:
        name = type(self).__name__
        check_pair(name, pred, target, ndim=4)
        if pred.shape[1] < self.topk:
            raise ValueError(
                f"{name}: topk={self.topk} is larger than the {pred.shape[1]} heatmap channels; "
                f"build keypoint_ohkm_mse with topk <= {pred.shape[1]}"
            )
        diff = pred - target
        if self.use_target_weight:
            diff = diff * expand_weights(name, weights, pred)
        per_channel = (diff**2).mean(dim=(2, 3))  # (B, C)
        hardest = per_channel.topk(self.topk, dim=1, sorted=False).values
        return (hardest.sum(dim=1) / self.topk).mean() * self.loss_weight


@LOSSES.register("adaptive_wing")
class AdaptiveWingLoss(nn.Module):
    """Adaptive wing loss (Wang et al., ICCV 2019): pred, target (B, C, H, W), weights (B, K) -> scalar.

    With d = |target - pred| and p = alpha - target:
    omega * ln(1 + (d / epsilon)^p) where d < theta, else A d - C, with A, C making the two
    branches meet smoothly at theta; averaged over all elements (MMPose ``AdaptiveWingLoss``;
    pred and target are multiplied by the keypoint weight first).
    """

    def __init__(
        self,
        alpha: float = 2.1,
        omega: float = 14.0,
        epsilon: float = 1.0,
        theta: float = 0.5,
        use_target_weight: bool = True,
        loss_weight: float = 1.0,
    ):
        super().__init__()
        for key, value in (("omega", omega), ("epsilon", epsilon), ("theta", theta)):
            if not value > 0:
                raise ValueError(f"AdaptiveWingLoss.{key} must be positive; got {value!r}")
        self.alpha = float(alpha)
        self.omega = float(omega)
        self.epsilon = float(epsilon)
        self.theta = float(theta)
        self.use_target_weight = use_target_weight
        self.loss_weight = float(loss_weight)

    def forward(self, pred: Tensor, target: Tensor, weights: Tensor) -> Tensor:
        name = type(self).__name__
        check_pair(name, pred, target)
        if self.use_target_weight:
            w = expand_weights(name, weights, pred)
            pred, target = pred * w, target * w
        delta = (target - pred).abs()
        power = self.alpha - target
        ratio = self.theta / self.epsilon
        a = self.omega / (1 + ratio**power) * power * ratio ** (power - 1) / self.epsilon
        c = self.theta * a - self.omega * torch.log1p(ratio**power)
        losses = torch.where(
            delta < self.theta,
            self.omega * torch.log1p((delta / self.epsilon) ** power),
            a * delta - c,
        )
        return losses.mean() * self.loss_weight


@LOSSES.register("focal_heatmap")
class FocalHeatmapLoss(nn.Module):
    """Penalty-reduced focal loss of multi-peak heatmaps (CenterNet): logits, target (B, C, H, W), weights (B, K).

    With p = sigmoid(logit) and target t (1 at a keypoint's cell, a Gaussian falling off around it):
    cells with t == 1 cost -(1 - p)^alpha log p, the others -(1 - t)^beta p^alpha log(1 - p); the
    sum over weighted channels is divided by the number of weighted t == 1 cells (at least 1).
    MMPose's ``FocalHeatmapLoss`` is the same formula on probabilities; this one takes logits and
    uses log-sigmoid, so no clamp is needed. Many people per map (bottom-up) need a loss that does
    not drown the few peaks in the mass of background cells, which plain MSE does.
    """

    def __init__(self, alpha: float = 2.0, beta: float = 4.0, use_target_weight: bool = True, loss_weight: float = 1.0):
        super().__init__()
        self.alpha, self.beta = float(alpha), float(beta)
        self.use_target_weight = use_target_weight
        self.loss_weight = float(loss_weight)

    def forward(self, pred: Tensor, target: Tensor, weights: Tensor) -> Tensor:
        name = type(self).__name__
        check_pair(name, pred, target, ndim=4)
        logits, target = pred.float(), target.float()
        p = torch.sigmoid(logits)
        pos = (target >= 1).to(logits.dtype)
        pos_cost = -((1 - p) ** self.alpha) * torch.nn.functional.logsigmoid(logits) * pos
        neg_cost = -((1 - target).clamp_min(0) ** self.beta) * p**self.alpha
        neg_cost = neg_cost * torch.nn.functional.logsigmoid(-logits) * (1 - pos)
        cost = pos_cost + neg_cost
        if self.use_target_weight:
            w = expand_weights(name, weights, logits)
            cost, pos = cost * w, pos * w
        return cost.sum() / pos.sum().clamp_min(1) * self.loss_weight
