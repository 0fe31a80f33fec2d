"""Anti-aliased polygon rasterisation for the synthetic generator: outlines, fills, shading.

Polygons are filled by OpenCV in fixed point (``_SHIFT`` fractional bits), so sub-pixel
positions move edges smoothly. Every shape is drawn twice: anti-aliased into the RGB image
and aliased into the label map (:class:`_Canvas`), which is what keeps the keypoint
visibility labels exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

_Color = tuple[float, float, float]
"""RGB, 0-255, floats (rounded when drawn)."""

_SHIFT = 4
_ONE = 1 << _SHIFT


def _fixed(pts: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(pts, dtype=np.float64) * _ONE).astype(np.int32).reshape(-1, 1, 2)


def _point(p: np.ndarray) -> tuple[int, int]:
    return round(float(p[0]) * _ONE), round(float(p[1]) * _ONE)


def _unit(v: np.ndarray, fallback: tuple[float, float] = (0.0, -1.0)) -> np.ndarray:
    n = math.hypot(float(v[0]), float(v[1]))
    return v / n if n > 1e-9 else np.array(fallback)


@cache
def _arc(n: int, full: bool) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False) if full else np.linspace(0, math.pi, n)
    return np.cos(t)[:, None], np.sin(t)[:, None]


def _ring(a: np.ndarray, b: np.ndarray, n: int = 7) -> np.ndarray:
    """Unit half-circle (n, 2) around the end ``b`` of the segment from ``a``."""
    u = _unit(b - a)
    cos, sin = _arc(n, False)
    return cos * np.array([-u[1], u[0]]) + sin * u


def _capsule(a: np.ndarray, b: np.ndarray, ra: float, rb: float, ring: np.ndarray | None = None) -> np.ndarray:
    """Outline (2n, 2) of a tapered capsule from ``a`` (radius ``ra``) to ``b`` (``rb``);
    ``ring`` is :func:`_ring` of the segment's direction when already known."""
    ring = _ring(a, b) if ring is None else ring
    return np.concatenate([b + rb * ring, a - ra * ring])


def _ellipse(c: np.ndarray, rx: float, ry: float, up: np.ndarray, n: int = 20) -> np.ndarray:
    """Outline (n, 2) of an ellipse with semi-axis ``ry`` along the unit vector ``up``."""
    cos, sin = _arc(n, True)
    return c + (rx * cos) * np.array([-up[1], up[0]]) + (ry * sin) * up


def _fill(img: np.ndarray, poly: np.ndarray, color: Iterable[float] | int, aa: bool = True) -> None:
    col = (int(color),) if isinstance(color, int | np.integer) else tuple(int(round(c)) for c in color)
    cv2.fillPoly(img, [_fixed(poly)], col, cv2.LINE_AA if aa else cv2.LINE_8, _SHIFT)


def _shade(color: Iterable[float], factor: float) -> _Color:
    """Darker (``factor`` < 1, scaled) or lighter (> 1, moved towards white) ``color``."""
    r, g, b = (min(max(c * factor if factor <= 1 else c + (255 - c) * (factor - 1), 0.0), 255.0) for c in color)
    return (r, g, b)


@dataclass
class _Canvas:
    """The RGB image (H, W, 3) uint8, the label map (H, W) uint16 and the light direction (2,)."""

    image: np.ndarray
    labels: np.ndarray
    light: np.ndarray

    def limb(self, a: np.ndarray, b: np.ndarray, ra: float, rb: float, color: _Color, label: int) -> None:
        """A shaded tapered cylinder: dark rim, base body and a highlight towards the light."""
        ring = _ring(a, b)
        outline = _capsule(a, b, ra, rb, ring)
        _fill(self.labels, outline, label, aa=False)
        _fill(self.image, outline, _shade(color, 0.6))
        if max(ra, rb) < 1.2:
            return
        u = _unit(b - a)
        nv = np.array([-u[1], u[0]])
        s = 1.0 if float(nv @ self.light) >= 0 else -1.0
        for scale, off, factor in ((0.78, 0.2, 1.0), (0.32, 0.45, 1.25)):
            da, db = s * off * ra * nv, s * off * rb * nv
            _fill(self.image, _capsule(a + da, b + db, scale * ra, scale * rb, ring), _shade(color, factor))

    def blob(self, poly_at: Callable[[float, np.ndarray], np.ndarray], size: float, color: _Color, label: int) -> None:
        """A shaded convex shape: ``poly_at(scale, offset)`` gives its outline shrunk and moved;
        the full outline goes into the label map."""
        _fill(self.labels, poly_at(1.0, np.zeros(2)), label, aa=False)
        _fill(self.image, poly_at(1.0, np.zeros(2)), _shade(color, 0.62))
        if size < 1.5:
            return
        _fill(self.image, poly_at(0.82, 0.12 * size * self.light), color)
        _fill(self.image, poly_at(0.35, 0.4 * size * self.light), _shade(color, 1.22))
