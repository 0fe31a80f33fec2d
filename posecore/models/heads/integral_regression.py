"""Integral regression head (IPR, Sun et al. 2018; DSNT, Nibali et al. 2018): soft-argmax of heatmaps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from posecore.codecs.base import Codec
from posecore.models.builders import HEADS

from ._base import (
    KeypointAxes,
    PoseHead,
    build_loss,
    init_like_mmpose,
    layer_keypoint_axes,
    make_conv_layers,
    make_deconv_layers,
)


@HEADS.register("integral_regression")
class IntegralRegressionHead(PoseHead):
    """Heatmaps + soft-argmax: feats[in_index] (B, C_in, H/s, W/s) -> {"heatmaps": (B, K, H_hm, W_hm), "coords": (B, K, 2)}.

    A SimpleBaseline branch (deconvolutions, 1x1 conv to K maps) whose maps go through a softmax
    over all pixels (logits times ``beta``), so "heatmaps" are probability maps like the codec's
    normalised targets; "coords" are their expectations (sum_i p_i * i / W_hm, sum_j p_j * j / H_hm),
    normalised like the codec's coords (input pixel x = heatmap pixel * W / W_hm, MSRA's mapping).
    The build checks input_size / in_stride * 2**len(deconv_out_channels) == heatmap_size.

    Losses: "loss_coords", ``smooth_l1`` with target weights (MMPose's
    ``IntegralRegressionHead``), plus "loss_heatmaps" = ``heatmap_loss_weight`` * ``heatmap_loss``
    on the probability maps (DSNT's heatmap regulariser). MMPose's ``DSNTHead`` uses a
    Jensen-Shannon term there; we use ``keypoint_mse`` with target weights by default (pass any
    heatmap loss, e.g. ``adaptive_wing``). Probability maps are small (a sigma-2 gaussian peaks at
    ~0.04), so the MSE term is small unless weighted up; ``heatmap_loss_weight=0`` drops it
    (pure IPR). Decode: the codec's, from "coords".
    """

    codec_keys = ("heatmaps", "coords")
    output_keys = ("heatmaps", "coords")

    def __init__(
        self,
        in_channels: int,
        in_stride: int,
        num_keypoints: int,
        codec: Codec,
        deconv_out_channels: Sequence[int] = (256, 256, 256),
        deconv_kernel_sizes: Sequence[int] | None = None,
        conv_out_channels: Sequence[int] = (),
        conv_kernel_sizes: Sequence[int] = (),
        beta: float = 1.0,
        loss: nn.Module | str | None = None,
        heatmap_loss: nn.Module | str | None = None,
        heatmap_loss_weight: float = 1.0,
        in_index: int = -1,
    ):
        super().__init__(in_channels, in_stride, num_keypoints, codec, in_index)
        name = type(self).__name__
        channels, h, w = self.target_shapes["heatmaps"]
        if channels != num_keypoints:
            raise ValueError(f"{name}: the codec's heatmaps must have one channel per keypoint; got {channels}")
        if not beta > 0:
            raise ValueError(f"{name}: beta (softmax sharpness) must be positive; got {beta!r}")
        if not heatmap_loss_weight >= 0:
            raise ValueError(
                f"{name}: heatmap_loss_weight must be >= 0 (0 drops the term); got {heatmap_loss_weight!r}"
            )
        deconv_out_channels = tuple(deconv_out_channels or ())
        conv_out_channels = tuple(conv_out_channels or ())
        self.check_upsampling(len(deconv_out_channels), (w, h), "heatmaps", "deconv_out_channels")
        self.feature_hw = self.feature_size()
        self.deconv_layers = make_deconv_layers(name, in_channels, deconv_out_channels, deconv_kernel_sizes)
        c = deconv_out_channels[-1] if deconv_out_channels else in_channels
        self.conv_layers = make_conv_layers(name, c, conv_out_channels, tuple(conv_kernel_sizes or ()))
        c = conv_out_channels[-1] if conv_out_channels else c
        self.final_layer = nn.Conv2d(c, num_keypoints, kernel_size=1)
        self.beta = float(beta)
        self.register_buffer("grid_x", torch.arange(w, dtype=torch.float32) / w, persistent=False)
        self.register_buffer("grid_y", torch.arange(h, dtype=torch.float32) / h, persistent=False)
        init_like_mmpose(self)
        self.loss_module = build_loss(name, loss, "smooth_l1", use_target_weight=True)
        self.heatmap_loss_weight = float(heatmap_loss_weight)
        self.heatmap_loss_module = build_loss(name, heatmap_loss, "keypoint_mse", use_target_weight=True)

    def forward(self, feats: Sequence[Tensor]) -> dict[str, Tensor]:
        """feats -> {"heatmaps": (B, K, H_hm, W_hm) summing to 1 per map, "coords": (B, K, 2) normalised}."""
        x = self.select(feats, self.feature_hw)
        logits = self.final_layer(self.conv_layers(self.deconv_layers(x)))
        b, k, h, w = logits.shape
        heatmaps = torch.softmax(logits.reshape(b, k, h * w) * self.beta, dim=-1).reshape(b, k, h, w)
        x_coord = (heatmaps.sum(dim=2) * self.grid_x.to(heatmaps.dtype)).sum(dim=-1)
        y_coord = (heatmaps.sum(dim=3) * self.grid_y.to(heatmaps.dtype)).sum(dim=-1)
        return {"heatmaps": heatmaps, "coords": torch.stack((x_coord, y_coord), dim=-1)}

    def keypoint_axes(self) -> KeypointAxes:
        """``final_layer``: one logit map per keypoint."""
        return layer_keypoint_axes("final_layer", self.final_layer, 1)

    def loss(self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """{"loss_coords"[, "loss_heatmaps"]}; targets = codec.encode(...) with "heatmaps", "coords", "keypoint_weights"."""
        weights = self.check_targets(outputs, targets)
        losses = {"loss_coords": self.loss_module(outputs["coords"], targets["coords"], weights)}
        if self.heatmap_loss_weight > 0:
            term = self.heatmap_loss_module(outputs["heatmaps"], targets["heatmaps"], weights)
            losses["loss_heatmaps"] = term * self.heatmap_loss_weight
        return losses
