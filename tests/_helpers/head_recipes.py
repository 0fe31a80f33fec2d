"""How to build each registered head small: its codec and options (64x48 input, batch 2, K = 5).

Input (W, H) = (48, 64); the heads read a stride-16 feature of 16 channels (3 x 4), and the
heatmap heads upsample it twice to 12 x 16 (stride 4). Loaded by path from the head and flip
tests (``tests/`` is not a package).

One-stage heads (``multi_level``) read every level of a pyramid instead: a 64 x 64 whole image
at strides 8, 16, 32 (84 anchors), trained on padded per-image people (``people``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

import posecore.models.heads  # noqa: F401  (registers the heads)
from posecore.codecs import build_codec
from posecore.codecs.base import Codec
from posecore.models.builders import HEADS

INPUT_SIZE = (48, 64)  # (W, H)
HEATMAP_SIZE = (12, 16)
IN_CHANNELS = 16
IN_STRIDE = 16
NUM_KEYPOINTS = 5
FLIP_INDICES = [0, 2, 1, 4, 3]  # nose, left/right eye, left/right ear
BATCH = 2


@dataclass(frozen=True)
class Recipe:
    head: str
    codec: str
    codec_options: dict[str, Any]
    head_options: dict[str, Any] = field(default_factory=dict)
    shift_heatmap: bool = False  # the flip-test setting MMPose uses with this codec

    @property
    def id(self) -> str:
        return self.head if self.codec_options.get("heatmap_type") != "combined" else f"{self.head}-udp_combined"

    def build_codec(self) -> Codec:
        return build_codec(self.codec, **self.codec_options)

    def build(self, num_keypoints: int = NUM_KEYPOINTS, **overrides: Any) -> tuple[nn.Module, Codec]:
        codec = self.build_codec()
        options = {**self.head_options, **overrides}
        options.setdefault("in_channels", IN_CHANNELS)
        options.setdefault("in_stride", IN_STRIDE)
        head = HEADS.build(self.head, num_keypoints=num_keypoints, codec=codec, **options)
        return head, codec


_TWO_DECONVS = {"deconv_out_channels": (16, 16), "deconv_kernel_sizes": (4, 4)}

#: One recipe per registered head (the registry-driven tests demand it), then extra variants.
RECIPES: dict[str, Recipe] = {
    "heatmap": Recipe(
        "heatmap", "msra_heatmap", {"input_size": INPUT_SIZE, "heatmap_size": HEATMAP_SIZE}, _TWO_DECONVS, True
    ),
    "rtmcc": Recipe("rtmcc", "simcc", {"input_size": INPUT_SIZE, "sigma": (4.9, 5.66)}, {"hidden_dims": 32, "s": 16}),
    "simcc": Recipe(
        "simcc", "simcc", {"input_size": INPUT_SIZE}, {"deconv_out_channels": (16,), "deconv_kernel_sizes": (4,)}
    ),
    "regression": Recipe("regression", "regression", {"input_size": INPUT_SIZE}),
    "rle": Recipe("rle", "regression", {"input_size": INPUT_SIZE}),
    "integral_regression": Recipe(
        "integral_regression",
        "integral_regression",
        {"input_size": INPUT_SIZE, "heatmap_size": HEATMAP_SIZE},
        _TWO_DECONVS,
    ),
}
#: One recipe per one-stage head: (codec name, codec options, head options).
MULTI_LEVEL_RECIPES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "yoloxpose": ("yoloxpose", {"input_size": (64, 64)}, {"feat_channels": 8, "stacked_convs": 1}),
}
ML_STRIDES = (8, 16, 32)
ML_CHANNELS = (8, 12, 16)
ML_SIZE = 64  # square input, W = H
ML_ANCHORS = sum((ML_SIZE // s) ** 2 for s in ML_STRIDES)


def is_multi_level(name: str) -> bool:
    return bool(getattr(HEADS.get(name), "multi_level", False))


SINGLE_LEVEL = [n for n in HEADS.names() if not is_multi_level(n)]
MULTI_LEVEL = [n for n in HEADS.names() if is_multi_level(n)]


def build_multi_level(name: str, num_keypoints: int = NUM_KEYPOINTS, **overrides: Any) -> tuple[nn.Module, Codec]:
    codec_name, codec_options, head_options = MULTI_LEVEL_RECIPES[name]
    codec = build_codec(codec_name, **codec_options)
    options = {"in_channels": ML_CHANNELS, "in_stride": ML_STRIDES, **head_options, **overrides}
    return HEADS.build(name, num_keypoints=num_keypoints, codec=codec, **options), codec


def pyramid(seed: int = 0, batch: int = BATCH) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(
        torch.randn(batch, c, ML_SIZE // s, ML_SIZE // s, generator=g)
        for c, s in zip(ML_CHANNELS, ML_STRIDES, strict=True)
    )


def people(
    codec: Codec, counts: tuple[int, ...] = (0, 3), num_keypoints: int = NUM_KEYPOINTS, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Batch targets of whole images with ``counts`` people each, padded to the most (at least 1).

    Each person: keypoints scattered around a random centre, all visible; encoded by the codec.
    """
    g = torch.Generator().manual_seed(seed)
    n = max(max(counts), 1)
    shapes = codec.target_shapes(num_keypoints)
    out = {key: torch.zeros(len(counts), n, *shape) for key, shape in shapes.items()}
    out["valid"] = torch.zeros(len(counts), n, dtype=torch.bool)
    for b, count in enumerate(counts):
        if not count:
            continue
        centres = 12 + torch.rand(count, 1, 2, generator=g) * (ML_SIZE - 24)
        kp = (centres + torch.randn(count, num_keypoints, 2, generator=g) * 6).clamp(0, ML_SIZE - 1)
        encoded = codec.encode(kp, torch.ones(count, num_keypoints))
        for key in shapes:
            out[key][b, :count] = encoded[key]
        out["valid"][b, :count] = True
    return out


VARIANTS: list[Recipe] = [
    *RECIPES.values(),
    Recipe(
        "heatmap",
        "udp_heatmap",
        {"input_size": INPUT_SIZE, "heatmap_size": HEATMAP_SIZE, "heatmap_type": "combined", "blur_kernel_size": 3},
        _TWO_DECONVS,
    ),
]


def features(seed: int = 0, batch: int = BATCH) -> tuple[torch.Tensor, ...]:
    """A backbone-like tuple: a stride-8 map (ignored) and the stride-16 map the heads read."""
    g = torch.Generator().manual_seed(seed)
    w, h = INPUT_SIZE
    return (
        torch.randn(batch, 8, h // 8, w // 8, generator=g),
        torch.randn(batch, IN_CHANNELS, h // IN_STRIDE, w // IN_STRIDE, generator=g),
    )


def keypoints(
    seed: int = 0, batch: int = BATCH, num_keypoints: int = NUM_KEYPOINTS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random keypoints (B, K, 2) inside the input, the last one of the first instance invisible."""
    g = torch.Generator().manual_seed(seed)
    w, h = INPUT_SIZE
    kp = torch.rand(batch, num_keypoints, 2, generator=g) * torch.tensor([w - 1.0, h - 1.0])
    visible = torch.ones(batch, num_keypoints)
    visible[0, -1] = 0
    return kp, visible
