"""SimCC classification loss: logits / labels (B, K, L) of one axis, weights (B, K) -> scalar."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from posecore.models.builders import LOSSES

from ._utils import check_pair


@LOSSES.register("kl_discret")
class KLDiscretLoss(nn.Module):
    """Discrete KL divergence of SimCC vectors: pred logits, target labels (B, K, L), weights (B, K) -> scalar.

    Per keypoint: mean over the L bins of KL(q || p) terms q (log q - log p), with
    p = softmax(beta * pred) and q = the labels, or softmax(label_beta * labels) when
    ``label_softmax``; multiplied by the weight, summed over B and K, divided by K
    (MMPose ``KLDiscretLoss``, which a SimCC head applies to x and to y and adds up).
    RTMPose trains with beta=10, label_softmax=True.
    """

    def __init__(
        self,
        beta: float = 1.0,
        label_softmax: bool = False,
        label_beta: float = 10.0,
        use_target_weight: bool = True,
        loss_weight: float = 1.0,
    ):
        super().__init__()
        self.beta = float(beta)
        self.label_softmax = label_softmax
        self.label_beta = float(label_beta)
        self.use_target_weight = use_target_weight
        self.loss_weight = float(loss_weight)

    def forward(self, pred: Tensor, target: Tensor, weights: Tensor) -> Tensor:
        name = type(self).__name__
        check_pair(name, pred, target, ndim=3)
        log_p = F.log_softmax(pred * self.beta, dim=-1)
        labels = F.softmax(target * self.label_beta, dim=-1) if self.label_softmax else target
        per_keypoint = F.kl_div(log_p, labels, reduction="none").mean(dim=-1)  # (B, K)
        if self.use_target_weight:
            if weights.shape != per_keypoint.shape:
                raise ValueError(
                    f"{name}: weights must be (B, K) = {tuple(per_keypoint.shape)}; got {tuple(weights.shape)}"
                )
            per_keypoint = per_keypoint * weights.to(per_keypoint.dtype)
        return per_keypoint.sum() / pred.shape[1] * self.loss_weight
