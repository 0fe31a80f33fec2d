"""Shape checks and weight broadcasting shared by the losses."""

from __future__ import annotations

from torch import Tensor


def check_pair(owner: str, pred: Tensor, target: Tensor, ndim: int | None = None) -> None:
    """pred and target have the same shape (and ``ndim`` dimensions when given)."""
    if pred.shape != target.shape:
        raise ValueError(
            f"{owner}: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape; "
            "encode the targets with the codec the head was built with"
        )
    if ndim is not None and pred.ndim != ndim:
        raise ValueError(f"{owner}: expects {ndim}-D pred/target; got shape {tuple(pred.shape)}")


def expand_weights(owner: str, weights: Tensor, like: Tensor) -> Tensor:
    """weights (B, K) -> (B, C, 1, ...) broadcastable against ``like`` (B, C, ...), C = m * K.

    With C = m * K (UDP combined maps: 3 channels per keypoint) each weight is repeated for the
    keypoint's m consecutive channels.
    """
    if weights.ndim != 2 or weights.shape[0] != like.shape[0] or like.shape[1] % max(weights.shape[1], 1):
        raise ValueError(
            f"{owner}: weights must be (B, K) = ({like.shape[0]}, K) with K dividing the {like.shape[1]} "
            f"channels of pred; got {tuple(weights.shape)} (pass the codec's 'keypoint_weights')"
        )
    w = weights.to(like.dtype)
    per = like.shape[1] // weights.shape[1]
    if per > 1:
        w = w.repeat_interleave(per, dim=1)
    return w.reshape(*w.shape, *([1] * (like.ndim - 2)))
