"""Flip test-time augmentation: map a horizontally flipped input's outputs back, and average.

``flip_outputs(head(feats(flip(image))), meta.flip_indices)`` is in the orientation of
``head(feats(image))``, key by key (B instances, K keypoints; MMPose ``models/utils/tta.py``):

- "heatmaps" (B, K, H, W): flip W, reorder channels by ``flip_indices``; (B, 3K, H, W)
  (UDP combined: disc, x offset, y offset per keypoint): the same per group, x offsets negated.
  ``shift_heatmap`` then moves every map one pixel right (MMPose ``shift_heatmap``);
- "simcc_x" (B, K, Wx): flip the bins, reorder; "simcc_y" (B, K, Wy): reorder only;
- "coords" (B, K, 2) normalised by the input size: x -> 1 - x, minus 1 / W when ``input_size``
  is given (MMPose ``flip_coordinates`` with ``shift_coords``); reorder;
- "sigmas", "keypoint_weights" (B, K, ...): reorder only.

Conventions. A horizontal flip maps input pixel x to W - 1 - x (pixel centres; MMPose's
``flip_keypoints``) and keypoint k to ``flip_indices[k]``. Under that flip the outputs map back
exactly for UDP heatmaps (heatmap pixel = x (W_hm - 1) / (W - 1)), for normalised coords with
``input_size``, and for MSRA heatmaps / SimCC vectors when a heatmap pixel / bin is one input
pixel (stride 1, split_ratio 1). With an MSRA stride s (heatmap pixel = x / s) the map of
the flipped input comes back (s - 1) / s heatmap pixels left of the original; the one-pixel
shift leaves it 1 / s right, and recovers MSRA's rounded targets exactly for keypoints on the
heatmap grid (x = s * i) - why MMPose shifts MSRA heatmaps and not UDP ones. SimCC with
split_ratio r comes back r - 1 bins right ((r - 1) / r input pixels), which MMPose, and we,
leave as it is.

One-stage heatmaps (:func:`flip_cell_heatmaps`) follow another convention: their cell i stands
for input pixel s * i (targets put the peak at keypoint / s rounded), so a mirrored whole image's
maps come back (s - 1) / s of a cell left, and are resampled that far right (linearly; the
first column repeats) before averaging. The one-stage flip test averages the heatmaps only:
people are found, boxed and regressed from the plain image, and the averaged maps are what
their keypoints snap to.

Each rule has its NumPy twin (:func:`flip_outputs_numpy`, :func:`average_flip_numpy`) for the
torch-free bundle runtime; ``tests/models/test_flip.py`` checks them against each other key by
key. torch is imported lazily, so the NumPy half runs without it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from posecore._lazy import lazy_import

if TYPE_CHECKING:
    import torch
    from torch import Tensor
else:
    torch = lazy_import("torch")

__all__ = [
    "average_flip",
    "average_flip_numpy",
    "average_flip_heatmaps",
    "average_flip_heatmaps_numpy",
    "flip_cell_heatmaps",
    "flip_cell_heatmaps_numpy",
    "flip_outputs",
    "flip_outputs_numpy",
]

_SWAP_ONLY = ("sigmas", "keypoint_weights", "simcc_y")


def _checked_indices(flip_indices: Sequence[int]) -> list[int]:
    indices = [int(i) for i in flip_indices]
    k = len(indices)
    if sorted(indices) != list(range(k)) or any(indices[j] != i for i, j in enumerate(indices)):
        raise ValueError(
            f"flip_indices must pair keypoints symmetrically (a permutation that is its own inverse); got {indices}"
        )
    return indices


def _check_output(key: str, shape: tuple[int, ...], k: int) -> None:
    """One output (a tensor's or an array's shape) against K keypoints and the known rules."""
    if len(shape) < 2 or shape[1] not in (k, 3 * k) or (shape[1] == 3 * k and key != "heatmaps"):
        raise ValueError(
            f"flip_outputs: {key!r} has shape {shape}, expected (B, K = {k}, ...) to match "
            "flip_indices (use the dataset meta the model was trained on)"
        )
    if key == "heatmaps" and len(shape) != 4:
        raise ValueError(f"flip_outputs: 'heatmaps' must be (B, C, H, W); got {shape}")
    if key == "coords" and (len(shape) != 3 or shape[-1] != 2):
        raise ValueError(f"flip_outputs: 'coords' must be (B, K, 2); got {shape}")
    if key not in ("heatmaps", "simcc_x", "coords", *_SWAP_ONLY):
        raise ValueError(
            f"flip_outputs does not know how to flip output {key!r}; known: heatmaps, simcc_x, coords, "
            f"{', '.join(_SWAP_ONLY)} (run with flip test off, or add the rule for a new output kind, torch and "
            "NumPy, in posecore/models/flip.py)"
        )


def _check_average(outputs: Mapping[str, object], flipped_back: Mapping[str, object]) -> None:
    if set(outputs) != set(flipped_back):
        raise ValueError(f"average_flip: keys differ: {sorted(outputs)} vs {sorted(flipped_back)}")
    for key, value in outputs.items():
        a, b = tuple(value.shape), tuple(flipped_back[key].shape)  # type: ignore[attr-defined]
        if a != b:
            raise ValueError(f"average_flip: {key!r} is {a} vs {b}")


def flip_outputs(
    outputs: Mapping[str, Tensor],
    flip_indices: Sequence[int],
    shift_heatmap: bool = False,
    input_size: tuple[int, int] | None = None,
) -> dict[str, Tensor]:
    """Outputs of a horizontally flipped input (keys as above, each (B, K, ...)) -> the original orientation.

    ``flip_indices`` is ``DatasetMeta.flip_indices`` (length K); ``input_size`` (W, H) enables
    the 1 / W shift of normalised coords. Returns new tensors; the inputs are left untouched.
    """
    indices = _checked_indices(flip_indices)
    index = None
    flipped: dict[str, Tensor] = {}
    for key, value in outputs.items():
        _check_output(key, tuple(value.shape), len(indices))
        if index is None or index.device != value.device:
            index = torch.tensor(indices, device=value.device)
        if key == "heatmaps":
            flipped[key] = _flip_heatmaps(value, index, shift_heatmap)
        elif key == "simcc_x":
            flipped[key] = value.index_select(1, index).flip(-1)
        elif key == "coords":
            flipped[key] = _flip_coords(value, index, input_size)
        else:
            flipped[key] = value.index_select(1, index)
    return flipped


def flip_outputs_numpy(
    outputs: Mapping[str, np.ndarray],
    flip_indices: Sequence[int],
    shift_heatmap: bool = False,
    input_size: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """:func:`flip_outputs` on NumPy arrays (new arrays, same dtypes)."""
    index = np.asarray(_checked_indices(flip_indices), dtype=np.int64)
    back: dict[str, np.ndarray] = {}
    for key, value in outputs.items():
        value = np.asarray(value)
        _check_output(key, value.shape, index.size)
        if key == "heatmaps":
            back[key] = _flip_heatmaps_numpy(value, index, shift_heatmap)
        elif key == "simcc_x":
            back[key] = value[:, index, ::-1]
        elif key == "coords":
            back[key] = _flip_coords_numpy(value, index, input_size)
        else:
            back[key] = value[:, index]
    return back


def _flip_heatmaps(heatmaps: Tensor, index: Tensor, shift: bool) -> Tensor:
    b, c, h, w = heatmaps.shape
    k = index.numel()
    if c == k:
        out = heatmaps.flip(-1).index_select(1, index)
    else:  # UDP combined: (disc, x offset, y offset) per keypoint; a flip negates the x offsets
        groups = heatmaps.reshape(b, k, 3, h, w).flip(-1).index_select(1, index)
        sign = torch.tensor([1.0, -1.0, 1.0], device=heatmaps.device, dtype=heatmaps.dtype).reshape(1, 1, 3, 1, 1)
        out = (groups * sign).reshape(b, c, h, w)
    if shift:
        out = torch.cat([out[..., :1], out[..., :-1]], dim=-1)
    return out


def _flip_heatmaps_numpy(heatmaps: np.ndarray, index: np.ndarray, shift: bool) -> np.ndarray:
    b, c, h, w = heatmaps.shape
    k = index.size
    if c == k:
        out = heatmaps[:, index, :, ::-1]
    else:
        groups = heatmaps.reshape(b, k, 3, h, w)[:, index, :, :, ::-1]
        sign = np.array([1.0, -1.0, 1.0], dtype=heatmaps.dtype).reshape(1, 1, 3, 1, 1)
        out = (groups * sign).reshape(b, c, h, w)
    if shift:
        out = np.concatenate([out[..., :1], out[..., :-1]], axis=-1)
    return np.ascontiguousarray(out)


def _flip_coords(coords: Tensor, index: Tensor, input_size: tuple[int, int] | None) -> Tensor:
    x = 1.0 - coords[..., 0]
    if input_size is not None:
        x = x - 1.0 / input_size[0]
    return torch.stack((x, coords[..., 1]), dim=-1).index_select(1, index)


def _flip_coords_numpy(coords: np.ndarray, index: np.ndarray, input_size: tuple[int, int] | None) -> np.ndarray:
    x = 1.0 - coords[..., 0]
    if input_size is not None:
        x = x - 1.0 / input_size[0]
    return np.stack((x, coords[..., 1]), axis=-1)[:, index].astype(coords.dtype)


def _check_cell_heatmaps(shape: tuple[int, ...], k: int, stride: int) -> None:
    if len(shape) != 4 or shape[1] != k:
        raise ValueError(f"flip_cell_heatmaps: heatmaps must be (B, K = {k}, h, w) to match flip_indices; got {shape}")
    if stride < 1:
        raise ValueError(f"flip_cell_heatmaps: stride must be >= 1, got {stride}")


def flip_cell_heatmaps(heatmaps: Tensor, flip_indices: Sequence[int], stride: int) -> Tensor:
    """One-stage heatmaps (B, K, h, w) of a mirrored whole image -> the original orientation
    (module docstring): mirror W, reorder channels by ``flip_indices``, and resample the maps
    (s - 1) / s of a cell right, s = ``stride`` (input pixels per cell). A new tensor."""
    indices = _checked_indices(flip_indices)
    _check_cell_heatmaps(tuple(heatmaps.shape), len(indices), stride)
    back = heatmaps.flip(-1).index_select(1, torch.tensor(indices, device=heatmaps.device))
    frac = (stride - 1) / stride
    previous = torch.cat([back[..., :1], back[..., :-1]], dim=-1)
    return back * (1.0 - frac) + previous * frac


def flip_cell_heatmaps_numpy(heatmaps: np.ndarray, flip_indices: Sequence[int], stride: int) -> np.ndarray:
    """:func:`flip_cell_heatmaps` on a NumPy array (same dtype)."""
    index = np.asarray(_checked_indices(flip_indices), dtype=np.int64)
    heatmaps = np.asarray(heatmaps)
    _check_cell_heatmaps(heatmaps.shape, index.size, stride)
    back = heatmaps[:, index, :, ::-1]
    frac = (stride - 1) / stride
    previous = np.concatenate([back[..., :1], back[..., :-1]], axis=-1)
    return (back * (1.0 - frac) + previous * frac).astype(heatmaps.dtype)


def average_flip_heatmaps(
    outputs: Mapping[str, Tensor], mirrored: Tensor, flip_indices: Sequence[int], stride: int
) -> dict[str, Tensor]:
    """One-stage ``outputs`` with their "heatmaps" averaged with ``mirrored`` (the mirrored image's
    heatmaps, mapped back by :func:`flip_cell_heatmaps`); the other outputs as they are."""
    averaged = dict(outputs)
    averaged["heatmaps"] = (outputs["heatmaps"] + flip_cell_heatmaps(mirrored, flip_indices, stride)) * 0.5
    return averaged


def average_flip_heatmaps_numpy(
    outputs: Mapping[str, np.ndarray], mirrored: np.ndarray, flip_indices: Sequence[int], stride: int
) -> dict[str, np.ndarray]:
    """:func:`average_flip_heatmaps` on NumPy arrays (same dtypes)."""
    averaged = dict(outputs)
    heat = outputs["heatmaps"]
    averaged["heatmaps"] = (heat + flip_cell_heatmaps_numpy(mirrored, flip_indices, stride)) * heat.dtype.type(0.5)
    return averaged


def average_flip(outputs: Mapping[str, Tensor], flipped_back: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """(outputs + flip_outputs(outputs of the flipped input)) / 2, key by key (same keys and shapes)."""
    _check_average(outputs, flipped_back)
    return {key: (value + flipped_back[key]) * 0.5 for key, value in outputs.items()}


def average_flip_numpy(
    outputs: Mapping[str, np.ndarray], flipped_back: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """:func:`average_flip` on NumPy arrays (same dtypes)."""
    _check_average(outputs, flipped_back)
    return {key: (value + flipped_back[key]) * value.dtype.type(0.5) for key, value in outputs.items()}
