"""MSRA gaussian heatmaps (Xiao et al., "Simple Baselines", 2018), optionally with DARK (Zhang et al., 2020)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from posecore._lazy import lazy_import

from ._decode import (
    heatmap_argmax,
    heatmap_argmax_numpy,
    refine_dark,
    refine_dark_numpy,
    refine_quarter,
    refine_quarter_numpy,
)
from ._utils import (
    check_blur_kernel,
    check_encode_inputs,
    check_positive,
    check_size,
    gaussian_1d,
    gaussian_rows,
    get_output,
    get_output_numpy,
    in_reach,
)
from .base import Codec, register_codec

if TYPE_CHECKING:
    import torch
    from torch import Tensor
else:
    torch = lazy_import("torch")


@register_codec("msra_heatmap")
@dataclass(frozen=True)
class MSRAHeatmap(Codec):
    """Gaussian heatmaps: keypoints (N, K, 2) float32 in input pixels <-> heatmaps (N, K, H, W).

    Targets: "heatmaps" (N, K, H, W) float32 with peak 1, "keypoint_weights" (N, K).
    Decode reads "heatmaps" (N, K, H, W) and returns keypoints (N, K, 2) in input pixels and
    scores (N, K) = the heatmap maxima.

    Conventions are MMPose 1.x ``MSRAHeatmap`` (``use_dark`` is its ``unbiased``):

    - keypoints are divided by input_size / heatmap_size (per axis);
    - ``use_dark=False``: the gaussian is centred on the rounded position int(x + 0.5) and cut
      to a (6 sigma + 1)^2 patch; decode = argmax + 0.25 px toward the higher neighbour;
    - ``use_dark=True``: an untruncated gaussian at the exact sub-pixel position; decode =
      argmax + DARK (blur with OpenCV's ``blur_kernel_size`` kernel, log, Newton step);
    - a keypoint gets weight 0 when visible < 0.5 or when its 3-sigma patch misses the map.
    """

    input_size: tuple[int, int]
    """(W, H) of the network input in pixels."""
    heatmap_size: tuple[int, int]
    """(W, H) of the heatmaps."""
    sigma: float = 2.0
    """Gaussian std in heatmap pixels (MMPose: 2 for 48x64 heatmaps, 3 for 72x96)."""
    use_dark: bool = False
    """Unbiased encoding + DARK decoding (MMPose's ``unbiased=True``)."""
    blur_kernel_size: int = 11
    """DARK's blur kernel; pick it so that 0.3 * ((ks - 1) / 2 - 1) + 0.8 == sigma (11 for 2, 17 for 3)."""

    target_keys: ClassVar[tuple[str, ...]] = ("heatmaps",)

    def __post_init__(self) -> None:
        name = type(self).__name__
        object.__setattr__(self, "input_size", check_size(name, "input_size", self.input_size))
        object.__setattr__(self, "heatmap_size", check_size(name, "heatmap_size", self.heatmap_size))
        object.__setattr__(
            self, "sigma", check_positive(name, "sigma", self.sigma, " (gaussian std in heatmap pixels, e.g. 2.0)")
        )
        check_blur_kernel(name, "blur_kernel_size", self.blur_kernel_size)

    def _ratio(self) -> list[float]:
        return [i / h for i, h in zip(self.input_size, self.heatmap_size, strict=True)]

    def _scale(self, like: Tensor) -> Tensor:
        # MMPose keeps input/heatmap as float32.
        return torch.tensor(self._ratio(), dtype=torch.float32).to(device=like.device, dtype=like.dtype)

    def target_shapes(self, num_keypoints: int) -> dict[str, tuple[int, ...]]:
        w, h = self.heatmap_size
        return {"heatmaps": (num_keypoints, h, w)}

    def encode(self, keypoints: Tensor, visible: Tensor) -> dict[str, Tensor]:
        """keypoints (N, K, 2), visible (N, K) -> {"heatmaps": (N, K, H, W), "keypoint_weights": (N, K)}."""
        gx, gy, weights = self.profiles(keypoints, visible)
        heatmaps = gy[..., :, None] * gx[..., None, :]  # one full-size pass
        return {"heatmaps": heatmaps, "keypoint_weights": weights}

    def profiles(self, keypoints: Tensor, visible: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The separable parts of ``encode``: heatmaps = gy[..., :, None] * gx[..., None, :].

        keypoints (N, K, 2), visible (N, K) -> gx (N, K, W), gy (N, K, H) (zero for a dropped
        keypoint), keypoint_weights (N, K).
        """
        kp, vis = check_encode_inputs(type(self).__name__, keypoints, visible)
        w, h = self.heatmap_size
        mu = kp / self._scale(kp)
        radius = 3 * self.sigma
        if self.use_dark:
            keep = (vis >= 0.5) & in_reach(mu, radius, self.heatmap_size)
            gx = gaussian_1d(mu[..., 0], w, self.sigma)
            gy = gaussian_1d(mu[..., 1], h, self.sigma) * keep[..., None]
        else:
            centre = torch.trunc(mu + 0.5)
            keep = (vis >= 0.5) & in_reach(centre, radius, self.heatmap_size)
            gx = gaussian_rows(centre[..., 0], w, self.sigma, radius)
            gy = gaussian_rows(centre[..., 1], h, self.sigma, radius, keep=keep)
        return gx, gy, vis * keep

    def decode(self, outputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """{"heatmaps": (N, K, H, W)} -> keypoints (N, K, 2) in input pixels, scores (N, K)."""
        w, h = self.heatmap_size
        heatmaps = get_output(type(self).__name__, outputs, "heatmaps", (h, w))
        locs, scores = heatmap_argmax(heatmaps)
        if self.use_dark:
            locs = refine_dark(locs, heatmaps, self.blur_kernel_size)
        else:
            locs = refine_quarter(locs, heatmaps)
        return (locs * self._scale(locs)).float(), scores.float()

    def decode_numpy(self, outputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``decode`` in NumPy: {"heatmaps": (N, K, H, W)} -> keypoints (N, K, 2), scores (N, K), float32."""
        w, h = self.heatmap_size
        heatmaps = get_output_numpy(type(self).__name__, outputs, "heatmaps", (h, w))
        locs, scores = heatmap_argmax_numpy(heatmaps)
        if self.use_dark:
            locs = refine_dark_numpy(locs, heatmaps, self.blur_kernel_size)
        else:
            locs = refine_quarter_numpy(locs, heatmaps)
        scale = np.array(self._ratio(), dtype=np.float32).astype(locs.dtype)  # float32, as in decode
        return (locs * scale).astype(np.float32), scores.astype(np.float32)
