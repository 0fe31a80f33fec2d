"""Feature pyramid network neck (Lin et al. 2017): top-down pathway with lateral connections."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from posecore.models.backbones._common import check_out_indices
from posecore.models.builders import NECKS


class FPN(nn.Module):
    """feats: tuple of (B, in_channels[i], H_i, W_i), strides increasing
    -> tuple of (B, out_channels, H_i, W_i) for i in ``out_indices`` (default all levels).

    Each level: lateral 1x1 conv, plus the nearest-upsampled (to this level's exact size) sum from
    the coarser level, then a 3x3 output conv. Convs have biases and no normalisation, as in the
    paper and MMDetection / MMPose's ``FPN``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        strides: Sequence[int],
        out_channels: int = 256,
        out_indices: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if len(in_channels) != len(strides):
            raise ValueError(f"FPN got {len(in_channels)} in_channels but {len(strides)} strides")
        if list(strides) != sorted(set(strides)):
            raise ValueError(f"FPN needs strictly increasing strides (fine to coarse), got {tuple(strides)}")
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.out_indices = check_out_indices(out_indices, len(in_channels), range(len(in_channels)))
        # output convs only for the levels returned, so that every parameter gets a gradient
        self.fpn_convs = nn.ModuleDict(
            {str(i): nn.Conv2d(out_channels, out_channels, 3, padding=1) for i in self.out_indices}
        )
        self.out_channels = tuple(out_channels for _ in self.out_indices)
        self.strides = tuple(strides[i] for i in self.out_indices)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, feats: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        if len(feats) != len(self.lateral_convs):
            raise ValueError(f"FPN built for {len(self.lateral_convs)} levels got {len(feats)} features")
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, feats, strict=True)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest"
            )
        return tuple(self.fpn_convs[str(i)](laterals[i]) for i in self.out_indices)


@NECKS.register("fpn")
def fpn(
    in_channels: Sequence[int],
    strides: Sequence[int],
    out_channels: int = 256,
    out_indices: Sequence[int] | None = None,
) -> FPN:
    """Top-down FPN: every level (or ``out_indices``) with ``out_channels`` channels, strides unchanged."""
    return FPN(in_channels, strides, out_channels, out_indices)
