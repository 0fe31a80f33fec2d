"""SimCC coordinate classification (Li et al., 2022), the codec behind RTMPose."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np

from posecore._lazy import lazy_import

from ._decode import (
    refine_simcc_dark,
    refine_simcc_dark_numpy,
    simcc_argmax,
    simcc_argmax_numpy,
    simcc_blur_kernel,
)
from ._utils import (
    check_encode_inputs,
    check_positive,
    check_size,
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


@register_codec("simcc")
@dataclass(frozen=True)
class SimCC(Codec):
    """SimCC labels: keypoints (N, K, 2) float32 in input pixels <-> 1-D x / y distributions.

    Targets: "simcc_x" (N, K, Wx) and "simcc_y" (N, K, Wy) with Wx = round(W * split_ratio),
    Wy = round(H * split_ratio); "keypoint_weights" (N, K).
    Decode reads "simcc_x" / "simcc_y" (the head's logits or scores) and returns keypoints
    (N, K, 2) in input pixels and scores (N, K) = min(max_x, max_y).

    Conventions follow MMPose 1.x ``SimCCLabel`` (``split_ratio`` is its ``simcc_split_ratio``):
    keypoints are scaled by split_ratio and rounded to the nearest bin (half to even, like
    ``np.around``). ``smoothing_type="gaussian"``: a full-length gaussian per axis with std
    ``sigma`` (sx, sy) in bins, divided by sigma * sqrt(2 pi) when ``normalize``; weight 0 when
    visible < 0.5 or the 3-sigma window misses the axis. ``"standard"``: one-hot of 1 -
    label_smooth_weight with label_smooth_weight / (L - 1) elsewhere; weight 0 when visible < 0.5
    or the bin is outside the axis. Decode: argmax per axis (location -1 where the score is
    <= 0), optional SimCC-DARK refinement (``use_dark``), divided by split_ratio.
    """

    input_size: tuple[int, int]
    """(W, H) of the network input in pixels."""
    smoothing_type: Literal["gaussian", "standard"] = "gaussian"
    """"gaussian" labels, or "standard" one-hot labels with optional label smoothing."""
    sigma: float | tuple[float, float] = 6.0
    """Gaussian std in bins, one value or (sigma_x, sigma_y) (RTMPose 192x256: (4.9, 5.66))."""
    split_ratio: float = 2.0
    """Bins per input pixel."""
    label_smooth_weight: float = 0.0
    """Probability mass spread over the other bins (``smoothing_type="standard"`` only), in [0, 1]."""
    normalize: bool = True
    """Divide gaussian labels by sigma * sqrt(2 pi) (unit area)."""
    use_dark: bool = False
    """Refine the argmax with SimCC-DARK (blur kernel derived from sigma)."""
    decode_beta: float = 150.0
    """Temperature multiplier of :meth:`decode_visibility`."""

    target_keys: ClassVar[tuple[str, ...]] = ("simcc_x", "simcc_y")

    def __post_init__(self) -> None:
        name = type(self).__name__
        object.__setattr__(self, "input_size", check_size(name, "input_size", self.input_size))
        if self.smoothing_type not in ("gaussian", "standard"):
            raise ValueError(f"{name}.smoothing_type must be 'gaussian' or 'standard'; got {self.smoothing_type!r}")
        sigma = self.sigma if isinstance(self.sigma, tuple | list) else (self.sigma, self.sigma)
        if len(sigma) != 2:
            raise ValueError(f"{name}.sigma must be one number or a (sigma_x, sigma_y) pair; got {self.sigma!r}")
        hint = " (gaussian std in SimCC bins, e.g. 6.0 or (4.9, 5.66))"
        object.__setattr__(self, "sigma", tuple(check_positive(name, "sigma", s, hint) for s in sigma))
        object.__setattr__(
            self, "split_ratio", check_positive(name, "split_ratio", self.split_ratio, " (bins per pixel, e.g. 2.0)")
        )
        if not 0.0 <= self.label_smooth_weight <= 1.0:
            raise ValueError(f"{name}.label_smooth_weight must be in [0, 1]; got {self.label_smooth_weight!r}")
        if self.smoothing_type == "gaussian" and self.label_smooth_weight > 0:
            raise ValueError(
                f"{name}.label_smooth_weight only applies to smoothing_type='standard'; "
                "gaussian labels are smoothed by sigma already (set label_smooth_weight=0)"
            )
        check_positive(name, "decode_beta", self.decode_beta)
        if min(self.label_size) < 2:
            raise ValueError(
                f"{name}: input_size * split_ratio must give at least 2 bins a side; got {self.label_size}"
            )

    @property
    def label_size(self) -> tuple[int, int]:
        """(Wx, Wy): bins along x and y."""
        w, h = self.input_size
        return (round(w * self.split_ratio), round(h * self.split_ratio))

    def target_shapes(self, num_keypoints: int) -> dict[str, tuple[int, ...]]:
        wx, wy = self.label_size
        return {"simcc_x": (num_keypoints, wx), "simcc_y": (num_keypoints, wy)}

    def encode(self, keypoints: Tensor, visible: Tensor) -> dict[str, Tensor]:
        """keypoints (N, K, 2), visible (N, K) -> {"simcc_x": (N, K, Wx), "simcc_y": (N, K, Wy), "keypoint_weights"}."""
        kp, vis = check_encode_inputs(type(self).__name__, keypoints, visible)
        wx, wy = self.label_size
        mu = torch.round(kp * self.split_ratio)
        if self.smoothing_type == "gaussian":
            sx, sy = self.sigma
            keep = (vis >= 0.5) & in_reach(mu, (3 * sx, 3 * sy), self.label_size)
            # Whole-bin centres: the labels are rows of a table, normalisation and keep folded in.
            nx, ny = (s * math.sqrt(2 * math.pi) for s in self.sigma) if self.normalize else (1.0, 1.0)
            x = gaussian_rows(mu[..., 0], wx, sx, keep=keep, divisor=nx)
            y = gaussian_rows(mu[..., 1], wy, sy, keep=keep, divisor=ny)
        else:
            limit = torch.tensor(self.label_size, device=mu.device, dtype=mu.dtype)
            keep = (vis >= 0.5) & ((mu >= 0) & (mu < limit)).all(dim=-1)
            x = self._one_hot(mu[..., 0], wx).mul_(keep[..., None])
            y = self._one_hot(mu[..., 1], wy).mul_(keep[..., None])
        return {"simcc_x": x, "simcc_y": y, "keypoint_weights": vis * keep}

    def _one_hot(self, mu: Tensor, size: int) -> Tensor:
        grid = torch.arange(size, device=mu.device, dtype=mu.dtype)
        eps = self.label_smooth_weight
        return torch.where(grid == mu[..., None], 1.0 - eps, eps / (size - 1)).to(mu.dtype)

    def decode(self, outputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """{"simcc_x": (N, K, Wx), "simcc_y": (N, K, Wy)} -> keypoints (N, K, 2) in input pixels, scores (N, K)."""
        simcc_x, simcc_y = self._outputs(outputs)
        locs, scores = simcc_argmax(simcc_x, simcc_y)
        if self.use_dark:
            sx, sy = self.sigma
            x = refine_simcc_dark(locs[..., 0], simcc_x, simcc_blur_kernel(sx))
            y = refine_simcc_dark(locs[..., 1], simcc_y, simcc_blur_kernel(sy))
            locs = torch.stack((x, y), dim=-1)
        return (locs / self.split_ratio).float(), scores.float()

    def decode_numpy(self, outputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``decode`` in NumPy: {"simcc_x", "simcc_y"} -> keypoints (N, K, 2), scores (N, K), float32."""
        wx, wy = self.label_size
        name = type(self).__name__
        simcc_x = get_output_numpy(name, outputs, "simcc_x", (wx,))
        simcc_y = get_output_numpy(name, outputs, "simcc_y", (wy,))
        locs, scores = simcc_argmax_numpy(simcc_x, simcc_y)
        if self.use_dark:
            sx, sy = self.sigma
            x = refine_simcc_dark_numpy(locs[..., 0], simcc_x, simcc_blur_kernel(sx))
            y = refine_simcc_dark_numpy(locs[..., 1], simcc_y, simcc_blur_kernel(sy))
            locs = np.stack((x, y), axis=-1)
        return (locs / np.asarray(self.split_ratio, dtype=locs.dtype)).astype(np.float32), scores.astype(np.float32)

    def decode_visibility(self, outputs: Mapping[str, Tensor]) -> Tensor:
        """{"simcc_x", "simcc_y"} -> visibility (N, K) in [0, 1], as MMPose's ``decode_visibility``.

        The smaller of the two peaks of softmax(logits * decode_beta * sigma) along x and y.
        """
        simcc_x, simcc_y = self._outputs(outputs)
        sx, sy = self.sigma
        px = torch.softmax(simcc_x * (self.decode_beta * sx), dim=-1).amax(dim=-1)
        py = torch.softmax(simcc_y * (self.decode_beta * sy), dim=-1).amax(dim=-1)
        return torch.minimum(px, py).float()

    def _outputs(self, outputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        wx, wy = self.label_size
        name = type(self).__name__
        return get_output(name, outputs, "simcc_x", (wx,)), get_output(name, outputs, "simcc_y", (wy,))
