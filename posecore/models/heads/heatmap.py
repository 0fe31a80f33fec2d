"""SimpleBaseline heatmap head (Xiao et al., "Simple Baselines", ECCV 2018)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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


@HEADS.register("heatmap")
class HeatmapHead(PoseHead):
    """Deconvolutions then a 1x1 conv: feats[in_index] (B, C_in, H/s, W/s) -> {"heatmaps": (B, C, H_hm, W_hm)}.

    C is the codec's channel count (K; 3K for UDP combined maps), H_hm x W_hm its heatmap size.
    Each deconv layer (stride 2, BN, ReLU) doubles the feature, so the build checks
    input_size / in_stride * 2**len(deconv_out_channels) == heatmap_size.
    Loss: ``keypoint_mse`` with target weights by default, "loss_heatmaps".
    Decode: the codec's (argmax + refinement). MMPose ``HeatmapHead``.
    """

    codec_keys = ("heatmaps",)
    output_keys = ("heatmaps",)

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
        has_final_layer: bool = True,
        loss: nn.Module | str | None = None,
        in_index: int = -1,
    ):
        super().__init__(in_channels, in_stride, num_keypoints, codec, in_index)
        name = type(self).__name__
        out_channels, h, w = self.target_shapes["heatmaps"]
        deconv_out_channels = tuple(deconv_out_channels or ())
        self.check_upsampling(len(deconv_out_channels), (w, h), "heatmaps", "deconv_out_channels")
        self.feature_hw = self.feature_size()
        self.deconv_layers = make_deconv_layers(name, in_channels, deconv_out_channels, deconv_kernel_sizes)
        channels = deconv_out_channels[-1] if deconv_out_channels else in_channels
        conv_out_channels = tuple(conv_out_channels or ())
        self.conv_layers = make_conv_layers(name, channels, conv_out_channels, tuple(conv_kernel_sizes or ()))
        channels = conv_out_channels[-1] if conv_out_channels else channels
        if has_final_layer:
            self.final_layer: nn.Module = nn.Conv2d(channels, out_channels, kernel_size=1)
        elif channels != out_channels:
            raise ValueError(
                f"{name}: without a final layer the last layer's {channels} channels must equal the codec's "
                f"{out_channels} heatmap channels; set has_final_layer=True or make the last layer {out_channels} wide"
            )
        else:
            self.final_layer = nn.Identity()
        init_like_mmpose(self)
        self.loss_module = build_loss(name, loss, "keypoint_mse", use_target_weight=True)

    def forward(self, feats: Sequence[Tensor]) -> dict[str, Tensor]:
        """feats -> {"heatmaps": (B, C, H_hm, W_hm)}."""
        x = self.select(feats, self.feature_hw)
        return {"heatmaps": self.final_layer(self.conv_layers(self.deconv_layers(x)))}

    def keypoint_axes(self) -> KeypointAxes:
        """The layer making the C = K * per maps (per 3 for UDP combined maps: disc, x and y offset of
        each keypoint in turn): ``final_layer``, or without one the last conv (else deconv) layer and its BN."""
        per = self.target_shapes["heatmaps"][0] // self.num_keypoints
        if isinstance(self.final_layer, nn.Conv2d):
            return layer_keypoint_axes("final_layer", self.final_layer, per)
        for stack in ("conv_layers", "deconv_layers"):
            layers = getattr(self, stack)
            if len(layers):  # [..., conv, BN, ReLU]
                n = len(layers)
                return {
                    **layer_keypoint_axes(f"{stack}.{n - 3}", layers[n - 3], per),
                    **layer_keypoint_axes(f"{stack}.{n - 2}", layers[n - 2], per),
                }
        return {}  # the maps are the input feature itself: nothing of the head's own

    def loss(self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """{"loss_heatmaps": scalar}; targets = codec.encode(...) with "heatmaps" and "keypoint_weights"."""
        weights = self.check_targets(outputs, targets)
        return {"loss_heatmaps": self.loss_module(outputs["heatmaps"], targets["heatmaps"], weights)}
