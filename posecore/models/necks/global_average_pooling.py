"""Global average pooling neck: each feature map -> one vector per sample."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from posecore.models.builders import NECKS


class GlobalAveragePooling(nn.Module):
    """feats: tuple of (B, C_i, H_i, W_i) -> tuple of (B, C_i), the spatial means.

    ``out_channels`` = ``in_channels``; ``strides`` are those of the pooled maps (kept so that a
    caller knows where each vector came from; the vectors themselves have no spatial extent).
    """

    def __init__(self, in_channels: Sequence[int], strides: Sequence[int]) -> None:
        super().__init__()
        self.out_channels = tuple(in_channels)
        self.strides = tuple(strides)

    def forward(self, feats: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        return tuple(f.mean(dim=(2, 3)) for f in feats)


@NECKS.register("global_average_pooling")
def global_average_pooling(in_channels: Sequence[int], strides: Sequence[int]) -> GlobalAveragePooling:
    """GAP over each feature: (B, C, H, W) -> (B, C)."""
    return GlobalAveragePooling(in_channels, strides)
