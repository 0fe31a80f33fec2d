"""Shared, vectorised pieces of the codecs: input checks, gaussians and blurs (decode steps: ``_decode.py``).

Everything works on batched tensors (N, K, ...) on any device. Formulas and conventions follow
MMPose 1.x (``mmpose/codecs/utils``): the blur kernels are OpenCV's ``getGaussianKernel(ks, 0)``,
and the gaussians are floored as MMPose's are.

Each piece a decode uses has its NumPy twin (``*_numpy``) right below it, for the codecs'
``decode_numpy`` in the torch-free bundle runtime; the twins are written for float64 inputs
and ``tests/codecs/test_decode_numpy.py`` checks each codec's two decodes against each other.
Torch is imported lazily, so the NumPy half runs without it. The twins stay side by side: a
change to one shows the other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from posecore._lazy import lazy_import

if TYPE_CHECKING:
    import torch
    import torch.nn.functional as F
    from torch import Tensor
else:
    torch = lazy_import("torch")
    F = lazy_import("torch.nn.functional")

# OpenCV uses these fixed kernels for ksize <= 7 when sigma <= 0 (imgproc/src/smooth.dispatch.cpp).
_CV2_SMALL_KERNELS: dict[int, tuple[float, ...]] = {
    1: (1.0,),
    3: (0.25, 0.5, 0.25),
    5: (0.0625, 0.25, 0.375, 0.25, 0.0625),
    7: (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125),
}


# --------------------------------------------------------------------------- config checks


def check_size(owner: str, name: str, value: object) -> tuple[int, int]:
    """A (W, H) pair of positive ints; lists are accepted and turned into tuples."""
    if (
        not isinstance(value, tuple | list)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise ValueError(f"{owner}.{name} must be a (W, H) pair of positive ints, e.g. (192, 256); got {value!r}")
    return (int(value[0]), int(value[1]))


def check_positive(owner: str, name: str, value: object, hint: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{owner}.{name} must be a positive number{hint}; got {value!r}")
    return float(value)


def check_blur_kernel(owner: str, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value % 2 == 0:
        raise ValueError(
            f"{owner}.{name} must be an odd positive int (11 matches sigma 2, 17 matches sigma 3: "
            f"sigma = 0.3 * ((ks - 1) / 2 - 1) + 0.8); got {value!r}"
        )
    return value


# --------------------------------------------------------------------------- tensor checks


def compute_dtype(t: Tensor) -> torch.dtype:
    """float64 stays float64; everything else (float16, bfloat16, ints) is computed in float32."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def check_encode_inputs(owner: str, keypoints: Tensor, visible: Tensor) -> tuple[Tensor, Tensor]:
    """keypoints (N, K, 2), visible (N, K) -> both float32 on the keypoints' device.

    A keypoint with a non-finite coordinate (NaN is a common "missing" marker) becomes an
    invisible keypoint at (0, 0), so that it cannot leak NaN into the targets.
    """
    if not isinstance(keypoints, torch.Tensor) or keypoints.ndim != 3 or keypoints.shape[-1] != 2:
        shape = tuple(keypoints.shape) if isinstance(keypoints, torch.Tensor) else type(keypoints).__name__
        raise ValueError(f"{owner}.encode: keypoints must be a tensor (N, K, 2) in input pixels; got {shape}")
    if not isinstance(visible, torch.Tensor) or tuple(visible.shape) != tuple(keypoints.shape[:2]):
        shape = tuple(visible.shape) if isinstance(visible, torch.Tensor) else type(visible).__name__
        raise ValueError(
            f"{owner}.encode: visible must be a tensor (N, K) = {tuple(keypoints.shape[:2])} matching keypoints; "
            f"got {shape}"
        )
    kp = keypoints.to(torch.float32)
    finite = torch.isfinite(kp).all(dim=-1)
    vis = visible.to(device=kp.device, dtype=torch.float32) * finite
    return torch.where(finite[..., None], kp, 0.0), vis


def get_output(owner: str, outputs: Mapping[str, Tensor], key: str, trailing: tuple[int | None, ...]) -> Tensor:
    """outputs[key] checked to be (N, K, *trailing) (None = any size), in its compute dtype."""
    if key not in outputs:
        raise KeyError(f"{owner}.decode needs output {key!r}; got keys {sorted(outputs)}")
    t = outputs[key]
    ok = t.ndim == 2 + len(trailing) and all(e is None or s == e for s, e in zip(t.shape[2:], trailing, strict=True))
    if not ok:
        want = ", ".join(["N", "K", *("?" if e is None else str(e) for e in trailing)])
        raise ValueError(f"{owner}.decode: {key!r} must have shape ({want}); got {tuple(t.shape)}")
    return t.to(compute_dtype(t))


def get_output_numpy(
    owner: str, outputs: Mapping[str, np.ndarray], key: str, trailing: tuple[int | None, ...]
) -> np.ndarray:
    """outputs[key] checked to be (N, K, *trailing) (None = any size), as float64 (see ``Codec.decode_numpy``).

    A missing output is a ValueError here: in the runtime it means the bundle's model does not fit its codec.
    """
    if key not in outputs:
        raise ValueError(f"{owner} needs model output {key!r}; the model gives {sorted(outputs)}")
    t = np.asarray(outputs[key])
    ok = t.ndim == 2 + len(trailing) and all(e is None or s == e for s, e in zip(t.shape[2:], trailing, strict=True))
    if not ok:
        want = ", ".join(["N", "K", *("?" if e is None else str(e) for e in trailing)])
        raise ValueError(f"{owner}: output {key!r} must have shape ({want}); got {t.shape}")
    return t.astype(np.float64, copy=False)


# --------------------------------------------------------------------------- gaussians


# float32 exp() below about -87 gives a denormal or 0 through a slow path (~10x on x86), and so
# does the product of two tiny profile values. The exponent is floored at -40 and taps up to
# twice exp(-40) ~ 8.5e-18 are set to exactly 0, which keeps every product of two taps a normal
# number or 0 (MMPose keeps them; the difference is < 1e-17).
_EXP_FLOOR = -40.0
_ZERO_UP_TO = 2.0 * math.exp(_EXP_FLOOR)


def gaussian_1d(mu: Tensor, size: int, sigma: float, window: tuple[Tensor, float] | None = None) -> Tensor:
    """exp(-(i - mu)^2 / (2 sigma^2)) for i in [0, size): (N, K) -> (N, K, size).

    ``window=(centre, radius)`` zeroes the taps with |i - centre| > radius (MMPose's 3-sigma patch).
    Heatmaps are the outer product of a y and an x profile, which equals MMPose's 2-D formula.
    """
    grid = torch.arange(size, device=mu.device, dtype=mu.dtype)
    arg = (grid - mu[..., None]).square_().mul_(-0.5 / sigma**2)
    taps = F.threshold_(arg.clamp_min_(_EXP_FLOOR).exp_(), _ZERO_UP_TO, 0.0)  # no mask tensor
    if window is not None:
        centre, radius = window
        taps.masked_fill_((grid - centre[..., None]).abs_() > radius, 0.0)
    return taps


def gaussian_rows(
    centre: Tensor,
    size: int,
    sigma: float,
    radius: float | None = None,
    keep: Tensor | None = None,
    divisor: float = 1.0,
) -> Tensor:
    """``gaussian_1d`` at whole-number centres, read from a table: (N, K) -> (N, K, size).

    Equals ``gaussian_1d(centre, size, sigma, window=(centre, radius)) * (keep / divisor)``, bit
    for bit, for finite or infinite ``centre`` holding whole numbers (MMPose rounds the centre in
    its MSRA and SimCC encodes). Computing the exponentials was most of those encodes; a row copy
    costs a fraction of it. ``radius=None`` means no window; ``keep`` (N, K) bool, None = all.
    """
    table, reach = _gaussian_table(size, float(sigma), radius, float(divisor), centre.dtype, centre.device)
    span = size - 1 + reach
    # Beyond ``reach`` bins off the grid every tap is 0, so clamping the centre changes no tap,
    # and the centre ``span`` (table row 0) is an all-zero row for the dropped keypoints.
    c = centre.clamp(-reach, span)
    if keep is not None:
        c = torch.where(keep, c, span)
    return table.index_select(0, (span - c).long().flatten()).view(*centre.shape, size)


@lru_cache(maxsize=64)
def _gaussian_table(
    size: int, sigma: float, radius: float | None, divisor: float, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, int]:
    """(size + 2 reach, size) rows of ``gaussian_1d`` for the centres size - 1 + reach - r, and reach.

    The rows are overlapping windows (``unfold``) of one 1-D profile made by ``gaussian_1d``
    itself, so that a row equals what ``gaussian_1d`` computes for its centre. Read-only: cached.
    """
    reach = math.ceil(math.sqrt(2.0 * (1.0 - _EXP_FLOOR)) * sigma) + 1  # exponent < floor: tap 0
    if radius is not None:
        reach = min(reach, math.floor(radius) + 1)
    span = size - 1 + reach
    mid = torch.full((1,), float(span), device=device, dtype=dtype)
    profile = gaussian_1d(mid, 2 * span + 1, sigma, None if radius is None else (mid, radius))[0]
    if divisor != 1.0:
        # The same float factor as ``keep / divisor`` (a bool tensor over a number) in the codecs.
        profile.mul_(torch.ones((), device=device, dtype=torch.bool) / divisor)
    return profile.unfold(0, size, 1), reach


def in_reach(centre: Tensor, radius: float | tuple[float, float], size: tuple[int, int]) -> Tensor:
    """(N, K, 2) -> (N, K) bool: MMPose's "the 3-sigma patch has an in-bounds part" test.

    MMPose drops a keypoint when left >= W or top >= H or right < 0 or bottom < 0, where
    left/top = centre - radius and right/bottom = centre + radius + 1.
    """
    limit = torch.tensor(size, device=centre.device, dtype=centre.dtype)
    r = torch.tensor(radius, device=centre.device, dtype=centre.dtype)
    return ((centre - r < limit) & (centre + r + 1 >= 0)).all(dim=-1)


@lru_cache(maxsize=64)
def _cv2_kernel_values(ksize: int) -> tuple[float, ...]:
    """OpenCV's ``getGaussianKernel(ksize, 0)``, the kernel of ``cv2.GaussianBlur(x, (ks, ks), 0)``."""
    if ksize in _CV2_SMALL_KERNELS:
        return _CV2_SMALL_KERNELS[ksize]
    sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
    taps = [math.exp(-((i - (ksize - 1) / 2) ** 2) / (2 * sigma * sigma)) for i in range(ksize)]
    total = sum(taps)
    return tuple(t / total for t in taps)


@lru_cache(maxsize=64)
def _blur_matrix64(n: int, ksize: int, border: str) -> np.ndarray:
    """(n, n) float64 matrix B with (x @ B.T)[i] = sum_t k[t] x[i + t - ksize // 2], borders per ``border``.

    A banded matrix turns the blur into one GEMM, far faster than a 1-channel conv on the CPU.
    Read-only: it is cached and shared.
    """
    out = np.zeros((n, n), dtype=np.float64)
    i = np.arange(n)
    for t, tap in enumerate(_cv2_kernel_values(ksize)):
        j = i + t - ksize // 2
        if border == "reflect":  # BORDER_REFLECT_101: -1 -> 1, n -> n - 2
            j = np.abs(j)
            j = np.where(j > n - 1, 2 * (n - 1) - j, j)
        keep = (j >= 0) & (j < n)
        np.add.at(out, (i[keep], j[keep]), tap)
    out.setflags(write=False)
    return out


@lru_cache(maxsize=64)
def _blur_matrix(n: int, ksize: int, border: str) -> Tensor:
    return torch.tensor(_blur_matrix64(n, ksize, border))  # a copy: torch wants writable memory


def blur_matrix(n: int, ksize: int, border: str, like: Tensor) -> Tensor:
    """The (n, n) blur matrix of :func:`gaussian_blur` on ``like``'s device and dtype."""
    return _blur_matrix(n, ksize, border).to(device=like.device, dtype=like.dtype)


def blur_matrix_numpy(n: int, ksize: int, border: str, dtype: np.dtype) -> np.ndarray:
    return _blur_matrix64(n, ksize, border).astype(dtype)


def gaussian_blur(maps: Tensor, ksize: int, border: str = "zero") -> Tensor:
    """Blur (..., H, W) maps with OpenCV's ks x ks gaussian kernel.

    border="zero" is the blur inside MMPose's ``gaussian_blur`` (zero padding; the rescaling to
    the original maximum is left to the caller, see :func:`max_ratio`); border="reflect" is a
    plain ``cv2.GaussianBlur`` (BORDER_REFLECT_101), used by UDP's combined decoding.
    """
    h, w = maps.shape[-2:]
    return blur_matrix(h, ksize, border, maps) @ (maps @ blur_matrix(w, ksize, border, maps).T)


def gaussian_blur_numpy(maps: np.ndarray, ksize: int, border: str = "zero") -> np.ndarray:
    h, w = maps.shape[-2:]
    return blur_matrix_numpy(h, ksize, border, maps.dtype) @ (maps @ blur_matrix_numpy(w, ksize, border, maps.dtype).T)


def gaussian_blur1d(seq: Tensor, ksize: int) -> Tensor:
    """The blur inside MMPose's ``gaussian_blur1d`` on (..., L): zero-padded 1-D OpenCV kernel."""
    return seq @ blur_matrix(seq.shape[-1], ksize, "zero", seq).T


def gaussian_blur1d_numpy(seq: np.ndarray, ksize: int) -> np.ndarray:
    return seq @ blur_matrix_numpy(seq.shape[-1], ksize, "zero", seq.dtype).T


def max_ratio(original: Tensor, blurred: Tensor, dims: tuple[int, ...]) -> Tensor:
    """original max / blurred max per map (keepdim=False): MMPose rescales blurred maps by it.

    An all-zero map gets 1 (MMPose divides by zero there and gets NaN).
    """
    old = original.amax(dim=dims)
    new = blurred.amax(dim=dims)
    return torch.where(new != 0, old / torch.where(new != 0, new, 1), 1)


def max_ratio_numpy(original: np.ndarray, blurred: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    old, new = original.max(axis=axes), blurred.max(axis=axes)
    safe = np.where(new != 0, new, 1).astype(new.dtype)
    return np.where(new != 0, old / safe, 1).astype(new.dtype)
