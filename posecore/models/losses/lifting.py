"""3D pose-lifting losses: joints pred, target (B, K, D) or sequences (B, T, K, D) -> scalar.

Coordinates are in the target's units (mm, or metres for a normalised target); D is 3 for
lifted poses. ``weights`` are target weights (B, K), constant over the T frames of a sequence,
or (B, T, K) per frame. The losses follow MMPose 1.x ``MPJPELoss`` and
``MPJPEVelocityJointLoss`` (``mmpose/models/losses/regression_loss.py``): each weight multiplies
the joint's error vector, and the mean runs over all B (x T) x K entries, weighted or not.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from posecore.models.builders import LOSSES

from ._utils import check_pair


def _check_joints(owner: str, pred: Tensor, target: Tensor, ndims: tuple[int, ...]) -> None:
    check_pair(owner, pred, target)
    if pred.ndim not in ndims:
        shapes = " or ".join({3: "(B, K, D)", 4: "(B, T, K, D)"}[n] for n in ndims)
        raise ValueError(f"{owner}: pred must be {shapes}; got shape {tuple(pred.shape)}")


class _JointWeighted(nn.Module):
    """Target weights times optional fixed per-joint weights, as (B, [T,] K, 1) against (B, [T,] K, D)."""

    joint_weights: Tensor | None

    def __init__(self, joint_weights: Sequence[float] | None, use_target_weight: bool, loss_weight: float):
        super().__init__()
        if joint_weights is not None:
            jw = torch.as_tensor(joint_weights, dtype=torch.float32).reshape(-1)
            if (jw < 0).any():
                raise ValueError(f"{type(self).__name__}.joint_weights must be >= 0; got {jw.tolist()}")
        else:
            jw = None
        self.register_buffer("joint_weights", jw)
        self.use_target_weight = use_target_weight
        self.loss_weight = float(loss_weight)

    def _weights(self, weights: Tensor, like: Tensor) -> Tensor | None:
        name = type(self).__name__
        k = like.shape[-2]
        w: Tensor | None = None
        if self.use_target_weight:
            if weights.shape == like.shape[:-1]:
                w = weights
            elif like.ndim == 4 and weights.shape == (like.shape[0], k):
                w = weights[:, None]  # one weight per joint for the whole sequence
            else:
                expected = "(B, K) or (B, T, K)" if like.ndim == 4 else "(B, K)"
                raise ValueError(
                    f"{name}: weights must be {expected} for pred {tuple(like.shape)}; got {tuple(weights.shape)} "
                    "(pass the codec's 'keypoint_weights')"
                )
            w = w.to(like.dtype)
        if self.joint_weights is not None:
            if self.joint_weights.numel() != k:
                raise ValueError(
                    f"{name}: joint_weights has {self.joint_weights.numel()} entries but pred has {k} joints; "
                    "give one weight per joint of the dataset meta"
                )
            jw = self.joint_weights.to(like.dtype)
            w = jw if w is None else w * jw
        return None if w is None else w[..., None]


@LOSSES.register("mpjpe")
class MPJPELoss(_JointWeighted):
    """Mean per-joint position error: pred, target (B, K, D) or (B, T, K, D), weights (B, K) or (B, T, K) -> scalar.

    ``mean ||w (pred - target)||`` over all joints (MMPose ``MPJPELoss``), ``w`` the target
    weight times ``joint_weights[k]`` (K,) when given (VideoPose3D's weighted MPJPE).
    """

    def __init__(
        self,
        joint_weights: Sequence[float] | None = None,
        use_target_weight: bool = True,
        loss_weight: float = 1.0,
    ):
        super().__init__(joint_weights, use_target_weight, loss_weight)

    def forward(self, pred: Tensor, target: Tensor, weights: Tensor) -> Tensor:
        _check_joints(type(self).__name__, pred, target, (3, 4))
        diff = pred - target
        w = self._weights(weights, pred)
        if w is not None:
            diff = diff * w
        return torch.linalg.vector_norm(diff, dim=-1).mean() * self.loss_weight


@LOSSES.register("mpjpe_velocity")
class MPJPEVelocityJointLoss(_JointWeighted):
    """MPJPE + N-MPJPE + velocity error of sequences: pred, target (B, T, K, D), T >= 2, weights (B, K) or (B, T, K) -> scalar.

    ``mpjpe + lambda_scale * nmpjpe + lambda_3d_velocity * velocity`` (MMPose
    ``MPJPEVelocityJointLoss``, MotionBERT's loss, same defaults 0.5 and 20):

    * ``mpjpe``: :class:`MPJPELoss` over all frames;
    * ``nmpjpe``: the same after scaling each frame's prediction by ``s = <w^2 target, pred> /
      <w^2 pred, pred>`` (summed over joints and axes; 0 when the weighted prediction is 0);
    * ``velocity``: ``mean ||w' (dpred - dtarget)||`` of the T - 1 frame-to-frame differences,
      ``w'`` the smaller of the two frames' weights (a difference needs both frames).

    Deviation from MMPose: the scale is fitted on the weighted joints; MMPose fits it on all
    joints, so a zero-weight joint still moved the other joints' N-MPJPE. With unit weights
    the two agree. The gradient flows through ``s`` as in MMPose.
    """

    def __init__(
        self,
        lambda_scale: float = 0.5,
        lambda_3d_velocity: float = 20.0,
        joint_weights: Sequence[float] | None = None,
        use_target_weight: bool = True,
        loss_weight: float = 1.0,
    ):
        super().__init__(joint_weights, use_target_weight, loss_weight)
        if lambda_scale < 0 or lambda_3d_velocity < 0:
            raise ValueError(
                f"MPJPEVelocityJointLoss needs lambda_scale, lambda_3d_velocity >= 0; "
                f"got {lambda_scale!r}, {lambda_3d_velocity!r}"
            )
        self.lambda_scale = float(lambda_scale)
        self.lambda_3d_velocity = float(lambda_3d_velocity)

    def forward(self, pred: Tensor, target: Tensor, weights: Tensor) -> Tensor:
        name = type(self).__name__
        _check_joints(name, pred, target, (4,))
        if pred.shape[1] < 2:
            raise ValueError(f"{name}: needs T >= 2 frames for the velocity term; got pred {tuple(pred.shape)}")
        w = self._weights(weights, pred)
        ww = 1.0 if w is None else w.expand(*pred.shape[:-1], 1)

        def error(diff: Tensor, weight: Tensor | float) -> Tensor:
            return torch.linalg.vector_norm(diff * weight, dim=-1).mean()

        mpjpe = error(pred - target, ww)

        fit = ww * ww
        num = (fit * target * pred).sum(dim=(-2, -1), keepdim=True)
        den = (fit * pred * pred).sum(dim=(-2, -1), keepdim=True)
        # den == 0 only where the weighted prediction is 0, and then num == 0 too: s = 0
        scale = num / torch.where(den > 0, den, torch.ones_like(den))
        nmpjpe = error(scale * pred - target, ww)

        velocity_diff = (pred[:, 1:] - pred[:, :-1]) - (target[:, 1:] - target[:, :-1])
        velocity_weight = 1.0 if w is None else torch.minimum(ww[:, 1:], ww[:, :-1])
        velocity = error(velocity_diff, velocity_weight)

        loss = mpjpe + self.lambda_scale * nmpjpe + self.lambda_3d_velocity * velocity
        return loss * self.loss_weight
