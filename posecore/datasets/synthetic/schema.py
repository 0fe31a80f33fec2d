"""Synthetic data for any skeleton: a meta's keypoints drawn as a figure whose shape is learned from real labels.

The person renderer (:mod:`.scene`) knows only COCO-17 bodies. For every other meta (hands,
faces, animals, whole bodies) this module draws one figure per image from a **template**: the
mean shape of the skeleton and the spread of each keypoint around it, learned from real
annotations by generalised Procrustes alignment (:func:`learn_template`; rotation, scale and
translation removed, so the mean is the shape itself) and shipped beside the metas
(``posecore/metainfo/templates/<meta>.yaml``, :func:`load_template`). A keypoint that no
annotation labels starts at the mean of its linked neighbours.

Each figure (:func:`render_figure`) is the template with every keypoint moved by its own spread
times a random factor, then a random similarity plus stretch and shear (rotation within the
template's ``rotation`` degrees), sized 35-85 % of the image. It is drawn over the cluttered
backgrounds of :mod:`.scene`: a filled hull (the palm, the face), the meta's links as tapered
strokes in its link colours (for metas without a skeleton, e.g. face landmarks, each keypoint is
linked to its nearest neighbours in the template, which traces the contours), and a dot per
keypoint in its colour; then the same lighting jitter as the person scenes. Labels: ``v=2``
inside the image, else ``v=0`` with ``x = y = 0``; the box is that of the drawn pixels.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from posecore.datasets.synthetic.annotate import PersonAnnotation
from posecore.datasets.synthetic.scene import _background, _lighting
from posecore.metainfo import DatasetMeta

__all__ = ["TEMPLATE_DIR", "Template", "available_templates", "learn_template", "load_template", "render_figure"]

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "metainfo" / "templates"
_MIN_STD = 0.01


@dataclass(frozen=True)
class Template:
    """``mean`` (K, 2): the shape, centred, its longer side 1; ``std`` (K,): each keypoint's spread in
    those units; ``links``: index pairs drawn as strokes; ``rotation``: degrees a figure may turn."""

    meta: str
    mean: np.ndarray
    std: np.ndarray
    links: tuple[tuple[int, int], ...]
    rotation: float = 30.0
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "source": self.source,
            "rotation": self.rotation,
            "mean": [[round(float(x), 4), round(float(y), 4)] for x, y in self.mean],
            "std": [round(float(s), 4) for s in self.std],
            "links": [list(link) for link in self.links],
        }


def _normalise(points: np.ndarray) -> np.ndarray:
    centred = points - points.mean(0)
    extent = float(np.ptp(centred, axis=0).max())
    return centred / max(extent, 1e-9)


def _align(src: np.ndarray, dst: np.ndarray, points: np.ndarray | None = None) -> np.ndarray:
    """``points`` (default ``src``) moved by the similarity transform (no reflection, Umeyama) that best
    moves ``src`` (N, 2) onto ``dst``."""
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    u, sig, vt = np.linalg.svd(d.T @ s)
    sign = np.sign(np.linalg.det(u @ vt)) or 1.0
    rot = u @ np.diag([1.0, sign]) @ vt
    scale = (sig * [1.0, sign]).sum() / max(float((s**2).sum()), 1e-12)
    return ((src if points is None else points) - ms) @ rot.T * scale + md


def _nearest_links(mean: np.ndarray, per_point: int = 2) -> tuple[tuple[int, int], ...]:
    d = np.linalg.norm(mean[:, None] - mean[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    links = {tuple(sorted((i, int(j)))) for i in range(len(mean)) for j in np.argsort(d[i], kind="stable")[:per_point]}
    return tuple(sorted(links))  # type: ignore[arg-type]


def learn_template(
    instances: list[np.ndarray], meta: DatasetMeta, rotation: float = 30.0, source: str = "", iterations: int = 10
) -> Template:
    """The template of ``meta`` from annotated instances ((K, 3) rows ``x, y, v``; v > 0 labelled).

    Raises ValueError when no instance labels three keypoints (nothing to learn a shape from).
    """
    k = meta.num_keypoints
    shapes = [np.asarray(i, np.float64).reshape(k, 3) for i in instances]
    shapes = [s for s in shapes if (s[:, 2] > 0).sum() >= 3]
    if not shapes:
        raise ValueError(f"no annotation labels 3 keypoints of {meta.name!r}: no shape to learn a template from")
    shapes.sort(key=lambda s: -int((s[:, 2] > 0).sum()))
    ref = np.full((k, 2), np.nan)
    first = shapes[0][:, 2] > 0
    ref[first] = _normalise(shapes[0][first, :2])
    for _ in range(iterations):
        aligned = np.full((len(shapes), k, 2), np.nan)
        for n, s in enumerate(shapes):
            both = (s[:, 2] > 0) & ~np.isnan(ref[:, 0])
            if both.sum() >= 2:  # every labelled keypoint of s, by the transform fitted on the shared ones
                full = s[:, 2] > 0
                aligned[n, full] = _align(s[both, :2], ref[both], s[full, :2])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # keypoints no instance labels: NaN, filled below
            mean = np.nanmean(aligned, axis=0) if np.isfinite(aligned).any() else ref
        labelled = ~np.isnan(mean[:, 0])
        ref = np.full((k, 2), np.nan)
        ref[labelled] = _normalise(mean[labelled])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        spread = np.sqrt(np.nanmean(((aligned - ref[None]) ** 2).sum(-1), axis=0))
    links = tuple(meta.skeleton_indices)
    mean = _fill_missing(ref, links)
    std = np.where(np.isfinite(spread), spread, np.nan)
    std = np.clip(np.where(np.isnan(std), np.nanmedian(std) if np.isfinite(std).any() else 0.03, std), _MIN_STD, 0.2)
    mean = _normalise(mean)
    return Template(meta.name, mean, std, links or _nearest_links(mean), rotation, source)


def _fill_missing(mean: np.ndarray, links: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Unlabelled keypoints at the mean of their placed linked neighbours (repeatedly), else the centroid."""
    out = mean.copy()
    for _ in range(len(out)):
        missing = np.flatnonzero(np.isnan(out[:, 0]))
        if not len(missing):
            break
        for k in missing:
            near = [b if a == k else a for a, b in links if k in (a, b)]
            placed = [out[j] for j in near if not np.isnan(out[j, 0])]
            if placed:
                out[k] = np.mean(placed, axis=0)
    centroid = np.nanmean(out, axis=0)
    return np.where(np.isnan(out), centroid, out)


def available_templates() -> list[str]:
    return sorted(p.stem for p in TEMPLATE_DIR.glob("*.yaml"))


def load_template(meta: DatasetMeta) -> Template:
    """The shipped template of ``meta`` (by name); raises ValueError naming the ones there are."""
    path = TEMPLATE_DIR / f"{meta.name}.yaml"
    if not path.is_file():
        raise ValueError(
            f"no synthetic template for meta {meta.name!r} (templates: {', '.join(available_templates())}); "
            "learn one from your annotations with posecore.datasets.synthetic.schema.learn_template"
        )
    raw = yaml.safe_load(path.read_text())
    mean, std = np.asarray(raw["mean"], np.float64), np.asarray(raw["std"], np.float64)
    if mean.shape != (meta.num_keypoints, 2) or std.shape != (meta.num_keypoints,):
        raise ValueError(f"{path}: mean must be ({meta.num_keypoints}, 2) and std ({meta.num_keypoints},)")
    links = tuple((int(a), int(b)) for a, b in raw["links"])
    return Template(meta.name, mean, std, links, float(raw.get("rotation", 30.0)), str(raw.get("source", "")))


def render_figure(
    rng: np.random.Generator, template: Template, meta: DatasetMeta, width: int, height: int
) -> tuple[np.ndarray, list[PersonAnnotation]]:
    """One image (H, W, 3) uint8 RGB with one figure of ``template`` and its annotation (module docstring)."""
    image = _background(rng, width, height)
    k = meta.num_keypoints
    shape = template.mean + rng.normal(size=(k, 2)) * template.std[:, None] * rng.uniform(0.3, 1.0)
    angle = math.radians(rng.uniform(-template.rotation, template.rotation))
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    stretch = np.diag(rng.uniform(0.85, 1.15, 2)) @ np.array([[1.0, rng.uniform(-0.15, 0.15)], [0.0, 1.0]])
    pts = shape @ (rot @ stretch).T
    extent = float(np.ptp(pts, axis=0).max())
    size = rng.uniform(0.35, 0.85) * min(width, height)
    pts = pts / max(extent, 1e-9) * size
    lo, hi = pts.min(0), pts.max(0)
    span = np.array([width - 1, height - 1], np.float64)
    room = np.maximum(span - (hi - lo), 0.0)
    pts = pts - lo + rng.uniform(0, 1, 2) * room - np.where(room > 0, 0.0, (hi - lo - span) / 2)

    mask = np.zeros((height, width), np.uint8)
    hull = cv2.convexHull(np.round(pts * 16).astype(np.int32))
    base = tuple(int(c) for c in rng.integers(40, 230, 3))
    cv2.fillConvexPoly(image, hull, base, cv2.LINE_AA, 4)
    cv2.fillConvexPoly(mask, hull, 1, cv2.LINE_8, 4)
    thick = max(1, int(round(size * rng.uniform(0.02, 0.04))))
    link_colors = {tuple(sorted(p)): link.color for p, link in zip(meta.skeleton_indices, meta.skeleton, strict=True)}
    tone = rng.uniform(0.5, 1.0)
    for a, b in template.links:
        color = link_colors.get((min(a, b), max(a, b)), meta.keypoints[a].color)
        c = tuple(int(v * tone) for v in color)
        cv2.line(image, _px(pts[a]), _px(pts[b]), c, thick, cv2.LINE_AA, 4)
        cv2.line(mask, _px(pts[a]), _px(pts[b]), 1, thick, cv2.LINE_8, 4)
    radius = max(1, int(round(thick * 0.8)))
    for i, p in enumerate(pts):
        cv2.circle(image, _px(p), radius * 16, tuple(int(v) for v in meta.keypoints[i].color), -1, cv2.LINE_AA, 4)
    image = _lighting(rng, image)

    inside = (pts[:, 0] >= 0) & (pts[:, 1] >= 0) & (pts[:, 0] <= width - 1) & (pts[:, 1] <= height - 1)
    keypoints = np.zeros((k, 3))
    keypoints[inside, :2] = np.round(pts[inside], 2)
    keypoints[inside, 2] = 2
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return image, []
    x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())
    bbox = (x0, y0, x1 - x0 + 1, y1 - y0 + 1)
    return image, [PersonAnnotation(keypoints, bbox, float(len(xs)), np.zeros((0, 0), bool))]


def _px(p: np.ndarray) -> tuple[int, int]:
    return int(round(p[0] * 16)), int(round(p[1] * 16))
