"""Draw poses on images: keypoints, skeleton links and boxes, anti-aliased (OpenCV).

Every function takes and returns (H, W, 3) uint8 RGB images and never changes its input.
Colours come from the dataset meta (RGB); ``color_by="side"`` instead paints left parts
green, right parts orange and centre parts blue, which makes a wrong flip or a swapped
left/right label obvious at a glance.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from posecore.metainfo import Color, DatasetMeta

ColorBy = Literal["meta", "side"]
Side = Literal["left", "right", "centre"]

LEFT_COLOR: Color = (0, 255, 0)
RIGHT_COLOR: Color = (255, 128, 0)
CENTRE_COLOR: Color = (51, 153, 255)
BOX_COLOR: Color = (255, 0, 255)  # magenta: not a limb colour in the shipped metas
_SIDE_COLORS: dict[Side, Color] = {"left": LEFT_COLOR, "right": RIGHT_COLOR, "centre": CENTRE_COLOR}
_SHIFT = 4  # sub-pixel precision bits for cv2 drawing
_SCALE = 1 << _SHIFT
# "lh"/"rf": left hind / right front, as in animal schemas (paw1LH_top)
_LEFT_TOKENS = {"left", "l", "lt", "lft", "lh", "lf"}
_RIGHT_TOKENS = {"right", "r", "rt", "rgt", "rh", "rf"}


@dataclass(frozen=True, eq=False)
class Poses:
    """N poses of one image: keypoints (N, K, 2) pixels; scores (N, K) visibility or confidence;
    bboxes (N, 4) xyxy or None."""

    keypoints: np.ndarray
    scores: np.ndarray
    bboxes: np.ndarray | None = None


def _tokens(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [t for t in re.split(r"[^a-zA-Z]+", spaced.lower()) if t]


def keypoint_sides(meta: DatasetMeta) -> list[Side]:
    """Left/right/centre of every keypoint, from its ``swap`` partner and the two names.

    A keypoint without a partner is centre. Of a pair, the one whose name has a ``left``/``l``
    token is left; failing that, the partner's ``right``/``r`` token decides; when the names
    say nothing (``paw1``/``paw2``) the lower index is called left, so colours still pair up.
    """
    names = meta.keypoint_names
    sides: list[Side] = []
    for i, j in enumerate(meta.flip_indices):
        if i == j:
            sides.append("centre")
            continue
        mine, theirs = set(_tokens(names[i])), set(_tokens(names[j]))
        if mine & _LEFT_TOKENS and not mine & _RIGHT_TOKENS:
            sides.append("left")
        elif mine & _RIGHT_TOKENS and not mine & _LEFT_TOKENS:
            sides.append("right")
        elif theirs & _RIGHT_TOKENS and not theirs & _LEFT_TOKENS:
            sides.append("left")
        elif theirs & _LEFT_TOKENS and not theirs & _RIGHT_TOKENS:
            sides.append("right")
        else:
            sides.append("left" if i < j else "right")
    return sides


def palette(meta: DatasetMeta, color_by: ColorBy = "meta") -> tuple[list[Color], list[Color]]:
    """(keypoint colours (K,), link colours (L,)) as RGB tuples."""
    if color_by == "meta":
        return meta.keypoint_colors, [s.color for s in meta.skeleton]
    if color_by != "side":
        raise ValueError(f"color_by must be 'meta' or 'side', got {color_by!r}")
    sides = keypoint_sides(meta)
    kpt_colors = [_SIDE_COLORS[s] for s in sides]
    link_colors = [_SIDE_COLORS[sides[a]] if sides[a] == sides[b] else CENTRE_COLOR for a, b in meta.skeleton_indices]
    return kpt_colors, link_colors


def default_sizes(shape: Sequence[int]) -> tuple[int, int]:
    """(keypoint radius, line thickness) that stay legible from 64 px to 4K images."""
    side = min(shape[0], shape[1])
    radius = max(2, round(side / 120))
    return radius, max(1, round(radius / 2))


def _fixed(x: float, y: float) -> tuple[int, int]:
    return round(x * _SCALE), round(y * _SCALE)


def draw_pose(
    image: np.ndarray,
    keypoints: np.ndarray,
    scores: np.ndarray,
    meta: DatasetMeta,
    bboxes: np.ndarray | None = None,
    kpt_thr: float = 0.3,
    radius: int | None = None,
    thickness: int | None = None,
    color_by: ColorBy = "meta",
    box_color: Color = BOX_COLOR,
) -> np.ndarray:
    """Draw N poses on a copy of ``image``.

    image (H, W, 3) uint8 RGB; keypoints (N, K, 2) or (K, 2) in image pixels (pixel centres
    at integer coordinates); scores (N, K) or (K,): visibility (0/1) or confidence — a
    keypoint is drawn when its score > ``kpt_thr`` and a link when both ends are;
    bboxes (N, 4) or (4,) xyxy, or None. Links are drawn first, keypoints on top.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    kpts = np.asarray(keypoints, dtype=np.float64)
    if kpts.ndim == 2:
        kpts = kpts[None]
    vis = np.asarray(scores, dtype=np.float64).reshape(kpts.shape[:2])
    k = meta.num_keypoints
    if kpts.shape[1:] != (k, 2):
        raise ValueError(f"keypoints must be (N, {k}, 2) for meta {meta.name!r}, got {np.shape(keypoints)}")
    auto_r, auto_t = default_sizes(image.shape)
    radius = auto_r if radius is None else radius
    thickness = auto_t if thickness is None else thickness
    kpt_colors, link_colors = palette(meta, color_by)
    links = meta.skeleton_indices
    out = np.ascontiguousarray(image.copy())

    if bboxes is not None:
        for box in np.asarray(bboxes, dtype=np.float64).reshape(-1, 4):
            if np.all(np.isfinite(box)):
                cv2.rectangle(
                    out, _fixed(box[0], box[1]), _fixed(box[2], box[3]), box_color, thickness, cv2.LINE_AA, _SHIFT
                )

    shown = (vis > kpt_thr) & np.all(np.isfinite(kpts), axis=-1)
    for person, ok in zip(kpts, shown, strict=True):
        for (a, b), color in zip(links, link_colors, strict=True):
            if ok[a] and ok[b]:
                cv2.line(out, _fixed(*person[a]), _fixed(*person[b]), color, thickness, cv2.LINE_AA, _SHIFT)
        for idx in np.flatnonzero(ok):
            cv2.circle(out, _fixed(*person[idx]), radius * _SCALE, kpt_colors[idx], -1, cv2.LINE_AA, _SHIFT)
    return out


def draw_label(
    image: np.ndarray, text: str, origin: tuple[int, int] = (0, 0), scale: float | None = None
) -> np.ndarray:
    """White text on a black band whose top-left corner is ``origin``, on a copy."""
    out = image.copy()
    scale = scale if scale is not None else max(0.4, min(out.shape[:2]) / 800)
    thick = max(1, round(scale * 1.5))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    m = max(2, round(4 * scale))
    x, y = origin
    cv2.rectangle(out, (x, y), (x + w + 2 * m, y + h + base + 2 * m), (0, 0, 0), -1)
    cv2.putText(out, text, (x + m, y + m + h), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out


def draw_side_by_side(
    image: np.ndarray,
    pred: Poses,
    gt: Poses,
    meta: DatasetMeta,
    kpt_thr: float = 0.3,
    color_by: ColorBy = "meta",
    labels: tuple[str, str] = ("prediction", "ground truth"),
) -> np.ndarray:
    """Prediction (left panel) and ground truth (right panel) on the same image: (H, 2W + gap, 3)."""
    panels = []
    for poses, label in zip((pred, gt), labels, strict=True):
        drawn = draw_pose(image, poses.keypoints, poses.scores, meta, poses.bboxes, kpt_thr=kpt_thr, color_by=color_by)
        panels.append(draw_label(drawn, label))
    return make_grid(panels, cols=2)


def _fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = image.shape[:2]
    s = min(size[0] / h, size[1] / w)
    new = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(image, new, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)


def make_grid(
    images: Sequence[np.ndarray],
    cols: int,
    cell: tuple[int, int] | None = None,
    pad: int = 4,
    background: Color = (32, 32, 32),
) -> np.ndarray:
    """Tile RGB images row by row into one image.

    Each cell is ``cell`` = (height, width) when given (images are scaled to fit, keeping
    aspect), else as large as the largest image; images are centred in their cells.
    """
    if not images:
        raise ValueError("make_grid needs at least one image")
    if cols < 1:
        raise ValueError(f"cols must be >= 1, got {cols}")
    tiles = [_fit(im, cell) if cell is not None else im for im in images]
    ch = cell[0] if cell is not None else max(t.shape[0] for t in tiles)
    cw = cell[1] if cell is not None else max(t.shape[1] for t in tiles)
    cols = min(cols, len(tiles))
    rows = math.ceil(len(tiles) / cols)
    grid = np.empty((rows * ch + (rows + 1) * pad, cols * cw + (cols + 1) * pad, 3), np.uint8)
    grid[:] = background
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        h, w = tile.shape[:2]
        y = pad + r * (ch + pad) + (ch - h) // 2
        x = pad + c * (cw + pad) + (cw - w) // 2
        grid[y : y + h, x : x + w] = tile
    return grid
