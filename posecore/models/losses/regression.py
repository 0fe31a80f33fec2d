"""Coordinate regression losses: normalised coords (B, K, D), weights (B, K) -> scalar."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from posecore.models.builders import LOSSES

from ._utils import check_pair


def _weights(owner: str, weights: Tensor, like: Tensor) -> Tensor:
    """weights (B, K) -> (B, K, 1) in the dtype of ``like`` (B, K, D)."""
    if weights.shape != like.shape[:2]:
        raise ValueError(f"{owner}: weights must be (B, K) = {tuple(like.shape[:2])}; got {tuple(weights.shape)}")
    return weights.to(like.dtype)[..., None]


@LOSSES.register("smooth_l1")
class SmoothL1Loss(nn.Module):
    """Smooth L1 of coordinates: pred, target (B, K, D), weights (B, K) -> scalar.

    0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta; averaged over all elements after
    multiplying pred and target by the weight (MMPose ``SmoothL1Loss``, torch's default beta 1).
    """

    def __init__(self, beta: float = 1.0, use_target_weight: bool = True, loss_weight: float = 1.0):
        super().__init__()
        if not beta >= 0:
            raise ValueError(f"SmoothL1Loss.beta must be >= 0 (0 is plain L1); got {beta!r}")
        self.beta = float(beta)
        self.use_target_weight = use_target_weight
        self.loss_weight = float(loss_weight)

    def forward(self, pred: Tensor, target: Tensor, weights: Tensor) -> Tensor:
        name = type(self).__name__
        check_pair(name, pred, target, ndim=3)
        if self.use_target_weight:
            w = _weights(name, weights, pred)
            pred, target = pred * w, target * w
        return F.smooth_l1_loss(pred, target, beta=self.beta) * self.loss_weight


@LOSSES.register("wing")
class WingLoss(nn.Module):
    """Wing loss (Feng et al., CVPR 2018): pred, target (B, K, D), weights (B, K) -> scalar.

    omega ln(1 + |d| / epsilon) where |d| < omega, else |d| - C with
    C = omega (1 - ln(1 + omega / epsilon)); summed over K and D, averaged over B, pred and
    target multiplied by the weight first (MMPose ``WingLoss``).
    """

    def __init__(
        self, omega: float = 10.0, epsilon: float = 2.0, use_target_weight: bool = True, loss_weight: float = 1.0
    ):
        super().__init__()
        if not (omega > 0 and epsilon > 0):
            raise ValueError(f"WingLoss needs omega > 0 and epsilon > 0; got omega={omega!r}, epsilon={epsilon!r}")
        self.omega = float(omega)
        self.epsilon = float(epsilon)
        self.use_target_weight = use_target_weight
        self.loss_weight = float(loss_weight)
        self.c = self.omega * (1.0 - math.log(1.0 + self.omega / self.epsilon))

    def forward(self, pred: Tensor, target: Tensor, weights: Tensor) -> Tensor:
        name = type(self).__name__
        check_pair(name, pred, target, ndim=3)
        if self.use_target_weight:
            w = _weights(name, weights, pred)
            pred, target = pred * w, target * w
        delta = (target - pred).abs()
        losses = torch.where(delta < self.omega, self.omega * torch.log1p(delta / self.epsilon), delta - self.c)
        return losses.sum(dim=(1, 2)).mean() * self.loss_weight


class RealNVP(nn.Module):
    """2-D RealNVP flow (Dinh et al., 2017) used by RLE: x (M, 2) -> log density (M,).

    Six affine coupling layers with alternating masks; scale nets 2-64-64-2 with tanh, translation
    nets 2-64-64-2, LeakyReLU, xavier init with gain 0.01 (so the flow starts near identity); a
    standard normal prior (MMPose ``RealNVP``, from the official RLE code).
    """

    def __init__(self, hidden: int = 64, num_layers: int = 6):
        super().__init__()
        mask = torch.tensor([[0.0, 1.0], [1.0, 0.0]] * (num_layers // 2))
        self.register_buffer("mask", mask)
        self.s = nn.ModuleList([self._net(hidden, tanh=True) for _ in range(len(mask))])
        self.t = nn.ModuleList([self._net(hidden, tanh=False) for _ in range(len(mask))])
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight, gain=0.01)

    @staticmethod
    def _net(hidden: int, tanh: bool) -> nn.Sequential:
        layers: list[nn.Module] = [nn.Linear(2, hidden), nn.LeakyReLU(), nn.Linear(hidden, hidden), nn.LeakyReLU()]
        layers.append(nn.Linear(hidden, 2))
        if tanh:
            layers.append(nn.Tanh())
        return nn.Sequential(*layers)

    def backward_p(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Data -> latent: z (M, 2) and log |det dz/dx| (M,)."""
        log_det = x.new_zeros(x.shape[0])
        z = x
        for i in reversed(range(len(self.t))):
            m = self.mask[i]
            z_ = m * z
            s = self.s[i](z_) * (1 - m)
            t = self.t[i](z_) * (1 - m)
            z = (1 - m) * (z - t) * torch.exp(-s) + z_
            log_det = log_det - s.sum(dim=1)
        return z, log_det

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) for x (M, 2) under the flow: standard-normal log density of z plus log |det|."""
        z, log_det = self.backward_p(x)
        return -0.5 * (z**2).sum(dim=1) - math.log(2 * math.pi) + log_det


@LOSSES.register("rle")
class RLELoss(nn.Module):
    """Residual log-likelihood estimation (Li et al., ICCV 2021): pred (B, K, 4), target (B, K, 2), weights (B, K) -> scalar.

    pred = coords (B, K, 2) then sigmas (B, K, 2) in (0, 1) (the RLE head applies the sigmoid;
    MMPose's ``RLELoss`` applies it itself to raw outputs). With e = (coords - target) /
    (sigma + 1e-9): loss = log sigma - log phi(e) + log q(e), phi the :class:`RealNVP` density
    (one value per keypoint, counted for both axes as MMPose does) and, when ``residual``,
    q the identity distribution: Laplace (log 2 sigma + |e|) or gaussian
    (log sigma sqrt(2 pi) + e^2 / 2). Multiplied by the weight, summed, divided by B
    (``size_average``). The flow's parameters train with the head that owns this loss.
    """

    def __init__(
        self, use_target_weight: bool = True, size_average: bool = True, residual: bool = True, q_dis: str = "laplace"
    ):
        super().__init__()
        if q_dis not in ("laplace", "gaussian"):
            raise ValueError(f"RLELoss.q_dis must be 'laplace' or 'gaussian'; got {q_dis!r}")
        self.use_target_weight = use_target_weight
        self.size_average = size_average
        self.residual = residual
        self.q_dis = q_dis
        self.flow_model = RealNVP()

    def forward(self, pred: Tensor, target: Tensor, weights: Tensor) -> Tensor:
        name = type(self).__name__
        if pred.ndim != 3 or pred.shape[-1] != 4 or target.shape != (*pred.shape[:2], 2):
            raise ValueError(
                f"{name}: pred must be (B, K, 4) = coords then sigmas and target (B, K, 2); "
                f"got {tuple(pred.shape)} and {tuple(target.shape)}"
            )
        coords, sigma = pred[..., :2], pred[..., 2:]
        error = (coords - target) / (sigma + 1e-9)
        log_phi = self.flow_model.log_prob(error.reshape(-1, 2)).reshape(*target.shape[:2], 1)
        log_sigma = torch.log(sigma)
        loss = log_sigma - log_phi
        if self.residual:
            if self.q_dis == "laplace":
                loss = loss + torch.log(sigma * 2) + error.abs()
            else:
                loss = loss + torch.log(sigma * math.sqrt(2 * math.pi)) + 0.5 * error**2
        if self.use_target_weight:
            loss = loss * _weights(name, weights, coords)
        if self.size_average:
            loss = loss / loss.shape[0]
        return loss.sum()
