"""PNG reports of an evaluation: per-keypoint bars, the PCK curve, and the worst-predicted instances.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global state, no display)
and written atomically. Functions take plain arrays and tables, as
:func:`posecore.evaluation.topdown.score_predictions` returns them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from posecore.io import atomic_write_bytes
from posecore.metainfo import DatasetMeta
from posecore.visualization import Poses, draw_label, draw_side_by_side, make_grid

if TYPE_CHECKING:
    from matplotlib.figure import Figure

RATIO_PREFIXES = ("OKS", "PCK", "tPCK", "AUC", "AP")
"""Per-keypoint columns in [0, 1] (higher is better), drawn as bars on one axis."""


def _save(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return atomic_write_bytes(path, buffer.getvalue())


def plot_per_keypoint(path: str | Path, table: Mapping[str, Mapping[str, float]]) -> Path:
    """Grouped bars per keypoint: the ratio columns (``OKS``, ``PCK@thr``, ``AUC``) on top, ``EPE`` (pixels) below.

    ``table`` is ``{keypoint name: {column: value}}`` (``EvalResult.per_keypoint``).
    """
    from matplotlib.figure import Figure

    names = list(table)
    columns: list[str] = []
    for row in table.values():
        columns += [c for c in row if c not in columns]
    ratios = [c for c in columns if c.startswith(RATIO_PREFIXES)]
    pixels = [c for c in columns if c.startswith("EPE")]
    panels = [(ratios, "ratio (higher is better)"), (pixels, "pixels (lower is better)")]
    panels = [(cols, label) for cols, label in panels if cols]
    if not panels:
        raise ValueError(f"the per-keypoint table has no OKS/PCK/AUC/EPE column (columns: {columns})")
    fig = Figure(figsize=(max(6.0, 0.45 * len(names) + 2.0), 3.2 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    x = np.arange(len(names))
    for ax, (cols, label) in zip(axes, panels, strict=True):
        width = 0.8 / len(cols)
        for i, col in enumerate(cols):
            values = np.array([table[n].get(col, np.nan) for n in names], dtype=np.float64)
            ax.bar(x + (i - (len(cols) - 1) / 2) * width, np.nan_to_num(values), width, label=col)
        ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel(label)
        if cols is ratios:
            ax.set_ylim(0.0, 1.2)  # room for the legend above the bars
            ax.set_yticks(np.linspace(0.0, 1.0, 6))
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper right", ncols=len(cols))
    axes[0].set_title("per-keypoint accuracy")
    return _save(fig, path)


def plot_pck_curve(
    path: str | Path, thresholds: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray
) -> Path:
    """PCK against the threshold (a fraction of the box size)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 3.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(np.asarray(thresholds), np.asarray(values), marker=".", markersize=3)
    ax.set_xlabel("threshold (fraction of box size)")
    ax.set_ylabel("PCK")
    ax.set_ylim(0.0, 1.0)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _upscale(image: np.ndarray, keypoints: np.ndarray, min_height: int) -> tuple[np.ndarray, np.ndarray]:
    s = max(1, int(np.ceil(min_height / image.shape[0])))
    if s == 1:
        return image, keypoints
    big = cv2.resize(image, (image.shape[1] * s, image.shape[0] * s), interpolation=cv2.INTER_LINEAR)
    return big, (keypoints + 0.5) * s - 0.5  # pixel centres stay pixel centres


def worst_instances_grid(
    images: np.ndarray,
    pred_keypoints: np.ndarray,
    gt_keypoints: np.ndarray,
    visible: np.ndarray,
    meta: DatasetMeta,
    labels: Sequence[str] | None = None,
    cols: int = 4,
    min_height: int = 192,
) -> np.ndarray:
    """One prediction | ground-truth panel per instance, tiled: an (H, W, 3) uint8 RGB image.

    images (N, h, w, 3) uint8 RGB model inputs; pred_keypoints, gt_keypoints (N, K, 2) in their
    pixels; visible (N, K): the labelled keypoints, the only ones drawn on either side (so the
    two panels compare like with like); labels: one caption per instance. Small inputs are
    enlarged to at least ``min_height`` pixels.
    """
    if len(images) == 0:
        raise ValueError("no instances to draw")
    tiles = []
    for i in range(len(images)):
        image, pred = _upscale(images[i], np.asarray(pred_keypoints[i], np.float64), min_height)
        _, gt = _upscale(images[i], np.asarray(gt_keypoints[i], np.float64), min_height)
        shown = (np.asarray(visible[i]) > 0).astype(np.float64)
        tile = draw_side_by_side(image, Poses(pred, shown), Poses(gt, shown), meta, kpt_thr=0.5, color_by="side")
        if labels is not None:
            tile = draw_label(tile, labels[i], origin=(0, tile.shape[0] - 20))
        tiles.append(tile)
    return make_grid(tiles, cols=min(cols, len(tiles)))


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an (H, W, 3) uint8 RGB image as PNG, atomically."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode a {image.shape} image as PNG")
    return atomic_write_bytes(path, data.tobytes())
