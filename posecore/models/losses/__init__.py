"""Losses: ``forward(pred, target, weights (B, K)) -> scalar Tensor``, registered in ``LOSSES``.

Shapes by family (B instances, K keypoints):

- heatmap losses (``keypoint_mse``, ``keypoint_ohkm_mse``, ``adaptive_wing``, ``focal_heatmap``
  on logits): pred/target (B, C, H, W) with C = K, or C = m * K (UDP combined maps: each
  keypoint's weight covers its m channels);
- ``kl_discret``: SimCC logits / labels (B, K, L) for one axis (a head adds the x and y terms);
- regression losses (``smooth_l1``, ``wing``): normalised coords (B, K, D);
- ``rle``: pred (B, K, 4) = coords (B, K, 2) then sigmas (B, K, 2) in (0, 1), target coords (B, K, 2);
- lifting losses (``mpjpe``, ``mpjpe_velocity``, in :mod:`.lifting`): 3D joints (B, K, 3), or
  sequences (B, T, K, 3) with weights (B, K) for the whole sequence or (B, T, K) per frame.

Detection losses of one-stage heads (``iou``, ``oks``, ``bce``, in :mod:`.detection`) take
per-instance tensors of any leading shape and differ in signature: ``iou`` boxes (..., 4) xyxy
with weights (...) or None; ``oks`` keypoints (..., K, 2) with weights (..., K) (visibility) and
optional areas (...); ``bce`` logits and targets of one shape with weights of that shape or None.
They have ``reduction`` "mean" or "sum" (a head dividing by its positives uses "sum").

Every loss follows its MMPose 1.x namesake (formulas, reductions, defaults except where its
docstring says otherwise) and defaults to ``use_target_weight=True``, so a keypoint with weight 0
contributes nothing.

To add a loss: write an ``nn.Module`` with that ``forward`` in a module of this package,
decorate the class with ``@LOSSES.register("name")``, import the module below, and add an input
recipe for it in ``tests/models/losses/test_losses.py`` (the registry-driven tests then check it
is finite, differentiable and ignores zero-weight keypoints; a loss whose keypoint axis is not
dimension 1, like a sequence loss's (B, T, K, D), also names where keypoint (0, 1) sits there).
"""

from __future__ import annotations

from . import classification, detection, heatmap, lifting, regression  # noqa: F401  (registers the losses)
from .classification import KLDiscretLoss
from .detection import BCELoss, IoULoss, OKSLoss
from .heatmap import AdaptiveWingLoss, FocalHeatmapLoss, KeypointMSELoss, KeypointOHKMMSELoss
from .lifting import MPJPELoss, MPJPEVelocityJointLoss
from .regression import RealNVP, RLELoss, SmoothL1Loss, WingLoss

__all__ = [
    "AdaptiveWingLoss",
    "BCELoss",
    "FocalHeatmapLoss",
    "IoULoss",
    "KLDiscretLoss",
    "KeypointMSELoss",
    "KeypointOHKMMSELoss",
    "MPJPELoss",
    "MPJPEVelocityJointLoss",
    "OKSLoss",
    "RLELoss",
    "RealNVP",
    "SmoothL1Loss",
    "WingLoss",
]
