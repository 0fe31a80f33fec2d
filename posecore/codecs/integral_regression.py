"""Integral regression / DSNT (Nibali et al., 2018): normalised heatmaps plus coordinates."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from .base import Codec, register_codec
from .msra_heatmap import MSRAHeatmap
from .regression import Regression

if TYPE_CHECKING:
    from torch import Tensor


@register_codec("integral_regression")
@dataclass(frozen=True)
class IntegralRegression(Codec):
    """Heatmaps and coordinates: keypoints (N, K, 2) float32 in input pixels <-> heatmaps + coords.

    Targets: "heatmaps" (N, K, H, W), MSRA gaussians (see :class:`MSRAHeatmap`) divided by their
    sum when ``normalize`` (each map a probability distribution); "coords" (N, K, 2) in [0, 1]
    (see :class:`Regression`); "keypoint_weights" (N, K): the heatmap weight, then zeroed where
    the regression target is invalid (MMPose 1.x ``IntegralRegressionLabel``).
    Decode reads "coords" (N, K, 2), which the head computes from its heatmaps by soft-argmax, and
    returns keypoints (N, K, 2) in input pixels and scores (N, K) of ones.
    """

    input_size: tuple[int, int]
    """(W, H) of the network input in pixels."""
    heatmap_size: tuple[int, int]
    """(W, H) of the heatmaps."""
    sigma: float = 2.0
    """Gaussian std in heatmap pixels."""
    use_dark: bool = False
    """Unbiased (exact sub-pixel, untruncated) gaussians, as MSRAHeatmap(use_dark=True)."""
    normalize: bool = True
    """Divide each heatmap by its sum."""

    target_keys: ClassVar[tuple[str, ...]] = ("heatmaps", "coords")

    def __post_init__(self) -> None:
        heatmap = self.heatmap_codec  # validates the shared fields
        object.__setattr__(self, "input_size", heatmap.input_size)
        object.__setattr__(self, "heatmap_size", heatmap.heatmap_size)
        object.__setattr__(self, "sigma", heatmap.sigma)

    @cached_property
    def heatmap_codec(self) -> MSRAHeatmap:
        return MSRAHeatmap(self.input_size, self.heatmap_size, self.sigma, use_dark=self.use_dark)

    @cached_property
    def coord_codec(self) -> Regression:
        return Regression(self.input_size)

    def target_shapes(self, num_keypoints: int) -> dict[str, tuple[int, ...]]:
        return {**self.heatmap_codec.target_shapes(num_keypoints), **self.coord_codec.target_shapes(num_keypoints)}

    def encode(self, keypoints: Tensor, visible: Tensor) -> dict[str, Tensor]:
        """keypoints (N, K, 2), visible (N, K) -> {"heatmaps": (N, K, H, W), "coords": (N, K, 2), "keypoint_weights"}."""
        gx, gy, weights = self.heatmap_codec.profiles(keypoints, visible)
        coord = self.coord_codec.encode(keypoints, weights)
        if self.normalize:
            # A separable map's sum is the product of its profiles' sums: normalise the profiles
            # and the full-size maps are written once (an all-zero map stays zero).
            gx = gx / (gx.sum(dim=-1, keepdim=True) + 1e-12)
            gy = gy / (gy.sum(dim=-1, keepdim=True) + 1e-12)
        heatmaps = gy[..., :, None] * gx[..., None, :]
        return {"heatmaps": heatmaps, "coords": coord["coords"], "keypoint_weights": coord["keypoint_weights"]}

    def decode(self, outputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """{"coords": (N, K, 2)} -> keypoints (N, K, 2) in input pixels, scores (N, K) of ones."""
        return self.coord_codec.decode({"coords": outputs["coords"]} if "coords" in outputs else outputs)

    def decode_numpy(self, outputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``decode`` in NumPy: {"coords": (N, K, 2)} -> keypoints (N, K, 2), scores (N, K) of ones, float32."""
        return self.coord_codec.decode_numpy({"coords": outputs["coords"]} if "coords" in outputs else outputs)
