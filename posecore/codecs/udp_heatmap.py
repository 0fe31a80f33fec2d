"""UDP heatmaps (Huang et al., "The Devil is in the Details", 2020): gaussian or combined (class + offset) maps."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np

from posecore._lazy import lazy_import

from ._decode import (
    heatmap_argmax,
    heatmap_argmax_numpy,
    refine_dark_udp,
    refine_dark_udp_numpy,
)
from ._utils import (
    blur_matrix,
    blur_matrix_numpy,
    check_blur_kernel,
    check_encode_inputs,
    check_positive,
    check_size,
    gaussian_1d,
    gaussian_blur,
    gaussian_blur_numpy,
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


@register_codec("udp_heatmap")
@dataclass(frozen=True)
class UDPHeatmap(Codec):
    """UDP heatmaps: keypoints (N, K, 2) float32 in input pixels <-> heatmaps (N, C, H, W).

    Targets: "heatmaps" (N, K, H, W) for ``heatmap_type="gaussian"``, or (N, 3K, H, W) for
    ``"combined"`` in MMPose's layout (channel 3k: binary disc of radius
    ``radius_factor * max(W, H)``; 3k+1 / 3k+2: x / y offsets to the keypoint divided by that
    radius, inside the disc); "keypoint_weights" (N, K).
    Decode reads "heatmaps" of the same shape and returns keypoints (N, K, 2) in input pixels and
    scores (N, K).

    Conventions follow MMPose 1.x ``UDPHeatmap``: input pixel coordinates map to heatmap pixels
    by (heatmap - 1) / (input - 1), so corner pixels of the input and of the heatmap coincide
    (any heatmap size works). The gaussian sits at the exact sub-pixel position inside a
    (6 sigma + 1)^2 patch around the rounded position; decode = argmax + DARK-UDP. The combined
    variant decodes as MMPose does (blur the disc with a 2 ks + 1 kernel and the offsets with
    ks, argmax, add the offset).

    Two deliberate differences from MMPose: decode maps back by (input - 1) / (heatmap - 1),
    the exact inverse of encode, so ``decode(encode(x)) ~ x`` in input pixels and
    ``inverse(warp)`` takes predictions to the image exactly (MMPose's ``decode`` multiplies by
    input / (heatmap - 1), a scale of input / (input - 1) that its ``keypoints / input_size *
    bbox_scale`` step, together with the UDP crop, cancels); and a combined-map keypoint whose
    disc misses the heatmap gets weight 0 (MMPose keeps its visibility).
    """

    input_size: tuple[int, int]
    """(W, H) of the network input in pixels."""
    heatmap_size: tuple[int, int]
    """(W, H) of the heatmaps."""
    heatmap_type: Literal["gaussian", "combined"] = "gaussian"
    """"gaussian": K maps; "combined": 3K maps (disc + x/y offsets per keypoint)."""
    sigma: float = 2.0
    """Gaussian std in heatmap pixels (``heatmap_type="gaussian"``)."""
    radius_factor: float = 0.0546875
    """Disc radius as a fraction of max(W, H) (``heatmap_type="combined"``)."""
    blur_kernel_size: int = 11
    """Blur kernel of the decoding (DARK-UDP; the offset maps of the combined variant)."""

    target_keys: ClassVar[tuple[str, ...]] = ("heatmaps",)
    use_udp: ClassVar[bool] = True
    """UDP targets pair with the UDP crop (``TopdownAffine(use_udp=True)``), as in MMPose's UDP configs."""

    def __post_init__(self) -> None:
        name = type(self).__name__
        object.__setattr__(self, "input_size", check_size(name, "input_size", self.input_size))
        object.__setattr__(self, "heatmap_size", check_size(name, "heatmap_size", self.heatmap_size))
        if self.heatmap_type not in ("gaussian", "combined"):
            raise ValueError(f"{name}.heatmap_type must be 'gaussian' or 'combined'; got {self.heatmap_type!r}")
        object.__setattr__(
            self, "sigma", check_positive(name, "sigma", self.sigma, " (gaussian std in heatmap pixels, e.g. 2.0)")
        )
        object.__setattr__(
            self,
            "radius_factor",
            check_positive(name, "radius_factor", self.radius_factor, " (disc radius / max(W, H), e.g. 0.0546875)"),
        )
        check_blur_kernel(name, "blur_kernel_size", self.blur_kernel_size)
        if min(self.input_size) < 2 or min(self.heatmap_size) < 2:
            raise ValueError(f"{name}: UDP maps pixel corners, so input_size and heatmap_size need >= 2 pixels a side")
        if self.heatmap_type == "combined" and self.blur_kernel_size >= min(self.heatmap_size):
            raise ValueError(
                f"{name}: the combined variant blurs its disc maps with a {2 * self.blur_kernel_size + 1}-tap kernel "
                f"and a reflected border; lower blur_kernel_size below min(heatmap_size) = {min(self.heatmap_size)}"
            )

    def _ratio(self) -> list[float]:
        return [(i - 1) / (h - 1) for i, h in zip(self.input_size, self.heatmap_size, strict=True)]

    def _scale(self, like: Tensor) -> Tensor:
        # MMPose keeps (input - 1) / (heatmap - 1) as float32.
        return torch.tensor(self._ratio(), dtype=torch.float32).to(device=like.device, dtype=like.dtype)

    @property
    def num_channels_per_keypoint(self) -> int:
        return 3 if self.heatmap_type == "combined" else 1

    def target_shapes(self, num_keypoints: int) -> dict[str, tuple[int, ...]]:
        w, h = self.heatmap_size
        return {"heatmaps": (num_keypoints * self.num_channels_per_keypoint, h, w)}

    def encode(self, keypoints: Tensor, visible: Tensor) -> dict[str, Tensor]:
        """keypoints (N, K, 2), visible (N, K) -> {"heatmaps": (N, K or 3K, H, W), "keypoint_weights": (N, K)}."""
        kp, vis = check_encode_inputs(type(self).__name__, keypoints, visible)
        mu = kp / self._scale(kp)
        if self.heatmap_type == "gaussian":
            return self._encode_gaussian(mu, vis)
        return self._encode_combined(mu, vis)

    def _encode_gaussian(self, mu: Tensor, vis: Tensor) -> dict[str, Tensor]:
        w, h = self.heatmap_size
        radius = 3 * self.sigma
        centre = torch.trunc(mu + 0.5)
        gx = gaussian_1d(mu[..., 0], w, self.sigma, window=(centre[..., 0], radius))
        gy = gaussian_1d(mu[..., 1], h, self.sigma, window=(centre[..., 1], radius))
        keep = (vis >= 0.5) & in_reach(centre, radius, self.heatmap_size)
        heatmaps = (gy * keep[..., None])[..., :, None] * gx[..., None, :]  # one full-size pass
        return {"heatmaps": heatmaps, "keypoint_weights": vis * keep}

    def _encode_combined(self, mu: Tensor, vis: Tensor) -> dict[str, Tensor]:
        w, h = self.heatmap_size
        n, k = vis.shape
        radius = self.radius_factor * max(w, h)
        dx = (mu[..., 0, None] - torch.arange(w, device=mu.device, dtype=mu.dtype)) / radius  # (N, K, W)
        dy = (mu[..., 1, None] - torch.arange(h, device=mu.device, dtype=mu.dtype)) / radius  # (N, K, H)
        # An invisible keypoint gets dy^2 = inf: its disc is empty without a masking pass.
        dy2 = dy.square().masked_fill_((vis < 0.5)[..., None], torch.inf)
        # One allocation for the 3K maps, each written once: the disc, then the offsets cut to it.
        maps = mu.new_empty(n, k, 3, h, w)
        disc = torch.add(dx.square()[..., None, :], dy2[..., :, None], out=maps[:, :, 0]).le_(1)
        torch.mul(disc, dx[..., None, :], out=maps[:, :, 1])
        torch.mul(disc, dy[..., :, None], out=maps[:, :, 2])
        keep = disc.amax(dim=(-2, -1)) > 0
        return {"heatmaps": maps.reshape(n, 3 * k, h, w), "keypoint_weights": vis * keep}

    def decode(self, outputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """{"heatmaps": (N, K or 3K, H, W)} -> keypoints (N, K, 2) in input pixels, scores (N, K)."""
        w, h = self.heatmap_size
        heatmaps = get_output(type(self).__name__, outputs, "heatmaps", (h, w))
        if self.heatmap_type == "gaussian":
            locs, scores = heatmap_argmax(heatmaps)
            locs = refine_dark_udp(locs, heatmaps, self.blur_kernel_size)
        else:
            n, c = heatmaps.shape[:2]
            if c % 3:
                raise ValueError(f"{type(self).__name__}.decode: combined heatmaps need 3K channels; got {c}")
            maps = heatmaps.reshape(n, c // 3, 3, h, w)
            disc = gaussian_blur(maps[:, :, 0], 2 * self.blur_kernel_size + 1, border="reflect")
            locs, scores = heatmap_argmax(disc)
            # The blurred offsets are only needed at the argmax: row y of the vertical blur times
            # the maps times row x of the horizontal one. Those rows are zero outside the kernel's
            # reach (reflected taps stay inside it), so a ks x ks window of the maps suffices.
            # A location marked -1 reads pixel 0 (MMPose reads an arbitrary pixel there).
            ks = self.blur_kernel_size
            x, y = locs[..., 0].long().clamp_min(0), locs[..., 1].long().clamp_min(0)
            taps = torch.arange(ks, device=locs.device)
            cols = (x - ks // 2).clamp(0, w - ks)[..., None] + taps  # (N, K, ks)
            rows = (y - ks // 2).clamp(0, h - ks)[..., None] + taps
            bw = blur_matrix(w, ks, "reflect", locs)[x].gather(-1, cols)  # (N, K, ks)
            bh = blur_matrix(h, ks, "reflect", locs)[y].gather(-1, rows)
            flat = (rows[..., :, None] * w + cols[..., None, :]).flatten(-2)  # (N, K, ks * ks)
            window = maps[:, :, 1:].flatten(-2).gather(-1, flat[:, :, None].expand(-1, -1, 2, -1))
            window = window.unflatten(-1, (ks, ks))  # (N, K, 2, ks, ks)
            picked = ((window * bh[:, :, None, :, None]).sum(-2) * bw[:, :, None]).sum(-1)  # (N, K, 2)
            locs = locs + picked * (self.radius_factor * max(w, h))
        return (locs * self._scale(locs)).float(), scores.float()

    def decode_numpy(self, outputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``decode`` in NumPy: {"heatmaps": (N, K or 3K, H, W)} -> keypoints (N, K, 2), scores (N, K), float32."""
        w, h = self.heatmap_size
        heatmaps = get_output_numpy(type(self).__name__, outputs, "heatmaps", (h, w))
        if self.heatmap_type == "gaussian":
            locs, scores = heatmap_argmax_numpy(heatmaps)
            locs = refine_dark_udp_numpy(locs, heatmaps, self.blur_kernel_size)
        else:
            n, c = heatmaps.shape[:2]
            if c % 3:
                raise ValueError(f"{type(self).__name__}: combined heatmaps need 3K channels; got {c}")
            maps = heatmaps.reshape(n, c // 3, 3, h, w)
            disc = gaussian_blur_numpy(maps[:, :, 0], 2 * self.blur_kernel_size + 1, border="reflect")
            locs, scores = heatmap_argmax_numpy(disc)
            # The offsets blurred at the argmax only: full rows of the blur matrices, an einsum.
            x = np.maximum(locs[..., 0].astype(np.int64), 0)
            y = np.maximum(locs[..., 1].astype(np.int64), 0)
            bw = blur_matrix_numpy(w, self.blur_kernel_size, "reflect", locs.dtype)[x]  # (N, K, W)
            bh = blur_matrix_numpy(h, self.blur_kernel_size, "reflect", locs.dtype)[y]  # (N, K, H)
            picked = np.einsum("nkh,nkchw,nkw->nkc", bh, maps[:, :, 1:], bw)
            locs = locs + picked * np.asarray(self.radius_factor * max(w, h), dtype=locs.dtype)
        scale = np.array(self._ratio(), dtype=np.float32).astype(locs.dtype)  # float32, as in decode
        return (locs * scale).astype(np.float32), scores.astype(np.float32)
