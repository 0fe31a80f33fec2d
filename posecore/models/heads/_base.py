"""Shared plumbing of the heads: argument and codec checks, feature selection, loss building, layer stacks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import ClassVar

import torch
from torch import Tensor, nn

import posecore.models.losses  # noqa: F401  (registers the losses the heads default to)
from posecore.codecs.base import Codec
from posecore.models.builders import LOSSES


def _positive_int(owner: str, name: str, value: object, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive int{hint}; got {value!r}")
    return value


def build_loss(owner: str, loss: nn.Module | str | None, default: str, **default_options: object) -> nn.Module:
    """A loss module: ``loss`` itself, ``LOSSES.build(loss)``, or (None) ``LOSSES.build(default, **default_options)``."""
    if loss is None:
        return LOSSES.build(default, **default_options)
    if isinstance(loss, str):
        return LOSSES.build(loss)
    if isinstance(loss, nn.Module):
        return loss
    raise ValueError(
        f"{owner}: loss must be a registered loss name ({', '.join(LOSSES.names())}), a built loss module "
        f"(LOSSES.build(name, **options)) or None for the default {default!r}; got {type(loss).__name__}"
    )


KeypointAxes = dict[str, tuple[int, int]]
"""state-dict name -> (dim, values per keypoint) of the tensors indexed by keypoint (see ``PoseHead.keypoint_axes``)."""


def layer_keypoint_axes(name: str, layer: nn.Module, per: int) -> KeypointAxes:
    """The keypoint-indexed tensors of one layer whose K * ``per`` output channels are keypoint-major:
    Conv2d / Linear weight and bias (dim 0), ConvTranspose2d weight (dim 1: (in, out, kh, kw)) and
    bias, BatchNorm2d's affine parameters and running statistics."""
    if isinstance(layer, nn.ConvTranspose2d):
        out = {f"{name}.weight": (1, per)}
    elif isinstance(layer, nn.Conv2d | nn.Linear):
        out = {f"{name}.weight": (0, per)}
    elif isinstance(layer, nn.BatchNorm2d):
        return {f"{name}.{t}": (0, per) for t in ("weight", "bias", "running_mean", "running_var")}
    else:
        raise TypeError(f"layer_keypoint_axes: {name} is a {type(layer).__name__}, not a conv, linear or BN layer")
    if layer.bias is not None:
        out[f"{name}.bias"] = (0, per)
    return out


class PoseHead(nn.Module):
    """Base of every head: checks how it fits its input feature and codec, selects the feature, checks targets.

    Subclasses set ``codec_keys`` (the codec ``target_keys`` they are made for) and
    ``output_keys`` (what ``forward`` returns; a superset of ``codec_keys``).
    """

    codec_keys: ClassVar[tuple[str, ...]]
    output_keys: ClassVar[tuple[str, ...]]

    def __init__(self, in_channels: int, in_stride: int, num_keypoints: int, codec: Codec, in_index: int = -1):
        super().__init__()
        name = type(self).__name__
        self.in_channels = _positive_int(name, "in_channels", in_channels, " (channels of the feature the head reads)")
        self.in_stride = _positive_int(name, "in_stride", in_stride, " (stride of the feature the head reads)")
        self.num_keypoints = _positive_int(
            name, "num_keypoints", num_keypoints, " (use the dataset meta's num_keypoints)"
        )
        if not isinstance(codec, Codec):
            raise ValueError(f"{name}: codec must be a posecore Codec (build_codec(...)); got {type(codec).__name__}")
        if tuple(sorted(codec.target_keys)) != tuple(sorted(self.codec_keys)):
            raise ValueError(
                f"{name} predicts {', '.join(self.output_keys)} and trains on a codec whose targets are "
                f"{self.codec_keys}; {type(codec).__name__} encodes {tuple(codec.target_keys)}: "
                "pair the head with a matching codec (heatmap: msra_heatmap/udp_heatmap; rtmcc, simcc: simcc; "
                "regression, rle: regression; integral_regression: integral_regression)"
            )
        if isinstance(in_index, bool) or not isinstance(in_index, int):
            raise ValueError(f"{name}: in_index must be an int (which backbone/neck output to read); got {in_index!r}")
        self.in_index = in_index
        self.codec = codec
        self.target_shapes: dict[str, tuple[int, ...]] = codec.target_shapes(num_keypoints)

    # ------------------------------------------------------------------ build-time helpers

    def input_size(self) -> tuple[int, int]:
        """(W, H) of the network input, from the codec."""
        size = getattr(self.codec, "input_size", None)
        if not (isinstance(size, tuple) and len(size) == 2):
            raise ValueError(f"{type(self).__name__}: codec {type(self.codec).__name__} has no (W, H) input_size")
        return size

    def feature_size(self) -> tuple[int, int]:
        """(W, H) of the feature the head reads: input_size / in_stride, which must divide exactly."""
        w, h = self.input_size()
        s = self.in_stride
        if w % s or h % s:
            fit = (-(-w // s) * s, -(-h // s) * s)
            raise ValueError(
                f"{type(self).__name__}: input_size (W, H) = {(w, h)} is not a multiple of in_stride {s}, so the "
                f"feature map size is ambiguous; use an input size that is a multiple of {s} (e.g. {fit}) in the "
                "codec, or read a feature of a smaller stride"
            )
        return (w // s, h // s)

    def check_upsampling(self, num_up: int, want: tuple[int, int], what: str, knob: str) -> None:
        """feature_size * 2**num_up must equal ``want`` (W, H); else a ValueError saying what to change."""
        fw, fh = self.feature_size()
        got = (fw * 2**num_up, fh * 2**num_up)
        if got == want:
            return
        name = type(self).__name__
        hint = ""
        ratio = Fraction(want[0], fw)
        if ratio == Fraction(want[1], fh) and ratio.denominator == 1 and ratio.numerator & (ratio.numerator - 1) == 0:
            n = ratio.numerator.bit_length() - 1
            hint = f"use {n} deconv layer(s) ({knob} of length {n}), or "
        w, h = self.input_size()
        raise ValueError(
            f"{name}: features at in_stride {self.in_stride} of a {w}x{h} (W x H) input are {fw}x{fh}; {num_up} "
            f"deconv layer(s) make them {got[0]}x{got[1]}, but the codec {type(self.codec).__name__} wants {what} of "
            f"{want[0]}x{want[1]}. To fix it, {hint}set the codec's heatmap_size to {got}, or change the codec's "
            f"input_size / the feature's stride so that input_size / in_stride * 2**{num_up} = heatmap_size"
        )

    # ------------------------------------------------------------------ run-time helpers

    def select(self, feats: Sequence[Tensor], size: tuple[int, int] | None = None) -> Tensor:
        """The feature the head reads, feats[in_index] (B, C, H, W), checked against in_channels (and (W, H) ``size``)."""
        name = type(self).__name__
        if isinstance(feats, Tensor) or not isinstance(feats, Sequence) or not feats:
            raise ValueError(f"{name}.forward takes a tuple of feature maps (the backbone/neck outputs)")
        try:
            x = feats[self.in_index]
        except IndexError:
            raise ValueError(
                f"{name}: in_index {self.in_index} is out of range for {len(feats)} feature maps"
            ) from None
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{name}: feature {self.in_index} has shape {tuple(x.shape)}, but the head was built for "
                f"(B, {self.in_channels}, H, W); build it with the backbone's out_channels[{self.in_index}]"
            )
        if size is not None and (x.shape[-1], x.shape[-2]) != size:
            raise ValueError(
                f"{name}: feature {self.in_index} is {x.shape[-1]}x{x.shape[-2]} (W x H) but the head was built for "
                f"{size[0]}x{size[1]} = input_size {self.input_size()} / in_stride {self.in_stride}; build it with the "
                "feature's true stride and the codec's input size"
            )
        return x

    def check_targets(self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> Tensor:
        """Targets match the outputs (same keys of ``codec_keys``, same shapes); returns the weights (B, K)."""
        name = type(self).__name__
        missing = [k for k in (*self.codec_keys, "keypoint_weights") if k not in targets]
        if missing:
            raise KeyError(f"{name}.loss: targets lack {missing}; pass codec.encode(...) of the head's codec")
        batch = next(iter(outputs.values())).shape[0]
        for key in self.codec_keys:
            want, got = tuple(outputs[key].shape), tuple(targets[key].shape)
            if want != got:
                k_got = targets["keypoint_weights"].shape[-1] if targets["keypoint_weights"].ndim == 2 else "?"
                raise ValueError(
                    f"{name}.loss: target {key!r} is {got} but the head predicts {want}. The head was built for "
                    f"num_keypoints={self.num_keypoints} and codec {self.codec}; the targets have {k_got} keypoints. "
                    f"Build the head with num_keypoints={k_got} (the dataset meta's) and the codec that encodes the "
                    "targets"
                )
        weights = targets["keypoint_weights"]
        if tuple(weights.shape) != (batch, self.num_keypoints):
            raise ValueError(
                f"{name}.loss: keypoint_weights is {tuple(weights.shape)}, expected (B, K) = "
                f"{(batch, self.num_keypoints)}; build the head with num_keypoints={weights.shape[-1]}"
            )
        return weights

    def decode(self, outputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """outputs -> keypoints (B, K, 2) in input pixels, scores (B, K), by the head's codec."""
        return self.codec.decode(outputs)

    def keypoint_axes(self) -> KeypointAxes:
        """The head's keypoint-indexed tensors: state-dict name (relative to the head) -> (dim, values
        per keypoint), keypoint-major (values k * per .. k * per + per - 1 along dim are keypoint k's).

        A warm start from a model with other keypoints carries these by keypoint name
        (:mod:`posecore.models.init`); every other tensor of the head must not depend on K.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not declare keypoint_axes(); add it (see PoseHead.keypoint_axes)"
        )


def make_deconv_layers(
    owner: str, in_channels: int, out_channels: Sequence[int], kernel_sizes: Sequence[int] | None
) -> nn.Sequential:
    """Stride-2 ConvTranspose2d + BatchNorm + ReLU per entry; each exactly doubles H and W.

    Kernels 4, 3 or 2 (padding chosen so the size doubles); None means 4 for every layer (MMPose's default).
    """
    kernel_sizes = (4,) * len(out_channels) if kernel_sizes is None else tuple(kernel_sizes)
    if len(out_channels) != len(kernel_sizes):
        raise ValueError(
            f"{owner}: deconv_out_channels {tuple(out_channels)} and deconv_kernel_sizes {tuple(kernel_sizes)} "
            "need the same length (one kernel per deconv layer)"
        )
    pads = {4: (1, 0), 3: (1, 1), 2: (0, 0)}
    layers: list[nn.Module] = []
    for c, k in zip(out_channels, kernel_sizes, strict=True):
        if k not in pads:
            raise ValueError(f"{owner}: deconv kernel size must be 4, 3 or 2 (each doubles the size); got {k!r}")
        padding, output_padding = pads[k]
        c = _positive_int(owner, "deconv_out_channels entries", c)
        layers += [
            nn.ConvTranspose2d(in_channels, c, k, stride=2, padding=padding, output_padding=output_padding, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
        ]
        in_channels = c
    return nn.Sequential(*layers)


def make_conv_layers(
    owner: str, in_channels: int, out_channels: Sequence[int], kernel_sizes: Sequence[int]
) -> nn.Sequential:
    """Same-size Conv2d + BatchNorm + ReLU per entry (odd kernels)."""
    if len(out_channels) != len(kernel_sizes):
        raise ValueError(
            f"{owner}: conv_out_channels {tuple(out_channels)} and conv_kernel_sizes {tuple(kernel_sizes)} need the "
            "same length"
        )
    layers: list[nn.Module] = []
    for c, k in zip(out_channels, kernel_sizes, strict=True):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
            raise ValueError(f"{owner}: conv kernel sizes must be odd positive ints (they keep the size); got {k!r}")
        c = _positive_int(owner, "conv_out_channels entries", c)
        layers += [nn.Conv2d(in_channels, c, k, padding=(k - 1) // 2), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        in_channels = c
    return nn.Sequential(*layers)


@torch.no_grad()
def init_like_mmpose(module: nn.Module, conv_std: float = 0.001, linear_std: float | None = 0.01) -> None:
    """MMPose's head init: conv/deconv weights N(0, conv_std), linear N(0, linear_std), biases 0, BN (1, 0)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, std=conv_std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, std=linear_std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
