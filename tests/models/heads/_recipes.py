"""How to build each registered head small: its codec and options (64x48 input, batch 2, K = 5).

Input (W, H) = (48, 64); the heads read a stride-16 feature of 16 channels (3 x 4), and the
heatmap heads upsample it twice to 12 x 16 (stride 4). Loaded by path from the head and flip
tests (``tests/`` is not a package).
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
