"""NumPy flip test for the bundle runtime: the rules of :mod:`posecore.models.flip`, without torch.

``flip_outputs(outputs of the mirrored input, flip_indices, shift_heatmap, input_size)`` brings
each output back to the orientation of the original input, key by key (B instances, K
keypoints): "heatmaps" (B, K, H, W) flip W and reorder (B, 3K, H, W: per keypoint disc, x
offset negated, y offset), then the optional one-pixel shift right; "simcc_x" flip the bins and
reorder, "simcc_y" reorder; "coords" x -> 1 - x (- 1 / W with ``input_size``) and reorder;
"sigmas", "keypoint_weights" reorder. ``tests/inference/test_flip.py`` checks every rule against
the torch version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["average_flip", "flip_outputs"]

_SWAP_ONLY = ("sigmas", "keypoint_weights", "simcc_y")


def flip_outputs(
    outputs: Mapping[str, np.ndarray],
    flip_indices: Sequence[int],
    shift_heatmap: bool = False,
    input_size: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """Outputs of a horizontally flipped input -> the original orientation (new arrays, same dtypes)."""
    index = np.asarray(list(flip_indices), dtype=np.int64)
    k = index.size
    if sorted(index.tolist()) != list(range(k)) or np.any(index[index] != np.arange(k)):
        raise ValueError(f"flip_indices must be a permutation that is its own inverse; got {index.tolist()}")
    back: dict[str, np.ndarray] = {}
    for key, value in outputs.items():
        value = np.asarray(value)
        if value.ndim < 2 or value.shape[1] not in (k, 3 * k) or (value.shape[1] == 3 * k and key != "heatmaps"):
            raise ValueError(
                f"flip test: output {key!r} has shape {value.shape}, expected (B, K = {k}, ...) to match the "
                "bundle's flip_indices"
            )
        if key == "heatmaps":
            back[key] = _flip_heatmaps(value, index, shift_heatmap)
        elif key == "simcc_x":
            back[key] = value[:, index, ::-1]
        elif key == "coords":
            x = 1.0 - value[..., 0]
            if input_size is not None:
                x = x - 1.0 / input_size[0]
            back[key] = np.stack((x, value[..., 1]), axis=-1)[:, index].astype(value.dtype)
        elif key in _SWAP_ONLY:
            back[key] = value[:, index]
        else:
            raise ValueError(
                f"flip test does not know how to flip output {key!r}; known: heatmaps, simcc_x, coords, "
                f"{', '.join(_SWAP_ONLY)} (run with flip test off, or add the rule here and in posecore/models/flip.py)"
            )
    return back


def _flip_heatmaps(heatmaps: np.ndarray, index: np.ndarray, shift: bool) -> np.ndarray:
    if heatmaps.ndim != 4:
        raise ValueError(f"flip test: 'heatmaps' must be (B, C, H, W); got {heatmaps.shape}")
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


def average_flip(outputs: Mapping[str, np.ndarray], flipped_back: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """(outputs + flipped_back) / 2, key by key."""
    if set(outputs) != set(flipped_back):
        raise ValueError(f"flip test: keys differ: {sorted(outputs)} vs {sorted(flipped_back)}")
    return {key: (value + flipped_back[key]) * value.dtype.type(0.5) for key, value in outputs.items()}
