"""Select backbone features, optionally resized to the finest selected one and concatenated."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from posecore.models.backbones._common import check_out_indices
from posecore.models.builders import NECKS


class FeatureMapProcessor(nn.Module):
    """feats: tuple of (B, in_channels[i], H_i, W_i)
    -> without ``concat``: the features at ``select_index`` unchanged;
    -> with ``concat``: one (B, sum of their channels, H, W) tensor at the finest selected
       resolution (coarser ones bilinearly resized to it), stride = the smallest selected.

    Like MMPose's ``FeatureMapProcessor``; no parameters.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        strides: Sequence[int],
        select_index: int | Sequence[int] = -1,
        concat: bool = False,
    ) -> None:
        super().__init__()
        if len(in_channels) != len(strides):
            raise ValueError(f"got {len(in_channels)} in_channels but {len(strides)} strides")
        index = (select_index,) if isinstance(select_index, int) else tuple(select_index)
        self.select_index = check_out_indices(index, len(in_channels), index, "select_index")
        self.concat = concat
        channels = [in_channels[i] for i in self.select_index]
        selected_strides = [strides[i] for i in self.select_index]
        if concat:
            self.out_channels: tuple[int, ...] = (sum(channels),)
            self.strides: tuple[int, ...] = (min(selected_strides),)
        else:
            self.out_channels, self.strides = tuple(channels), tuple(selected_strides)

    def forward(self, feats: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        selected = [feats[i] for i in self.select_index]
        if not self.concat:
            return tuple(selected)
        size = max((f.shape[-2:] for f in selected), key=lambda s: s[0] * s[1])
        resized = [
            f if f.shape[-2:] == size else F.interpolate(f, size=size, mode="bilinear", align_corners=False)
            for f in selected
        ]
        return (torch.cat(resized, dim=1),)


@NECKS.register("feature_map_processor")
def feature_map_processor(
    in_channels: Sequence[int],
    strides: Sequence[int],
    select_index: int | Sequence[int] = -1,
    concat: bool = False,
) -> FeatureMapProcessor:
    """Pick features by index (default: the last, coarsest); ``concat=True`` fuses them at the finest."""
    return FeatureMapProcessor(in_channels, strides, select_index, concat)
