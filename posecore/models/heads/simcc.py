"""SimCC-style heads: per-keypoint 1-D classification over x and y bins (SimCC, RTMPose)."""

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
from ._gau import GAUBlock, ScaleNorm


class _SimCCHead(PoseHead):
    """A head whose outputs are "simcc_x" (B, K, Wx) and "simcc_y" (B, K, Wy), trained per axis."""

    codec_keys = ("simcc_x", "simcc_y")
    output_keys = ("simcc_x", "simcc_y")
    loss_module: nn.Module
    final_layer: nn.Conv2d  # one map (token) per keypoint

    def loss(self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """{"loss_simcc_x", "loss_simcc_y"}: the loss of each axis (their sum is MMPose's loss_kpt)."""
        weights = self.check_targets(outputs, targets)
        return {f"loss_{key}": self.loss_module(outputs[key], targets[key], weights) for key in ("simcc_x", "simcc_y")}

    def keypoint_axes(self) -> KeypointAxes:
        """``final_layer``, the conv making one map (one token) per keypoint; the layers after it are
        shared by all keypoints. (RTMCC's optional relative-position bias ``gau.w`` is indexed by
        keypoint distance, not by keypoint: with another K it starts fresh.)"""
        return layer_keypoint_axes("final_layer", self.final_layer, 1)


@HEADS.register("rtmcc")
class RTMCCHead(_SimCCHead):
    """RTMPose head: feats[in_index] (B, C_in, H/s, W/s) -> {"simcc_x": (B, K, Wx), "simcc_y": (B, K, Wy)}.

    A large-kernel conv to K maps, flattened to K tokens of (H/s)(W/s) values, ScaleNorm + linear
    to ``hidden_dims``, one gated attention unit across the K tokens, then linear to the codec's
    Wx = W * split_ratio and Wy = H * split_ratio bins. The build checks that input_size is a
    multiple of in_stride (the flattened size is fixed).
    Loss: ``kl_discret`` with beta=10, label_softmax=True (RTMPose) by default, one per axis.
    Decode: the codec's (argmax per axis). MMPose ``RTMCCHead`` with RTMPose's configuration
    (final kernel 7, SiLU, no relative bias, no RoPE).
    """

    def __init__(
        self,
        in_channels: int,
        in_stride: int,
        num_keypoints: int,
        codec: Codec,
        final_layer_kernel_size: int = 7,
        hidden_dims: int = 256,
        s: int = 128,
        expansion_factor: float = 2,
        dropout_rate: float = 0.0,
        drop_path: float = 0.0,
        act_fn: str = "SiLU",
        use_rel_bias: bool = False,
        pos_enc: bool = False,
        loss: nn.Module | str | None = None,
        in_index: int = -1,
    ):
        super().__init__(in_channels, in_stride, num_keypoints, codec, in_index)
        name = type(self).__name__
        if final_layer_kernel_size < 1 or final_layer_kernel_size % 2 == 0:
            raise ValueError(
                f"{name}: final_layer_kernel_size must be odd (it keeps the size); got {final_layer_kernel_size}"
            )
        self.feature_hw = self.feature_size()
        flatten_dims = self.feature_hw[0] * self.feature_hw[1]
        wx = self.target_shapes["simcc_x"][-1]
        wy = self.target_shapes["simcc_y"][-1]
        k = num_keypoints
        self.final_layer = nn.Conv2d(in_channels, k, final_layer_kernel_size, padding=final_layer_kernel_size // 2)
        self.mlp = nn.Sequential(ScaleNorm(flatten_dims), nn.Linear(flatten_dims, hidden_dims, bias=False))
        self.gau = GAUBlock(
            k,
            hidden_dims,
            hidden_dims,
            expansion_factor=expansion_factor,
            s=s,
            dropout_rate=dropout_rate,
            drop_path=drop_path,
            act_fn=act_fn,
            use_rel_bias=use_rel_bias,
            pos_enc=pos_enc,
        )
        self.cls_x = nn.Linear(hidden_dims, wx, bias=False)
        self.cls_y = nn.Linear(hidden_dims, wy, bias=False)
        init_like_mmpose(self)
        self.loss_module = build_loss(name, loss, "kl_discret", beta=10.0, label_softmax=True, use_target_weight=True)

    def forward(self, feats: Sequence[Tensor]) -> dict[str, Tensor]:
        """feats -> {"simcc_x": (B, K, Wx), "simcc_y": (B, K, Wy)} logits."""
        x = self.select(feats, self.feature_hw)
        tokens = self.gau(self.mlp(torch.flatten(self.final_layer(x), 2)))  # (B, K, hidden)
        return {"simcc_x": self.cls_x(tokens), "simcc_y": self.cls_y(tokens)}


@HEADS.register("simcc")
class SimCCHead(_SimCCHead):
    """SimCC head: feats[in_index] (B, C_in, H/s, W/s) -> {"simcc_x": (B, K, Wx), "simcc_y": (B, K, Wy)}.

    Optional SimpleBaseline deconvolutions (each doubles the map), a 1x1 conv to K maps, each
    map flattened and mapped by one linear layer per axis to the codec's Wx and Wy bins.
    The build checks that input_size is a multiple of in_stride (the flattened size is fixed).
    Loss: ``kl_discret`` (beta 1, raw labels) by default, one per axis.
    Decode: the codec's (argmax per axis). MMPose ``SimCCHead`` (deconv_type "heatmap"); pass
    ``deconv_out_channels=()`` for the deconv-free variant of SimCC's ResNet/MobileNet configs.
    """

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
        loss: nn.Module | str | None = None,
        in_index: int = -1,
    ):
        super().__init__(in_channels, in_stride, num_keypoints, codec, in_index)
        name = type(self).__name__
        self.feature_hw = self.feature_size()
        deconv_out_channels = tuple(deconv_out_channels or ())
        conv_out_channels = tuple(conv_out_channels or ())
        self.deconv_layers = make_deconv_layers(name, in_channels, deconv_out_channels, deconv_kernel_sizes)
        channels = deconv_out_channels[-1] if deconv_out_channels else in_channels
        self.conv_layers = make_conv_layers(name, channels, conv_out_channels, tuple(conv_kernel_sizes or ()))
        channels = conv_out_channels[-1] if conv_out_channels else channels
        self.final_layer = nn.Conv2d(channels, num_keypoints, kernel_size=1)
        up = 2 ** len(deconv_out_channels)
        flatten_dims = self.feature_hw[0] * up * self.feature_hw[1] * up
        self.mlp_head_x = nn.Linear(flatten_dims, self.target_shapes["simcc_x"][-1])
        self.mlp_head_y = nn.Linear(flatten_dims, self.target_shapes["simcc_y"][-1])
        init_like_mmpose(self)
        self.loss_module = build_loss(name, loss, "kl_discret", use_target_weight=True)

    def forward(self, feats: Sequence[Tensor]) -> dict[str, Tensor]:
        """feats -> {"simcc_x": (B, K, Wx), "simcc_y": (B, K, Wy)} logits."""
        x = self.select(feats, self.feature_hw)
        maps = torch.flatten(self.final_layer(self.conv_layers(self.deconv_layers(x))), 2)
        return {"simcc_x": self.mlp_head_x(maps), "simcc_y": self.mlp_head_y(maps)}
