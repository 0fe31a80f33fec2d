"""Direct coordinate regression heads: DeepPose-style and RLE (Li et al., ICCV 2021)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from posecore.codecs.base import Codec
from posecore.models.builders import HEADS

from ._base import KeypointAxes, PoseHead, build_loss, init_like_mmpose, layer_keypoint_axes


@HEADS.register("regression")
class RegressionHead(PoseHead):
    """Global average pooling + linear: feats[in_index] (B, C_in, h, w) -> {"coords": (B, K, 2)}.

    coords are normalised (x / W, y / H of the input), the codec's convention; any feature size
    works (``in_stride`` is only validated). Loss: ``smooth_l1`` with target weights (MMPose's
    DeepPose configs), "loss_coords". Decode: the codec's (coords * input size, scores 1).
    MMPose ``RegressionHead`` behind its ``GlobalAveragePooling`` neck.
    """

    codec_keys = ("coords",)
    output_keys = ("coords",)

    def __init__(
        self,
        in_channels: int,
        in_stride: int,
        num_keypoints: int,
        codec: Codec,
        loss: nn.Module | str | None = None,
        in_index: int = -1,
    ):
        super().__init__(in_channels, in_stride, num_keypoints, codec, in_index)
        self.fc = nn.Linear(in_channels, num_keypoints * 2)
        init_like_mmpose(self)
        self.loss_module = build_loss(type(self).__name__, loss, "smooth_l1", use_target_weight=True)

    def forward(self, feats: Sequence[Tensor]) -> dict[str, Tensor]:
        """feats -> {"coords": (B, K, 2)} normalised."""
        x = self.select(feats).mean(dim=(2, 3))
        return {"coords": self.fc(x).reshape(-1, self.num_keypoints, 2)}

    def keypoint_axes(self) -> KeypointAxes:
        """``fc``: (x, y) of each keypoint in turn."""
        return layer_keypoint_axes("fc", self.fc, 2)

    def loss(self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """{"loss_coords": scalar}; targets = codec.encode(...) with "coords" and "keypoint_weights"."""
        weights = self.check_targets(outputs, targets)
        return {"loss_coords": self.loss_module(outputs["coords"], targets["coords"], weights)}


@HEADS.register("rle")
class RLEHead(PoseHead):
    """RLE head: feats[in_index] (B, C_in, h, w) -> {"coords": (B, K, 2), "sigmas": (B, K, 2)}.

    Global average pooling + one linear layer to 4 values per keypoint: normalised coords and
    sigmas = sigmoid(raw) in (0, 1), the scale of the predicted error distribution. Loss: ``rle``
    (residual log-likelihood with a RealNVP flow, whose parameters belong to this head),
    "loss_coords". Decode: the codec's, from "coords" (scores = mean(1 - sigmas)).
    MMPose ``RLEHead`` behind ``GlobalAveragePooling``; the sigmoid moves from the loss to the head.
    """

    codec_keys = ("coords",)
    output_keys = ("coords", "sigmas")

    def __init__(
        self,
        in_channels: int,
        in_stride: int,
        num_keypoints: int,
        codec: Codec,
        loss: nn.Module | str | None = None,
        in_index: int = -1,
    ):
        super().__init__(in_channels, in_stride, num_keypoints, codec, in_index)
        self.fc = nn.Linear(in_channels, num_keypoints * 4)
        init_like_mmpose(self)
        self.loss_module = build_loss(type(self).__name__, loss, "rle", use_target_weight=True)

    def forward(self, feats: Sequence[Tensor]) -> dict[str, Tensor]:
        """feats -> {"coords": (B, K, 2) normalised, "sigmas": (B, K, 2) in (0, 1)}."""
        out = self.fc(self.select(feats).mean(dim=(2, 3))).reshape(-1, self.num_keypoints, 4)
        return {"coords": out[..., :2], "sigmas": out[..., 2:].sigmoid()}

    def keypoint_axes(self) -> KeypointAxes:
        """``fc``: (x, y, raw sigma x, raw sigma y) of each keypoint in turn (the flow of the loss is 2-D, shared)."""
        return layer_keypoint_axes("fc", self.fc, 4)

    def loss(self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """{"loss_coords": scalar}: the RLE loss of coords and sigmas against the "coords" targets."""
        weights = self.check_targets(outputs, targets)
        pred = torch.cat([outputs["coords"], outputs["sigmas"]], dim=-1)
        return {"loss_coords": self.loss_module(pred, targets["coords"], weights)}
