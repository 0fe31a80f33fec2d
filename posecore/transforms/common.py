"""Transforms shared by top-down and bottom-up batches: flip, photometric distortion, normalisation, targets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from posecore.codecs.base import Codec

from ._base import register_transform, require, require_rng
from .geometry import flip_bbox_xyxy, flip_keypoints
from .rng import KeyedRNG, uniform_int

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "GenerateTarget",
    "Normalize",
    "PhotometricDistortion",
    "RandomFlip",
    "hsv_to_rgb",
    "rgb_to_hsv",
]

#: ImageNet RGB statistics in [0, 255], as MMPose's PoseDataPreprocessor uses them.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def check_prob(owner: str, name: str, value: float) -> None:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{owner}.{name} is a probability and must lie in [0, 1], got {value!r}")


def check_range(owner: str, name: str, value: Sequence[float]) -> tuple[float, float]:
    if len(value) != 2 or not float(value[0]) <= float(value[1]):
        raise ValueError(f"{owner}.{name} must be (low, high) with low <= high, got {value!r}")
    return float(value[0]), float(value[1])


def check_indices(owner: str, name: str, value: Sequence[int]) -> tuple[int, ...]:
    out = tuple(int(i) for i in value)
    if any(i < 0 for i in out):
        raise ValueError(f"{owner}.{name} must hold keypoint indices >= 0, got {value!r}")
    return out


def _bcast(flag: Tensor, like: Tensor) -> Tensor:
    """(B,) -> (B, 1, ..., 1) broadcastable against ``like``."""
    return flag.reshape(flag.shape[0], *([1] * (like.ndim - 1)))


@register_transform("random_flip", batches=("topdown", "bottomup"))
@dataclass(frozen=True)
class RandomFlip:
    """Mirror samples horizontally with probability ``prob`` (MMPose's RandomFlip, horizontal).

    keypoints (B, [N,] K, 2): x -> W - 1 - x and keypoint k takes ``flip_indices[k]``'s place;
    visible likewise; center (B, 2) and bbox (B, [N,] 4) mirrored when present; ``flip`` (B,)
    toggled. W is the width of ``images``.

    The images themselves stay unflipped: the next warp (``TopdownAffine``,
    ``BottomupRandomAffine``, ``BottomupResize``) folds the mirror into its sampling matrix.
    That equals MMPose's order (mirror the image, then crop around the mirrored centre) and
    saves a pass over the pixels, so RandomFlip must come before the warp.
    """

    flip_indices: tuple[int, ...]
    prob: float = 0.5
    stream: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "flip_indices", check_indices("RandomFlip", "flip_indices", self.flip_indices))
        check_prob("RandomFlip", "prob", self.prob)

    def __call__(self, batch: Any, rng: KeyedRNG | None = None) -> Any:
        require(batch, "RandomFlip", "images", "keypoints", "visible", "flip", "keys")
        if "warp" in batch:
            raise ValueError("RandomFlip must run before TopdownAffine / BottomupRandomAffine / BottomupResize")
        k = batch["keypoints"].shape[-2]
        if len(self.flip_indices) != k:
            raise ValueError(
                f"RandomFlip has {len(self.flip_indices)} flip_indices but the batch has {k} keypoints; "
                "build it from the dataset meta's flip_indices"
            )
        do = require_rng(rng, "RandomFlip").uniform(batch["keys"], self.stream, 1)[:, 0] < self.prob
        width = batch["images"].shape[-1]
        idx = torch.as_tensor(self.flip_indices, dtype=torch.int64, device=batch["keypoints"].device)
        kp, vis = flip_keypoints(batch["keypoints"], batch["visible"], width, idx)
        out = dict(batch)
        out["keypoints"] = torch.where(_bcast(do, kp), kp, batch["keypoints"])
        out["visible"] = torch.where(_bcast(do, vis), vis, batch["visible"])
        if "center" in batch:
            c = batch["center"]
            out["center"] = torch.where(_bcast(do, c), torch.stack([width - 1 - c[:, 0], c[:, 1]], dim=-1), c)
        if "bbox" in batch:
            out["bbox"] = torch.where(_bcast(do, batch["bbox"]), flip_bbox_xyxy(batch["bbox"], width), batch["bbox"])
        out["flip"] = batch["flip"] ^ do
        return out


def rgb_to_hsv(rgb: Tensor) -> Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> HSV in [0, 1] (hue as a fraction of a turn)."""
    r, g, b = rgb.unbind(1)
    maxc, _ = rgb.max(dim=1)
    minc, _ = rgb.min(dim=1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    sat = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    hr = torch.remainder((g - b) / safe, 6.0)
    hg = (b - r) / safe + 2.0
    hb = (r - g) / safe + 4.0
    hue = torch.where(maxc == r, hr, torch.where(maxc == g, hg, hb)) / 6.0
    hue = torch.where(delta > 0, hue, torch.zeros_like(hue))
    return torch.stack([hue, sat, maxc], dim=1)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """(B, 3, H, W) HSV in [0, 1] -> RGB in [0, 1]."""
    h, s, v = hsv.unbind(1)
    h6 = torch.remainder(h, 1.0) * 6.0
    channels = []
    for n in (5.0, 3.0, 1.0):  # r, g, b
        k = torch.remainder(n + h6, 6.0)
        channels.append(v - v * s * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0))
    return torch.stack(channels, dim=1)


_PERMS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


@register_transform("photometric_distortion", batches=("topdown", "bottomup"))
@dataclass(frozen=True)
class PhotometricDistortion:
    """Random brightness, contrast, saturation, hue and channel order per sample (MMPose's PhotometricDistortion).

    images (B, 3, H, W) uint8 or float32 in [0, 255] -> same shape and dtype. Per sample, as in
    MMPose: brightness +U(-delta, delta) with probability 1/2; contrast x U(range) with
    probability 1/2, before or after the colour step (1/2 each); one of {nothing, saturation,
    hue, both} (1/4 each), saturation x U(range) and hue + randint(-hue_delta, hue_delta)
    OpenCV units (2 degrees); a random channel permutation with probability 1/2.

    Differences from MMPose, on purpose: values stay float between steps (MMPose truncates to
    uint8 after each), and the hue wraps around the colour circle (MMPose's uint8 hue wraps
    at 256 rather than 180 for negative shifts). The saturation step is computed in RGB
    (the same result as through HSV, see ``__call__``); only the samples that turn the hue
    go through an HSV round trip.
    """

    brightness_delta: float = 32.0
    contrast_range: tuple[float, float] = (0.5, 1.5)
    saturation_range: tuple[float, float] = (0.5, 1.5)
    hue_delta: int = 18
    stream: int = 4

    def __post_init__(self) -> None:
        name = "PhotometricDistortion"
        object.__setattr__(self, "contrast_range", check_range(name, "contrast_range", self.contrast_range))
        object.__setattr__(self, "saturation_range", check_range(name, "saturation_range", self.saturation_range))
        if self.brightness_delta < 0 or self.hue_delta < 0:
            raise ValueError(f"{name}: brightness_delta and hue_delta must be >= 0")

    def __call__(self, batch: Any, rng: KeyedRNG | None = None) -> Any:
        require(batch, "PhotometricDistortion", "images", "keys")
        images = batch["images"]
        if images.shape[1] != 3:
            raise ValueError(f"PhotometricDistortion needs RGB images (B, 3, H, W), got {tuple(images.shape)}")
        u = require_rng(rng, "PhotometricDistortion").uniform(batch["keys"], self.stream, 10).to(images.device)
        x = images.to(torch.float32)
        view = (-1, 1, 1, 1)

        def lerp(v: Tensor, lo: float, hi: float) -> Tensor:
            return lo + v * (hi - lo)

        contrast_last = u[:, 0] < 0.5
        bright_on = u[:, 1] < 0.5
        contrast_on = u[:, 2] < 0.5
        hsv_mode = uniform_int(u[:, 3], 0, 4)
        swap_on = u[:, 4] < 0.5
        # a step that is off gets its identity parameter, so every step is one pass over all samples
        beta = torch.where(bright_on, lerp(u[:, 5], -self.brightness_delta, self.brightness_delta), 0.0)
        alpha = lerp(u[:, 6], *self.contrast_range)
        alpha_first = torch.where(contrast_on & ~contrast_last, alpha, 1.0).view(view)
        alpha_last = torch.where(contrast_on & contrast_last, alpha, 1.0).view(view)
        sat_alpha = torch.where((hsv_mode == 1) | (hsv_mode == 3), lerp(u[:, 7], *self.saturation_range), 1.0)
        hue_on = (hsv_mode == 2) | (hsv_mode == 3)
        if self.hue_delta > 0:
            hue_units = uniform_int(u[:, 8], -self.hue_delta, self.hue_delta).to(torch.float32)
        else:
            hue_units = torch.zeros_like(u[:, 8])
        perm_table = torch.as_tensor(_PERMS, device=images.device)
        perm = perm_table[torch.where(swap_on, uniform_int(u[:, 9], 0, 6), 0)]

        x = (x + beta.view(view)).clamp_(0, 255)
        x = (x * alpha_first).clamp_(0, 255)
        # Saturation x a at fixed hue and value, without leaving RGB: each channel is
        # V - V * S * f(hue), so scaling S (clipped at 1) scales V - channel by min(a, V / (V - min)).
        vmax = x.amax(1, keepdim=True)
        spread = vmax - x.amin(1, keepdim=True)
        limit = torch.where(spread > 0, vmax / spread.clamp_min(1e-6), torch.full_like(spread, torch.inf))
        x = vmax - torch.minimum(sat_alpha.view(view), limit) * (vmax - x)
        rows = hue_on.nonzero()[:, 0]  # the hue turn needs HSV: convert only the samples that use it
        if rows.numel():
            hsv = rgb_to_hsv(x[rows] / 255.0)
            hsv[:, 0] = torch.remainder(hsv[:, 0] + (hue_units[rows] / 180.0).view(-1, 1, 1), 1.0)
            x = x.index_copy(0, rows, hsv_to_rgb(hsv) * 255.0)
        x = (x * alpha_last).clamp_(0, 255)
        x = x.gather(1, perm[:, :, None, None].expand(-1, -1, *x.shape[2:]))

        out = dict(batch)
        out["images"] = x if images.is_floating_point() else x.round().clamp(0, 255).to(images.dtype)
        return out


@register_transform("normalize", batches=("topdown", "bottomup"))
@dataclass(frozen=True)
class Normalize:
    """images (B, C, H, W) in [0, 255] -> float32 (images - mean) / std per channel (RGB order).

    The default is ImageNet's, as in MMPose's data preprocessor; a backbone's pretrained
    weights decide the right values.
    """

    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if len(self.mean) != len(self.std) or any(s <= 0 for s in self.std):
            raise ValueError(f"Normalize needs one mean and one positive std per channel, got {self.mean}, {self.std}")

    def __call__(self, batch: Any, rng: KeyedRNG | None = None) -> Any:
        require(batch, "Normalize", "images")
        out = dict(batch)
        out["images"] = self.images(batch["images"])
        return out

    def inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        """A training batch with its ``inputs`` normalised: the ``preprocess`` step of
        :func:`posecore.engine.fit` for pipelines built with ``keep_uint8=True``."""
        return {**batch, "inputs": self.images(batch["inputs"])}

    def images(self, images: Tensor) -> Tensor:
        """(B, C, H, W) uint8 or float in [0, 255] -> a new float32 tensor, same memory format."""
        if images.shape[1] != len(self.mean):
            raise ValueError(f"Normalize has {len(self.mean)} channel statistics but images are {tuple(images.shape)}")
        mean = torch.as_tensor(self.mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
        std = torch.as_tensor(self.std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
        # one float copy, then in place: no temporaries for (x - mean) / std on big batches
        return images.to(torch.float32, copy=True).sub_(mean).mul_(1.0 / std)


@register_transform("generate_target")
@dataclass(frozen=True)
class GenerateTarget:
    """targets = codec.encode(keypoints (B, K, 2) in input pixels, visible (B, K)), stored under ``targets``.

    Runs after ``TopdownAffine``, which puts the keypoints in input pixels.

    ``joint_weights`` (K,) optionally multiplies ``targets["keypoint_weights"]`` (MMPose's
    ``use_dataset_keypoint_weights``; pass the meta's ``joint_weights``).
    """

    codec: Codec
    joint_weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.codec, Codec):
            raise TypeError(f"GenerateTarget needs a Codec (posecore.codecs.build_codec(...)), got {self.codec!r}")
        if self.joint_weights is not None:
            object.__setattr__(self, "joint_weights", tuple(float(w) for w in self.joint_weights))

    def __call__(self, batch: Any, rng: KeyedRNG | None = None) -> Any:
        require(batch, "GenerateTarget", "keypoints", "visible")
        targets = dict(self.codec.encode(batch["keypoints"], batch["visible"]))
        if self.joint_weights is not None:
            kw = targets["keypoint_weights"]
            if kw.shape[-1] != len(self.joint_weights):
                raise ValueError(
                    f"GenerateTarget has {len(self.joint_weights)} joint_weights for {kw.shape[-1]} keypoints"
                )
            targets["keypoint_weights"] = kw * torch.as_tensor(self.joint_weights, dtype=kw.dtype, device=kw.device)
        out = dict(batch)
        out["targets"] = targets
        return out
