"""Losses of one-stage (detector-free) pose models: box IoU, keypoint OKS, binary cross-entropy.

Unlike the top-down losses these work on per-instance (or per-anchor) tensors of any leading
shape ``(...)``: a head picks its positive anchors and hands their predictions and matched
ground truth over. Each returns a scalar: ``reduction`` "mean" (MMPose / MMDetection's default:
the mean over the leading elements, weights included) or "sum" (for a head that divides by its
number of positives itself, as YOLOX does). :func:`box_iou` and :func:`keypoint_oks` broadcast,
so the SimOTA assigner computes its pairwise (anchor x person) costs with them too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from posecore.models.builders import LOSSES

from ._utils import check_pair

REDUCTIONS = ("mean", "sum")


def box_iou(a: Tensor, b: Tensor, mode: str = "iou", eps: float = 1e-7) -> Tensor:
    """IoU (or GIoU with ``mode="giou"``) of boxes a, b (..., 4) xyxy, broadcast -> (...).

    Unions and enclosing areas are clamped to ``eps`` so that degenerate boxes give finite values
    (MMDetection's ``bbox_overlaps``, aligned). ``a[:, None]`` against ``b[None]`` is the pairwise
    (n, m) matrix.
    """
    if mode not in ("iou", "giou"):
        raise ValueError(f"box_iou mode must be 'iou' or 'giou'; got {mode!r}")
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    wh = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp(min=0)
    overlap = wh[..., 0] * wh[..., 1]
    union = (area_a + area_b - overlap).clamp(min=eps)
    iou = overlap / union
    if mode == "iou":
        return iou
    enclose_wh = (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])).clamp(min=0)
    enclose = (enclose_wh[..., 0] * enclose_wh[..., 1]).clamp(min=eps)
    return iou - (enclose - union) / enclose


def keypoint_oks(
    pred: Tensor,
    target: Tensor,
    weights: Tensor,
    areas: Tensor | None = None,
    sigmas: Tensor | None = None,
    norm_target_weight: bool = False,
    eps: float = 1e-8,
) -> Tensor:
    """Object keypoint similarity of pred, target (..., K, 2), weights (..., K), areas (...) -> (...).

    sum_k w_k exp(-d_k^2 / (2 area (2 sigma_k)^2)) with w = weights / K, or weights / sum(weights)
    when ``norm_target_weight`` (then it is COCO's OKS over the visible keypoints). Without
    ``sigmas`` distances are not scaled per keypoint, without ``areas`` not by the instance size
    (MMPose ``OKSLoss.compute_oks``). Broadcasts, so pairwise OKS is ``pred[:, None]`` against
    ``target[None]``.
    """
    dist = torch.linalg.vector_norm(pred - target, dim=-1)
    if sigmas is not None:
        dist = dist / (2 * sigmas.to(dist))
    if areas is not None:
        dist = dist / areas.to(dist).clamp(min=eps).sqrt()[..., None]
    w = weights.to(dist)
    w = w / w.sum(dim=-1, keepdim=True).clamp(min=eps) if norm_target_weight else w / w.shape[-1]
    return (torch.exp(-dist.square() / 2) * w).sum(dim=-1)


def _reduce(losses: Tensor, reduction: str) -> Tensor:
    """Sum, or mean (0 for no elements, not NaN: a batch may have no positive anchors)."""
    return losses.sum() if reduction == "sum" or not losses.numel() else losses.mean()


def _check_reduction(owner: str, reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{owner}: reduction must be one of {REDUCTIONS}; got {reduction!r}")
    return reduction


def _check_weights(owner: str, weights: Tensor | None, shape: torch.Size, what: str) -> None:
    if weights is not None and weights.shape != shape:
        raise ValueError(f"{owner}: weights must be {what} = {tuple(shape)}; got {tuple(weights.shape)}")


@LOSSES.register("iou")
class IoULoss(nn.Module):
    """Box overlap loss: pred, target (..., 4) xyxy in pixels, weights (...) or None -> scalar.

    Per box 1 - IoU (``mode="iou"``), 1 - IoU^2 (``"square"``, what YOLOX-Pose trains with) or
    1 - GIoU (``"giou"``); times the weight, reduced, times ``loss_weight`` (MMDetection
    ``IoULoss`` / ``GIoULoss``).
    """

    MODES = ("iou", "square", "giou")

    def __init__(self, mode: str = "iou", eps: float = 1e-7, reduction: str = "mean", loss_weight: float = 1.0):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"IoULoss mode must be one of {self.MODES}; got {mode!r}")
        self.mode, self.eps = mode, float(eps)
        self.reduction = _check_reduction("IoULoss", reduction)
        self.loss_weight = float(loss_weight)

    def forward(self, pred: Tensor, target: Tensor, weights: Tensor | None = None) -> Tensor:
        name = type(self).__name__
        check_pair(name, pred, target)
        if pred.shape[-1:] != (4,):
            raise ValueError(f"{name}: pred and target must be boxes (..., 4) xyxy; got {tuple(pred.shape)}")
        _check_weights(name, weights, pred.shape[:-1], "(...) one per box")
        if self.mode == "giou":
            losses = 1 - box_iou(pred, target, "giou", self.eps)
        else:
            iou = box_iou(pred, target, "iou", self.eps)
            losses = 1 - (iou.square() if self.mode == "square" else iou)
        if weights is not None:
            losses = losses * weights.to(losses)
        return _reduce(losses, self.reduction) * self.loss_weight


@LOSSES.register("oks")
class OKSLoss(nn.Module):
    """Keypoint OKS loss: pred, target (..., K, 2) pixels, weights (..., K) visibility, areas (...) -> scalar.

    Per instance 1 - OKS (``mode="linear"``), 1 - OKS^2 (``"square"``) or -log OKS (``"log"``),
    OKS from :func:`keypoint_oks` with ``sigmas`` (K,) (None: unscaled distances) and the
    instance ``areas`` in pixels^2 (None: unscaled); reduced over instances, times
    ``loss_weight`` (MMPose ``OKSLoss``; ``norm_target_weight`` False by default as there; YOLOX-Pose
    trains with True, OKS over the visible keypoints only).

    Unlike MMPose, an instance whose weights are all 0 contributes 0, not the constant 1 (the
    gradient is 0 either way), so zero weights mean "no loss" as for every loss here.
    """

    MODES = ("linear", "square", "log")

    def __init__(
        self,
        sigmas: Sequence[float] | None = None,
        mode: str = "linear",
        norm_target_weight: bool = False,
        eps: float = 1e-8,
        reduction: str = "mean",
        loss_weight: float = 1.0,
    ):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"OKSLoss mode must be one of {self.MODES}; got {mode!r}")
        self.mode, self.norm_target_weight, self.eps = mode, norm_target_weight, float(eps)
        self.reduction = _check_reduction("OKSLoss", reduction)
        self.loss_weight = float(loss_weight)
        self.sigmas: Tensor | None
        if sigmas is None:
            self.register_buffer("sigmas", None, persistent=False)
        else:
            values = torch.as_tensor(tuple(sigmas), dtype=torch.float32)
            if values.ndim != 1 or not bool((values > 0).all()):
                raise ValueError(
                    f"OKSLoss sigmas must be a sequence of positive floats (one per keypoint); got {sigmas!r}"
                )
            self.register_buffer("sigmas", values, persistent=False)

    def forward(self, pred: Tensor, target: Tensor, weights: Tensor, areas: Tensor | None = None) -> Tensor:
        name = type(self).__name__
        check_pair(name, pred, target)
        if pred.ndim < 2 or pred.shape[-1] != 2:
            raise ValueError(f"{name}: pred and target must be keypoints (..., K, 2); got {tuple(pred.shape)}")
        _check_weights(name, weights, pred.shape[:-1], "(..., K)")
        if areas is not None and areas.shape != pred.shape[:-2]:
            raise ValueError(f"{name}: areas must be (...) = {tuple(pred.shape[:-2])}; got {tuple(areas.shape)}")
        if self.sigmas is not None and self.sigmas.shape[0] != pred.shape[-2]:
            raise ValueError(
                f"{name}: built with {self.sigmas.shape[0]} sigmas but pred has {pred.shape[-2]} keypoints; "
                "pass one sigma per keypoint (the dataset meta's)"
            )
        oks = keypoint_oks(pred, target, weights, areas, self.sigmas, self.norm_target_weight, self.eps)
        if self.mode == "linear":
            losses = 1 - oks
        elif self.mode == "square":
            losses = 1 - oks.square()
        else:
            losses = -torch.log(oks.clamp(min=self.eps))
        losses = losses * (weights.detach() > 0).any(dim=-1).to(losses)
        return _reduce(losses, self.reduction) * self.loss_weight


@LOSSES.register("bce")
class BCELoss(nn.Module):
    """Binary cross-entropy with logits: pred logits, target in [0, 1] (soft targets allowed),
    weights (same shape) or None -> scalar.

    Times the weight, reduced, times ``loss_weight`` (MMPose ``BCELoss`` with ``use_sigmoid``).
    """

    def __init__(self, reduction: str = "mean", loss_weight: float = 1.0):
        super().__init__()
        self.reduction = _check_reduction("BCELoss", reduction)
        self.loss_weight = float(loss_weight)

    def forward(self, pred: Tensor, target: Tensor, weights: Tensor | None = None) -> Tensor:
        name = type(self).__name__
        check_pair(name, pred, target)
        _check_weights(name, weights, pred.shape, "like pred")
        losses = F.binary_cross_entropy_with_logits(pred, target.to(pred), reduction="none")
        if weights is not None:
            losses = losses * weights.to(losses)
        return _reduce(losses, self.reduction) * self.loss_weight
