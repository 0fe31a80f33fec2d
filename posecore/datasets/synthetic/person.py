"""Drawing one placed person: shaded limbs, torso, neck and a head with hair, face, ears and eyes.

Parts are drawn far to near (by depth, with small biases so that arms lie over the trunk and
legs under it) into both the image and the label map, where each person's pixels carry
``1 + person * _PARTS_PER_PERSON + part`` (:class:`_Part`): annotation reads visibility back
from that map.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import cv2
import numpy as np

from posecore.datasets.synthetic.figure import Outfit
from posecore.datasets.synthetic.projection import _Placed
from posecore.datasets.synthetic.raster import (
    _SHIFT,
    _Canvas,
    _capsule,
    _Color,
    _ellipse,
    _fill,
    _point,
    _shade,
    _unit,
)

_PARTS_PER_PERSON = 16


class _Part(IntEnum):
    """Drawn body parts; a person's pixels in the label map are ``1 + person * 16 + part``."""

    TORSO = 0
    HEAD = 1
    NECK = 2
    L_UPPER_ARM = 3
    L_FOREARM = 4
    L_HAND = 5
    R_UPPER_ARM = 6
    R_FOREARM = 7
    R_HAND = 8
    L_THIGH = 9
    L_SHANK = 10
    L_FOOT = 11
    R_THIGH = 12
    R_SHANK = 13
    R_FOOT = 14


def _torso_outline(pl: _Placed, t_lo: float, t_hi: float) -> np.ndarray:
    """Outline (n, 2) of the trunk between fractions ``t_lo``..``t_hi`` of pelvis-to-neck."""
    b, v = pl.figure.build, pl.view
    s = v.scale
    pelvis, neck = pl.p2["pelvis"], pl.p2["neck"]
    axis = neck - pelvis
    up = _unit(axis, (math.sin(v.roll), -math.cos(v.roll)))
    if float(np.hypot(*axis)) < 0.35 * b.spine * s:
        up = np.array([math.sin(v.roll), -math.cos(v.roll)])
    side = np.array([-up[1], up[0]])

    def half_width(a: float, d: float, frame: np.ndarray) -> float:
        x = v.direction(frame @ np.array([a, 0.0, 0.0]))
        z = v.direction(frame @ np.array([0.0, 0.0, d]))
        return s * math.sqrt(float(x @ side) ** 2 + float(z @ side) ** 2)

    g = b.girth
    w_sh = half_width(b.shoulder_half + 0.012 * g, 0.065 * g, pl.skel.torso)
    w_chest = half_width(0.9 * b.shoulder_half + 0.01 * g, 0.075 * g, pl.skel.torso)
    w_waist = half_width(0.72 * b.shoulder_half * g, 0.07 * g, pl.skel.torso)
    w_hip = half_width(b.hip_half + 0.035 * g, 0.08 * g, np.eye(3))
    span = float(np.hypot(*axis))
    rows = [
        (1.07, 0.45 * w_sh),
        (1.0, 0.97 * w_sh),
        (0.9, w_sh),
        (0.72, w_chest),
        (0.45, w_waist),
        (0.1, w_hip),
        (-0.08, w_hip),
        (-0.18, 0.6 * w_hip),
    ]
    rows = [(t, w) for t, w in rows if t_lo <= t <= t_hi]
    left = [pelvis + t * span * up + w * side for t, w in rows]
    right = [pelvis + t * span * up - w * side for t, w in reversed(rows)]
    return np.array(left + right)


def _draw_head(cv: _Canvas, pl: _Placed, label: int) -> None:
    """Head ellipse (hair, or skin when bald), face patch, ears, nose, mouth and eyes; face
    features only where :meth:`_Placed.shows` says they face the viewer."""
    b, o, v = pl.figure.build, pl.figure.outfit, pl.view
    c = pl.p2["head"]
    head_up = v.direction(pl.skel.head @ np.array([0.0, 1.0, 0.0]))
    up = _unit(head_up) if math.hypot(*head_up) >= 0.3 else np.array([math.sin(v.roll), -math.cos(v.roll)])
    rx, ry = b.head_rx * v.scale, b.head_ry * v.scale
    front = pl.skel.head @ np.array([0.0, 0.0, 1.0])
    face_depth = v.depth(front)
    face_dir = v.direction(front)

    def ear(name: str) -> None:
        at = pl.p2[name]
        cv.blob(
            lambda k, off: _ellipse(at + off, 0.2 * rx * k, 0.33 * ry * k, up, 12), 0.2 * rx, _shade(o.skin, 0.9), label
        )

    side_ears = [n for n in ("left_ear", "right_ear") if pl.shows(n) and pl.facing(n) <= 0.25]
    near_ears = [n for n in ("left_ear", "right_ear") if pl.shows(n) and pl.facing(n) > 0.25]
    for name in side_ears:
        ear(name)
    cv.blob(lambda k, off: _ellipse(c + off, rx * k, ry * k, up), rx, o.skin if o.bald else o.hair, label)
    if face_depth > -0.35:
        fc = c + 0.5 * rx * face_dir - 0.14 * ry * up
        fw = rx * (0.5 + 0.4 * max(face_depth, 0.0))
        cv.blob(lambda k, off: _ellipse(fc + off, fw * k, 0.8 * ry * k, up), fw, o.skin, label)
    for name in near_ears:
        ear(name)
    if pl.shows("nose"):
        nose_r = max(0.13 * rx, 0.6)
        root, tip = pl.p2["nose_root"], pl.p2["nose"]
        _fill(cv.labels, _capsule(root, tip, nose_r, nose_r), label, aa=False)
        _fill(cv.image, _capsule(root, tip, nose_r, 0.9 * nose_r), _shade(o.skin, 0.8))
    if face_depth > 0.2:
        mouth = c + 0.6 * rx * face_dir - 0.5 * ry * up
        half = np.array([-up[1], up[0]]) * 0.25 * rx * max(face_depth, 0.3)
        cv2.line(cv.image, _point(mouth - half), _point(mouth + half), (120, 40, 40), 1, cv2.LINE_AA, _SHIFT)
    for name in ("left_eye", "right_eye"):
        if pl.shows(name):
            at = pl.p2[name]
            if rx > 6:
                _fill(cv.image, _ellipse(at, 0.17 * rx, 0.11 * ry, up, 12), (245, 245, 245))
            _fill(cv.image, _ellipse(at, max(0.09 * rx, 0.55), max(0.08 * ry, 0.55), up, 10), (25, 20, 20))


@dataclass(frozen=True)
class _Segment:
    """A limb segment between two side-prefixed points: radii at both ends (body units, times
    girth), the (left, right) parts, and a depth bias that puts arms over the trunk and legs
    under it where depths tie."""

    start: str
    end: str
    radii: tuple[float, float]
    parts: tuple[_Part, _Part]
    bias: float


_SEGMENTS = (
    _Segment("shoulder", "elbow", (0.031, 0.024), (_Part.L_UPPER_ARM, _Part.R_UPPER_ARM), 0.012),
    _Segment("elbow", "wrist", (0.023, 0.018), (_Part.L_FOREARM, _Part.R_FOREARM), 0.014),
    _Segment("wrist", "hand", (0.02, 0.017), (_Part.L_HAND, _Part.R_HAND), 0.016),
    _Segment("hip", "knee", (0.052, 0.037), (_Part.L_THIGH, _Part.R_THIGH), -0.01),
    _Segment("knee", "ankle", (0.036, 0.024), (_Part.L_SHANK, _Part.R_SHANK), -0.008),
    _Segment("heel", "toe", (0.024, 0.02), (_Part.L_FOOT, _Part.R_FOOT), -0.006),
)


def _part_color(o: Outfit, part: _Part) -> _Color:
    if part in (_Part.L_UPPER_ARM, _Part.R_UPPER_ARM, _Part.TORSO):
        return o.shirt
    if part in (_Part.L_FOREARM, _Part.R_FOREARM):
        return o.shirt if o.long_sleeves else o.skin
    if part in (_Part.L_THIGH, _Part.R_THIGH):
        return o.pants
    if part in (_Part.L_SHANK, _Part.R_SHANK):
        return o.pants if o.long_pants else o.skin
    if part in (_Part.L_FOOT, _Part.R_FOOT):
        return o.shoes
    return o.skin


def _draw_torso(cv: _Canvas, pl: _Placed, label: int) -> None:
    """Shirt and pelvis polygons, with a V-neck when the chest faces the viewer."""
    b, o, v = pl.figure.build, pl.figure.outfit, pl.view
    size = 0.5 * b.shoulder_half * v.scale
    for poly, color in ((_torso_outline(pl, -1.0, 0.1), o.pants), (_torso_outline(pl, 0.05, 2.0), o.shirt)):
        centre = poly.mean(axis=0)
        cv.blob(lambda k, off, poly=poly, centre=centre: centre + off + k * (poly - centre), size, color, label)
    chest = v.depth(pl.skel.torso @ np.array([0.0, 0.0, 1.0]))
    if chest > 0.3:
        neck, pelvis = pl.p2["neck"], pl.p2["pelvis"]
        spine = pelvis - neck
        at = neck + v.direction(pl.skel.torso @ np.array([0.0, 0.0, 0.06 * b.girth])) * v.scale
        across = _unit(np.array([-spine[1], spine[0]]), (1.0, 0.0)) * 0.3 * b.shoulder_half * v.scale * chest
        _fill(cv.image, np.array([at + across, at + 0.16 * spine, at - across]), o.skin)


def _draw_person(cv: _Canvas, pl: _Placed, index: int) -> None:
    """Draw one person's parts far to near into the image and the label map."""
    b, o, v = pl.figure.build, pl.figure.outfit, pl.view
    r = v.scale * b.girth
    base = 1 + index * _PARTS_PER_PERSON
    p, dep = pl.p2, pl.depth
    jobs: list[tuple[float, Callable[[], None]]] = []
    for seg in _SEGMENTS:
        for side, part in zip(("left", "right"), seg.parts, strict=True):
            a, c = f"{side}_{seg.start}", f"{side}_{seg.end}"

            def draw(a: str = a, c: str = c, part: _Part = part, seg: _Segment = seg) -> None:
                cv.limb(p[a], p[c], seg.radii[0] * r, seg.radii[1] * r, _part_color(o, part), base + part)

            jobs.append((0.5 * (dep[a] + dep[c]) + seg.bias, draw))
    neck_top = p["head"] + v.direction(pl.skel.head @ np.array([0.0, -0.6 * b.head_ry, 0.0])) * v.scale
    jobs.append(
        (dep["neck"] - 0.03, lambda: cv.limb(p["neck"], neck_top, 0.028 * r, 0.025 * r, o.skin, base + _Part.NECK))
    )
    jobs.append((dep["pelvis"], lambda: _draw_torso(cv, pl, base + _Part.TORSO)))
    jobs.append((dep["head"] + 0.04, lambda: _draw_head(cv, pl, base + _Part.HEAD)))
    for _, job in sorted(jobs, key=lambda j: j[0]):
        job()
