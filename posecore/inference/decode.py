"""NumPy decoders: model outputs -> keypoints, one per codec, for the bundle runtime (no torch).

Every decoder has the codec's decode signature::

    decode(outputs: dict[str, ndarray])   # keyed like the codec's targets, batched over N
        -> (keypoints (N, K, 2) float32 in input-image pixels, scores (N, K) float32)

and reproduces ``posecore.codecs.<codec>.decode`` (MMPose 1.x conventions: argmax marking
locations <= 0 as -1, quarter-pixel shift, DARK, DARK-UDP, SimCC-DARK, UDP combined maps).
Decoding is computed in float64 whatever the outputs' dtype (it costs nothing next to the
network): the Newton steps of DARK divide by the maps' curvature, and on flat maps float32
rounding alone moves a keypoint by up to ~1e-3 px. ``tests/inference/test_decode.py`` checks
each decoder against its torch codec (fed the same outputs as float64) on random and encoded
outputs.

:func:`build_decoder` takes a bundle's codec config ``{"name": ..., <the codec's fields>}``
(``input_size`` may be given there or as an argument). To add one: write a frozen dataclass
with ``from_config`` and ``__call__`` below, add it to ``_DECODERS`` and to the parametrised
test.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, Protocol

import numpy as np

__all__ = [
    "Decoder",
    "IntegralRegressionDecoder",
    "MSRAHeatmapDecoder",
    "RegressionDecoder",
    "SimCCDecoder",
    "UDPHeatmapDecoder",
    "available_decoders",
    "build_decoder",
]

_F32 = np.float32
_CV2_SMALL_KERNELS: dict[int, tuple[float, ...]] = {
    1: (1.0,),
    3: (0.25, 0.5, 0.25),
    5: (0.0625, 0.25, 0.375, 0.25, 0.0625),
    7: (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125),
}


class Decoder(Protocol):
    """outputs (keyed like the codec's targets) -> keypoints (N, K, 2) input px, scores (N, K)."""

    name: ClassVar[str]
    use_udp: ClassVar[bool]

    def __call__(self, outputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]: ...


# --------------------------------------------------------------------------- shared pieces


def _output(owner: str, outputs: Mapping[str, np.ndarray], key: str, trailing: tuple[int | None, ...]) -> np.ndarray:
    if key not in outputs:
        raise ValueError(f"{owner} needs model output {key!r}; the model gives {sorted(outputs)}")
    t = np.asarray(outputs[key])
    ok = t.ndim == 2 + len(trailing) and all(e is None or s == e for s, e in zip(t.shape[2:], trailing, strict=True))
    if not ok:
        want = ", ".join(["N", "K", *("?" if e is None else str(e) for e in trailing)])
        raise ValueError(f"{owner}: output {key!r} must have shape ({want}); got {t.shape}")
    return t.astype(np.float64, copy=False)


@lru_cache(maxsize=64)
def _kernel(ksize: int) -> tuple[float, ...]:
    """OpenCV's ``getGaussianKernel(ksize, 0)``."""
    if ksize in _CV2_SMALL_KERNELS:
        return _CV2_SMALL_KERNELS[ksize]
    sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
    taps = [math.exp(-((i - (ksize - 1) / 2) ** 2) / (2 * sigma * sigma)) for i in range(ksize)]
    total = sum(taps)
    return tuple(t / total for t in taps)


@lru_cache(maxsize=64)
def _blur_matrix64(n: int, ksize: int, border: str) -> np.ndarray:
    """(n, n) B with (x @ B.T)[i] = sum_t k[t] x[i + t - ksize // 2]; zero or reflect-101 border."""
    out = np.zeros((n, n), dtype=np.float64)
    i = np.arange(n)
    for t, tap in enumerate(_kernel(ksize)):
        j = i + t - ksize // 2
        if border == "reflect":
            j = np.abs(j)
            j = np.where(j > n - 1, 2 * (n - 1) - j, j)
        keep = (j >= 0) & (j < n)
        np.add.at(out, (i[keep], j[keep]), tap)
    out.setflags(write=False)
    return out


def _blur_matrix(n: int, ksize: int, border: str, dtype: np.dtype) -> np.ndarray:
    return _blur_matrix64(n, ksize, border).astype(dtype)


def _gaussian_blur(maps: np.ndarray, ksize: int, border: str = "zero") -> np.ndarray:
    h, w = maps.shape[-2:]
    return _blur_matrix(h, ksize, border, maps.dtype) @ (maps @ _blur_matrix(w, ksize, border, maps.dtype).T)


def _max_ratio(original: np.ndarray, blurred: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    old, new = original.max(axis=axes), blurred.max(axis=axes)
    safe = np.where(new != 0, new, 1).astype(new.dtype)
    return np.where(new != 0, old / safe, 1).astype(new.dtype)


def _heatmap_argmax(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, H, W) -> locations (N, K, 2) as (x, y) and values (N, K); location -1 where value <= 0."""
    w = heatmaps.shape[-1]
    flat = heatmaps.reshape(*heatmaps.shape[:2], -1)
    idx = flat.argmax(axis=-1)
    vals = np.take_along_axis(flat, idx[..., None], -1)[..., 0]
    locs = np.stack((idx % w, idx // w), axis=-1).astype(heatmaps.dtype)
    return np.where((vals > 0)[..., None], locs, -1).astype(heatmaps.dtype), vals


def _sampler(maps: np.ndarray, x: np.ndarray, y: np.ndarray) -> Callable[[int, int], np.ndarray]:
    h, w = maps.shape[-2:]
    flat = maps.reshape(*maps.shape[:2], -1)

    def f(dx: int, dy: int) -> np.ndarray:
        xi = np.clip(x + dx, 0, w - 1)
        yi = np.clip(y + dy, 0, h - 1)
        return np.take_along_axis(flat, (yi * w + xi)[..., None], -1)[..., 0]

    return f


def _log_sampler(
    heatmaps: np.ndarray, locs: np.ndarray, ksize: int, lo: float, hi: float
) -> Callable[[int, int], np.ndarray]:
    blurred = _gaussian_blur(heatmaps, ksize)
    ratio = _max_ratio(heatmaps, blurred, (-2, -1))
    f = _sampler(blurred, locs[..., 0].astype(np.int64), locs[..., 1].astype(np.int64))
    return lambda dx, dy: np.log(np.clip(f(dx, dy) * ratio, lo, hi))


def _refine_quarter(locs: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
    h, w = heatmaps.shape[-2:]
    x, y = locs[..., 0].astype(np.int64), locs[..., 1].astype(np.int64)
    f = _sampler(heatmaps, x, y)
    ok_x = (x > 1) & (x < w - 1) & (y > 0) & (y < h)
    ok_y = (y > 1) & (y < h - 1) & (x > 0) & (x < w)
    dx = np.where(ok_x, f(1, 0) - f(-1, 0), 0)
    dy = np.where(ok_y, f(0, 1) - f(0, -1), 0)
    return locs + (0.25 * np.stack((np.sign(dx), np.sign(dy)), axis=-1)).astype(locs.dtype)


def _refine_dark(locs: np.ndarray, heatmaps: np.ndarray, ksize: int) -> np.ndarray:
    h, w = heatmaps.shape[-2:]
    f = _log_sampler(heatmaps, locs, ksize, 1e-10, math.inf)
    x, y = locs[..., 0], locs[..., 1]
    c = f(0, 0)
    dx = 0.5 * (f(1, 0) - f(-1, 0))
    dy = 0.5 * (f(0, 1) - f(0, -1))
    dxx = 0.25 * (f(2, 0) - 2 * c + f(-2, 0))
    dyy = 0.25 * (f(0, 2) - 2 * c + f(0, -2))
    dxy = 0.25 * (f(1, 1) - f(1, -1) - f(-1, 1) + f(-1, -1))
    det = dxx * dyy - dxy**2
    ok = (x > 1) & (x < w - 2) & (y > 1) & (y < h - 2) & (det != 0)
    det = np.where(ok, det, 1).astype(det.dtype)
    off = np.stack((-(dyy * dx - dxy * dy) / det, -(dxx * dy - dxy * dx) / det), axis=-1)
    return locs + np.where(ok[..., None], off, 0).astype(locs.dtype)


def _refine_dark_udp(locs: np.ndarray, heatmaps: np.ndarray, ksize: int) -> np.ndarray:
    f = _log_sampler(heatmaps, locs, ksize, 1e-3, 50.0)
    i = f(0, 0)
    ix1, ix1_ = f(1, 0), f(-1, 0)
    iy1, iy1_ = f(0, 1), f(0, -1)
    dx = 0.5 * (ix1 - ix1_)
    dy = 0.5 * (iy1 - iy1_)
    eps = np.finfo(np.float32).eps
    dxx = ix1 - 2 * i + ix1_ + eps
    dyy = iy1 - 2 * i + iy1_ + eps
    dxy = 0.5 * (f(1, 1) - ix1 - iy1 + 2 * i - ix1_ - iy1_ + f(-1, -1))
    det = dxx * dyy - dxy**2
    ok = det != 0
    det = np.where(ok, det, 1).astype(det.dtype)
    step = np.stack(((dyy * dx - dxy * dy) / det, (dxx * dy - dxy * dx) / det), axis=-1)
    return locs - np.where(ok[..., None], step, 0).astype(locs.dtype)


def _refine_simcc_dark(locs: np.ndarray, simcc: np.ndarray, ksize: int) -> np.ndarray:
    n = simcc.shape[-1]
    blurred = simcc @ _blur_matrix(n, ksize, "zero", simcc.dtype).T
    ratio = _max_ratio(simcc, blurred, (-1,))
    px = np.trunc(locs + 2.5).astype(np.int64) - 2

    def f(d: int) -> np.ndarray:
        tap = np.take_along_axis(blurred, np.clip(px + d, 0, n - 1)[..., None], -1)[..., 0]
        return np.log(np.clip(tap * ratio, 1e-3, 50.0))

    dx = 0.5 * (f(1) - f(-1))
    dxx = 1e-9 + 0.25 * (f(2) - 2 * f(0) + f(-2))
    return locs - dx / dxx


def _size(name: str, field: str, value: Any) -> tuple[int, int]:
    if not (isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value)):
        raise ValueError(f"codec {name!r}: {field} must be a (W, H) pair of positive ints; got {value!r}")
    return (int(value[0]), int(value[1]))


def _ratio(numer: tuple[int, int], denom: tuple[int, int], minus: int = 0) -> np.ndarray:
    # The torch codecs keep these ratios in float32.
    return np.array([(a - minus) / (b - minus) for a, b in zip(numer, denom, strict=True)], dtype=_F32)


def _result(locs: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return locs.astype(_F32), scores.astype(_F32)


# --------------------------------------------------------------------------- decoders


@dataclass(frozen=True)
class SimCCDecoder:
    """{"simcc_x": (N, K, Wx), "simcc_y": (N, K, Wy)} -> keypoints (argmax [+ SimCC-DARK]) / split_ratio, min peak."""

    name: ClassVar[str] = "simcc"
    use_udp: ClassVar[bool] = False
    input_size: tuple[int, int]
    sigma: tuple[float, float] = (6.0, 6.0)
    split_ratio: float = 2.0
    use_dark: bool = False

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], input_size: tuple[int, int]) -> SimCCDecoder:
        sigma = cfg.get("sigma", 6.0)
        sigma = tuple(sigma) if isinstance(sigma, list | tuple) else (sigma, sigma)
        return cls(
            input_size,
            (float(sigma[0]), float(sigma[1])),
            float(cfg.get("split_ratio", 2.0)),
            bool(cfg.get("use_dark", False)),
        )

    @property
    def label_size(self) -> tuple[int, int]:
        w, h = self.input_size
        return (round(w * self.split_ratio), round(h * self.split_ratio))

    def __call__(self, outputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        wx, wy = self.label_size
        sx = _output("SimCC", outputs, "simcc_x", (wx,))
        sy = _output("SimCC", outputs, "simcc_y", (wy,))
        ix, iy = sx.argmax(-1), sy.argmax(-1)
        vals = np.minimum(
            np.take_along_axis(sx, ix[..., None], -1)[..., 0], np.take_along_axis(sy, iy[..., None], -1)[..., 0]
        )
        locs = np.where((vals > 0)[..., None], np.stack((ix, iy), axis=-1).astype(sx.dtype), -1).astype(sx.dtype)
        if self.use_dark:
            locs = np.stack(
                (
                    _refine_simcc_dark(locs[..., 0], sx, _simcc_blur_kernel(self.sigma[0])),
                    _refine_simcc_dark(locs[..., 1], sy, _simcc_blur_kernel(self.sigma[1])),
                ),
                axis=-1,
            )
        return _result(locs / np.asarray(self.split_ratio, dtype=locs.dtype), vals)


def _simcc_blur_kernel(sigma: float) -> int:
    ks = int((sigma * 20 - 7) // 3)
    return ks - int(ks % 2 == 0)


@dataclass(frozen=True)
class MSRAHeatmapDecoder:
    """{"heatmaps": (N, K, H, W)} -> argmax + quarter-pixel shift (or DARK), times input / heatmap; peak values."""

    name: ClassVar[str] = "msra_heatmap"
    use_udp: ClassVar[bool] = False
    input_size: tuple[int, int]
    heatmap_size: tuple[int, int]
    use_dark: bool = False
    blur_kernel_size: int = 11

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], input_size: tuple[int, int]) -> MSRAHeatmapDecoder:
        return cls(
            input_size,
            _size(cls.name, "heatmap_size", cfg.get("heatmap_size")),
            bool(cfg.get("use_dark", False)),
            int(cfg.get("blur_kernel_size", 11)),
        )

    def __call__(self, outputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        w, h = self.heatmap_size
        heatmaps = _output("MSRAHeatmap", outputs, "heatmaps", (h, w))
        locs, scores = _heatmap_argmax(heatmaps)
        if self.use_dark:
            locs = _refine_dark(locs, heatmaps, self.blur_kernel_size)
        else:
            locs = _refine_quarter(locs, heatmaps)
        return _result(locs * _ratio(self.input_size, self.heatmap_size).astype(locs.dtype), scores)


@dataclass(frozen=True)
class UDPHeatmapDecoder:
    """{"heatmaps": (N, K or 3K, H, W)} -> argmax + DARK-UDP (gaussian) or disc + offsets (combined), UDP scale."""

    name: ClassVar[str] = "udp_heatmap"
    use_udp: ClassVar[bool] = True
    input_size: tuple[int, int]
    heatmap_size: tuple[int, int]
    heatmap_type: str = "gaussian"
    radius_factor: float = 0.0546875
    blur_kernel_size: int = 11

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], input_size: tuple[int, int]) -> UDPHeatmapDecoder:
        kind = cfg.get("heatmap_type", "gaussian")
        if kind not in ("gaussian", "combined"):
            raise ValueError(f"codec 'udp_heatmap': heatmap_type must be 'gaussian' or 'combined'; got {kind!r}")
        return cls(
            input_size,
            _size(cls.name, "heatmap_size", cfg.get("heatmap_size")),
            kind,
            float(cfg.get("radius_factor", 0.0546875)),
            int(cfg.get("blur_kernel_size", 11)),
        )

    def __call__(self, outputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        w, h = self.heatmap_size
        heatmaps = _output("UDPHeatmap", outputs, "heatmaps", (h, w))
        if self.heatmap_type == "gaussian":
            locs, scores = _heatmap_argmax(heatmaps)
            locs = _refine_dark_udp(locs, heatmaps, self.blur_kernel_size)
        else:
            n, c = heatmaps.shape[:2]
            if c % 3:
                raise ValueError(f"UDPHeatmap: combined heatmaps need 3K channels; got {c}")
            maps = heatmaps.reshape(n, c // 3, 3, h, w)
            disc = _gaussian_blur(maps[:, :, 0], 2 * self.blur_kernel_size + 1, border="reflect")
            locs, scores = _heatmap_argmax(disc)
            x = np.maximum(locs[..., 0].astype(np.int64), 0)
            y = np.maximum(locs[..., 1].astype(np.int64), 0)
            bw = _blur_matrix(w, self.blur_kernel_size, "reflect", locs.dtype)[x]  # (N, K, W)
            bh = _blur_matrix(h, self.blur_kernel_size, "reflect", locs.dtype)[y]  # (N, K, H)
            picked = np.einsum("nkh,nkchw,nkw->nkc", bh, maps[:, :, 1:], bw)
            locs = locs + picked * np.asarray(self.radius_factor * max(w, h), dtype=locs.dtype)
        return _result(locs * _ratio(self.input_size, self.heatmap_size, minus=1).astype(locs.dtype), scores)


@dataclass(frozen=True)
class RegressionDecoder:
    """{"coords": (N, K, 2)[, "sigmas": (N, K, 2)]} -> coords * (W, H); scores 1, or mean(1 - sigmas) (RLE)."""

    name: ClassVar[str] = "regression"
    use_udp: ClassVar[bool] = False
    input_size: tuple[int, int]

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], input_size: tuple[int, int]) -> RegressionDecoder:
        return cls(input_size)

    def __call__(self, outputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        coords = _output("Regression", outputs, "coords", (2,))
        if "sigmas" in outputs:
            scores = (1 - _output("Regression", outputs, "sigmas", (2,))).mean(axis=-1)
        else:
            scores = np.ones(coords.shape[:2], dtype=coords.dtype)
        return _result(coords * np.asarray(self.input_size, dtype=coords.dtype), scores)


@dataclass(frozen=True)
class IntegralRegressionDecoder(RegressionDecoder):
    """{"coords": (N, K, 2), ...} -> as :class:`RegressionDecoder` (the head soft-argmaxes its heatmaps to coords)."""

    name: ClassVar[str] = "integral_regression"

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], input_size: tuple[int, int]) -> IntegralRegressionDecoder:
        return cls(input_size)

    def __call__(self, outputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return super().__call__({"coords": outputs["coords"]} if "coords" in outputs else outputs)


_DECODERS: dict[str, Any] = {
    d.name: d
    for d in (SimCCDecoder, MSRAHeatmapDecoder, UDPHeatmapDecoder, RegressionDecoder, IntegralRegressionDecoder)
}


def available_decoders() -> tuple[str, ...]:
    return tuple(sorted(_DECODERS))


def build_decoder(config: Mapping[str, Any], input_size: tuple[int, int] | None = None) -> Decoder:
    """A bundle's codec config ``{"name": ..., fields}`` -> its numpy decoder.

    ``input_size`` (W, H) defaults to ``config["input_size"]``. Raises ValueError for an unknown
    codec name (listing the known ones) or a config without the sizes the decoder needs.
    """
    if not isinstance(config, Mapping) or not isinstance(config.get("name"), str):
        raise ValueError(f"codec config must be a mapping with a 'name'; got {config!r}")
    name = config["name"]
    cls = _DECODERS.get(name)
    if cls is None:
        raise ValueError(f"no numpy decoder for codec {name!r}; available: {', '.join(available_decoders())}")
    size = input_size if input_size is not None else config.get("input_size")
    return cls.from_config(config, _size(name, "input_size", list(size) if size is not None else None))
