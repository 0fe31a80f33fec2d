"""One synthetic image: background, people placed and drawn far to near, seats, occluders, lighting.

:func:`render_image` is the whole recipe for one image from one generator; it returns the
pixels and the annotations of the visible people (:mod:`~posecore.datasets.synthetic.annotate`).
The order of the draws from ``rng`` is part of the output (see ``GENERATOR_VERSION``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from posecore.datasets.synthetic.annotate import PersonAnnotation, _annotate, _keypoint_names
from posecore.datasets.synthetic.figure import _DEG, Figure, _hsv, sample_figure
from posecore.datasets.synthetic.person import _draw_person
from posecore.datasets.synthetic.projection import _Placed, _View
from posecore.datasets.synthetic.raster import _SHIFT, _Canvas, _capsule, _ellipse, _fill, _point, _shade, _unit

_OCCLUDER = np.iinfo(np.uint16).max
"""The label-map value of occluders: above every person's labels, so they hide people."""


@dataclass(frozen=True)
class SceneOptions:
    """What goes into an image besides people.

    ``clutter=False`` gives people alone on a flat ``flat_color`` background: no shapes,
    seats, lighting jitter, noise or blur. ``yaw`` fixes every person's facing (radians)
    instead of sampling it.
    """

    clutter: bool = True
    occluders: bool = True
    yaw: float | None = None
    flat_color: tuple[int, int, int] = (0, 255, 0)


def _draw_seat(cv: _Canvas, pl: _Placed, rng: np.random.Generator) -> None:
    """A box under a seated figure's pelvis: scenery, so it hides people drawn before it."""
    p = pl.p2
    s, b = pl.view.scale, pl.figure.build
    top = max(p["left_hip"][1], p["right_hip"][1]) + 0.05 * s
    bottom = max(p["left_ankle"][1], p["right_ankle"][1]) + b.ankle_height * s
    cx = 0.5 * (p["left_hip"][0] + p["right_hip"][0])
    half = rng.uniform(0.12, 0.22) * s
    if bottom - top < 0.05 * s:
        return
    color = _hsv(rng, (0.1, 0.6), (0.2, 0.7))
    poly = np.array([[cx - half, top], [cx + half, top], [cx + half, bottom], [cx - half, bottom]])
    _fill(cv.labels, poly, 0, aa=False)
    _fill(cv.image, poly, color)
    cv2.line(cv.image, _point(poly[0]), _point(poly[1]), _shade(color, 1.3), 2, cv2.LINE_AA, _SHIFT)


def _layer(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A smooth layer (H, W, 3) float32: a two-colour gradient plus colour blobs, rendered
    at 1/8 resolution and upsampled."""
    sw, sh = max(width // 8, 2), max(height // 8, 2)
    x = np.linspace(0, 1, sw, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, sh, dtype=np.float32)[:, None]
    ang = rng.uniform(0, 2 * math.pi)
    t = x * math.cos(ang) + y * math.sin(ang)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    c0, c1 = rng.uniform(20, 235, (2, 3)).astype(np.float32)
    small = c0 + t[..., None] * (c1 - c0)
    gh, gw = (int(v) for v in rng.integers(2, 10, 2))
    blobs = rng.standard_normal((gh, gw, 3), dtype=np.float32)
    small += cv2.resize(blobs, (sw, sh), interpolation=cv2.INTER_CUBIC) * np.float32(rng.uniform(5, 40))
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A cluttered background (H, W, 3) uint8 RGB: gradients, blobs, a floor, stripes, shapes."""
    img = _layer(rng, width, height)
    if rng.random() < 0.5:
        horizon = int(rng.uniform(0.3, 0.75) * height)
        img[horizon:] = _layer(rng, width, height)[horizon:]
    if rng.random() < 0.3:
        f = 2 * math.pi * rng.uniform(0.02, 0.25)
        a = rng.uniform(0, math.pi)
        px = f * math.cos(a) * np.arange(width, dtype=np.float32)
        py = f * math.sin(a) * np.arange(height, dtype=np.float32)
        wave = np.outer(np.cos(py), np.sin(px)) + np.outer(np.sin(py), np.cos(px))
        img += (np.float32(rng.uniform(5, 30)) * wave)[..., None]
    out = np.clip(img, 0, 255, out=img).astype(np.uint8)
    scale = min(width, height)
    for _ in range(int(rng.integers(2, 16))):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(6)
        cx, cy = rng.uniform(-0.1, 1.1) * width, rng.uniform(-0.1, 1.1) * height
        size = rng.uniform(0.03, 0.35) * scale
        if kind == 0:
            a = rng.uniform(0, math.pi)
            r = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
            w, h = size, size * rng.uniform(0.2, 1.5)
            corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) @ r.T + (cx, cy)
            _fill(out, corners, color)
        elif kind == 1:
            _fill(
                out, _ellipse(np.array([cx, cy]), size, size * rng.uniform(0.3, 1.0), _unit(rng.normal(size=2))), color
            )
        elif kind == 2:
            end = np.array([cx, cy]) + rng.normal(size=2) * size * 2
            cv2.line(out, _point((cx, cy)), _point(end), color, int(rng.integers(1, 6)), cv2.LINE_AA, _SHIFT)
        elif kind == 3:
            pts = np.array([cx, cy]) + rng.normal(size=(int(rng.integers(3, 7)), 2)) * size
            _fill(out, pts, color)
        elif kind == 4:
            a = np.array([cx, cy])
            c = a + _unit(rng.normal(size=2)) * size * rng.uniform(0.5, 2)
            r = rng.uniform(0.02, 0.06) * scale
            _fill(out, _capsule(a, c, r, 0.8 * r), color)
        else:
            cv2.circle(out, (int(cx), int(cy)), max(int(size / 2), 1), color, int(rng.integers(1, 4)), cv2.LINE_AA)
    if rng.random() < 0.35:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.8, 3.0))
    return out


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return inter / max(area, 1e-6)


def _place(
    rng: np.random.Generator, figure: Figure, width: int, height: int, taken: list[tuple[float, float, float, float]]
) -> _Placed:
    """Scale the figure to 25-90% of the image height and put it where it overlaps others
    little (or, sometimes, a lot); some people are partly out of frame."""
    scale = rng.uniform(0.25, 0.9) * height
    roll = float(rng.normal(0, 4)) * _DEG
    probe = _Placed.make(figure, _View(figure.yaw, scale, (0.0, 0.0), roll))
    x0, y0, x1, y1 = probe.extent
    w, h = x1 - x0, y1 - y0
    candidates = []
    for _ in range(8):
        if rng.random() < 0.75 and w < width and h < height:
            left, top = rng.uniform(0, width - w), rng.uniform(0, height - h)
        else:
            left, top = rng.uniform(-0.35 * w, width - 0.65 * w), rng.uniform(-0.3 * h, height - 0.7 * h)
        box = (left, top, left + w, top + h)
        candidates.append((max((_overlap(box, t) for t in taken), default=0.0), left, top))
    candidates.sort()
    chosen = candidates[-1] if (taken and rng.random() < 0.2) else candidates[0]
    _, left, top = chosen
    return probe.moved(left - x0, top - y0)


def _draw_occluder(cv: _Canvas, rng: np.random.Generator, centre: np.ndarray, size: float) -> None:
    """An ellipse, box, bar or pole of about ``size`` pixels in front of everything, with a
    rim and sometimes stripes (all inside its outline, so the label map stays exact)."""
    color = _hsv(rng, (0.0, 0.9), (0.15, 0.95))
    kind = rng.integers(4)
    if kind == 0:
        up = _unit(rng.normal(size=2))
        rx, ry = size * rng.uniform(0.5, 1.0), size * rng.uniform(0.5, 1.0)
        poly = _ellipse(centre, rx, ry, up, 24)
    else:
        a = rng.uniform(-0.3, 0.3) if kind != 3 else rng.uniform(0, math.pi)
        r = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        if kind == 1:
            w, h = size * rng.uniform(0.5, 1.0), size * rng.uniform(0.5, 1.0)
        elif kind == 2:
            w, h = size * rng.uniform(1.5, 3.0), size * rng.uniform(0.3, 0.6)
        else:
            w, h = size * rng.uniform(0.12, 0.25), size * rng.uniform(1.5, 3.0)
        poly = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) @ r.T + centre
    _fill(cv.labels, poly, _OCCLUDER, aa=False)
    _fill(cv.image, poly, _shade(color, 0.7))
    c = poly.mean(axis=0)
    _fill(cv.image, c + 0.88 * (poly - c), color)
    if rng.random() < 0.4:
        stripe = _shade(color, 0.5 if rng.random() < 0.5 else 1.4)
        m = len(poly) // 2
        for t in np.linspace(0, 1, int(rng.integers(1, 4)) + 2)[1:-1]:
            a = poly[0] + t * (poly[1] - poly[0])
            b = poly[m] + (1 - t) * (poly[m + 1] - poly[m])
            cv2.line(cv.image, _point(c + 0.8 * (a - c)), _point(c + 0.8 * (b - c)), stripe, 1, cv2.LINE_AA, _SHIFT)


def _lighting(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Colour/brightness/contrast jitter, a light gradient, sensor noise and sometimes blur."""
    h, w = image.shape[:2]
    levels = np.arange(256, dtype=np.float64)[:, None]
    gain = rng.uniform(0.8, 1.2, 3)[None, :]
    curve = ((levels - 128.0) * rng.uniform(0.7, 1.2) + 128.0 + rng.uniform(-30, 30)) * gain
    img = cv2.LUT(image, np.clip(curve, 0, 255).astype(np.uint8).reshape(256, 1, 3)).astype(np.float32)
    a = rng.uniform(0, 2 * math.pi)
    amp = rng.uniform(0, 0.45)
    gx = (amp * math.cos(a)) * (np.arange(w, dtype=np.float32) / w - 0.5)
    gy = (amp * math.sin(a)) * (np.arange(h, dtype=np.float32) / h - 0.5)
    img *= (1.0 + gy[:, None] + gx[None, :])[..., None]
    sigma = rng.uniform(0, 8)
    noise = np.frombuffer(rng.bytes(img.size), dtype=np.uint8).reshape(img.shape)
    img += (noise.astype(np.float32) - np.float32(127.5)) * np.float32(sigma / 73.9)
    out = np.clip(img, 0, 255, out=img).astype(np.uint8)
    if rng.random() < 0.15:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.2))
    return out


def render_image(
    rng: np.random.Generator,
    width: int,
    height: int,
    min_people: int = 1,
    max_people: int = 4,
    options: SceneOptions = SceneOptions(),
) -> tuple[np.ndarray, list[PersonAnnotation]]:
    """One image (H, W, 3) uint8 RGB with ``min_people``..``max_people`` people, and the
    annotations of the visible ones, in drawing order (far to near)."""
    if options.clutter:
        image = _background(rng, width, height)
    else:
        image = np.empty((height, width, 3), np.uint8)
        image[:] = options.flat_color
    light = _unit(np.array([rng.uniform(-1, 1), rng.uniform(-1, 0.2)]))
    cv = _Canvas(image, np.zeros((height, width), np.uint16), light)
    n = int(rng.integers(min_people, max_people + 1))
    placed: list[_Placed] = []
    for _ in range(n):
        fig = sample_figure(rng, options.yaw)
        placed.append(_place(rng, fig, width, height, [pl.extent for pl in placed]))
    placed.sort(key=lambda pl: pl.extent[3])
    for i, pl in enumerate(placed):
        if pl.figure.pose.seated and options.clutter:
            _draw_seat(cv, pl, rng)
        _draw_person(cv, pl, i)
    if options.occluders and placed:
        for _ in range(int(rng.choice(4, p=[0.4, 0.35, 0.18, 0.07]))):
            pl = placed[int(rng.integers(len(placed)))]
            size = rng.uniform(0.08, 0.22) * pl.view.scale
            if rng.random() < 0.75:
                names = _keypoint_names()
                name = names[int(rng.integers(len(names)))]
                centre = pl.p2[name] + rng.normal(size=2) * size * 0.5
            else:
                centre = np.array([rng.uniform(0, width), rng.uniform(0, height)])
            _draw_occluder(cv, rng, centre, size)
    annotations = [a for i, pl in enumerate(placed) if (a := _annotate(pl, i, cv.labels)) is not None]
    out = _lighting(rng, cv.image) if options.clutter else cv.image
    return out, annotations
