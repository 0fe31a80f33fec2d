"""What a synthetic person is, and how one is drawn at random: proportions, clothes, pose, facing.

A :class:`Figure` is pure state in body units (standing height = 1; X is the person's left,
Y up, Z the way they face); :func:`sample_figure` draws one from a seeded generator. Poses
(standing, walking, running, gesturing, sitting, crouching) keep every joint within
anatomical limits; arm gestures (hanging, overhead, pointing, waving, ...) are named angle
ranges in ``_GESTURES``. The order of the draws is part of the output: changing it changes
every image for a given seed (bump ``GENERATOR_VERSION`` in ``writer.py`` if you do).
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import numpy as np

from posecore.datasets.synthetic.raster import _Color

_DEG = math.pi / 180.0


@dataclass(frozen=True)
class Build:
    """Body proportions in units of standing height (after Drillis & Contini)."""

    shoulder_half: float = 0.11
    hip_half: float = 0.08
    spine: float = 0.29
    neck: float = 0.05
    head_rx: float = 0.05
    head_ry: float = 0.066
    upper_arm: float = 0.175
    forearm: float = 0.15
    hand: float = 0.075
    thigh: float = 0.245
    shank: float = 0.245
    foot: float = 0.14
    ankle_height: float = 0.04
    girth: float = 1.0


@dataclass(frozen=True)
class Outfit:
    """RGB colours (0-255) of a person's skin and clothes."""

    skin: _Color
    shirt: _Color
    pants: _Color
    shoes: _Color
    hair: _Color
    long_sleeves: bool
    long_pants: bool
    bald: bool


@dataclass(frozen=True)
class LimbPose:
    """One limb's joint angles in radians.

    ``flexion`` raises the upper segment forward, ``abduction`` sideways away from the body;
    ``bend`` flexes the elbow (forearm forward) or knee (shank backward); ``twist`` rotates
    the hinge about the upper segment (positive: the lower segment swings outward).
    """

    flexion: float = 0.0
    abduction: float = 0.0
    bend: float = 0.0
    twist: float = 0.0


@dataclass(frozen=True)
class Pose:
    """Whole-body pose in radians: trunk lean (forward, sideways), shoulder-line twist, head
    yaw/pitch/roll relative to the trunk, and the four limbs as (left, right)."""

    lean: float = 0.0
    side_lean: float = 0.0
    twist: float = 0.0
    head_yaw: float = 0.0
    head_pitch: float = 0.0
    head_roll: float = 0.0
    arms: tuple[LimbPose, LimbPose] = (LimbPose(), LimbPose())
    legs: tuple[LimbPose, LimbPose] = (LimbPose(), LimbPose())
    seated: bool = False


@dataclass(frozen=True)
class Figure:
    """A person: proportions, clothes, pose and ``yaw`` (radians; 0 faces the viewer, pi/2
    faces the image right, pi shows the back)."""

    build: Build
    outfit: Outfit
    pose: Pose
    yaw: float


_SKIN = ((255, 224, 196), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 56, 36))
_HAIR = ((20, 16, 14), (60, 40, 25), (110, 70, 35), (200, 160, 90), (150, 150, 150), (140, 50, 20))
_PANTS = ((40, 60, 110), (30, 30, 35), (150, 130, 95), (70, 70, 75), (90, 40, 40))


def _hsv(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> _Color:
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(*sat), rng.uniform(*val))
    return (255 * r, 255 * g, 255 * b)


def _jitter(rng: np.random.Generator, color: Iterable[float], amount: float) -> _Color:
    c = np.clip(np.asarray(list(color), dtype=np.float64) + rng.uniform(-amount, amount, 3), 0, 255)
    return (float(c[0]), float(c[1]), float(c[2]))


def _sample_outfit(rng: np.random.Generator) -> Outfit:
    pants = (
        _jitter(rng, _PANTS[rng.integers(len(_PANTS))], 20) if rng.random() < 0.6 else _hsv(rng, (0.2, 0.8), (0.2, 0.8))
    )
    return Outfit(
        skin=_jitter(rng, _SKIN[rng.integers(len(_SKIN))], 12),
        shirt=_hsv(rng, (0.15, 0.95), (0.25, 0.98)),
        pants=pants,
        shoes=_jitter(rng, (40, 35, 30), 30),
        hair=_jitter(rng, _HAIR[rng.integers(len(_HAIR))], 15),
        long_sleeves=bool(rng.random() < 0.5),
        long_pants=bool(rng.random() < 0.7),
        bald=bool(rng.random() < 0.08),
    )


def _sample_build(rng: np.random.Generator) -> Build:
    base = Build()
    arm = rng.uniform(0.95, 1.05)
    leg = rng.uniform(0.95, 1.05)
    head = rng.uniform(0.92, 1.12)
    width = rng.uniform(0.9, 1.12)
    return Build(
        shoulder_half=base.shoulder_half * width,
        hip_half=base.hip_half * rng.uniform(0.92, 1.12),
        spine=base.spine * rng.uniform(0.95, 1.05),
        neck=base.neck * rng.uniform(0.8, 1.2),
        head_rx=base.head_rx * head,
        head_ry=base.head_ry * head,
        upper_arm=base.upper_arm * arm,
        forearm=base.forearm * arm,
        hand=base.hand * arm,
        thigh=base.thigh * leg,
        shank=base.shank * leg,
        foot=base.foot,
        ankle_height=base.ankle_height,
        girth=rng.uniform(0.85, 1.25),
    )


_Span = tuple[float, float]
_ARM_LIMITS: tuple[_Span, _Span, _Span, _Span] = ((-60, 180), (-15, 180), (0, 150), (-90, 90))
_LEG_LIMITS: tuple[_Span, _Span, _Span, _Span] = ((-30, 130), (-15, 50), (0, 155), (-30, 30))
_GESTURES: dict[str, tuple[_Span, _Span, _Span, _Span]] = {
    "hanging": ((-15, 25), (5, 22), (0, 35), (-30, 20)),
    "overhead": ((100, 175), (5, 45), (0, 50), (-30, 30)),
    "sideways": ((-15, 30), (60, 110), (0, 70), (-20, 60)),
    "hand_on_hip": ((-25, 0), (35, 55), (85, 115), (-85, -60)),
    "pointing": ((50, 100), (-5, 35), (0, 25), (-20, 20)),
    "waving": ((0, 30), (55, 100), (70, 125), (60, 90)),
    "folded": ((5, 35), (5, 25), (80, 120), (-80, -45)),
}


def _limb(rng: np.random.Generator, limits: tuple[_Span, _Span, _Span, _Span], *spans: _Span) -> LimbPose:
    """Angles drawn uniformly from ``spans`` (flexion, abduction, bend, twist; degrees),
    clipped to the joint's anatomical ``limits``."""
    values = [min(max(rng.uniform(*span), lo), hi) * _DEG for span, (lo, hi) in zip(spans, limits, strict=True)]
    return LimbPose(*values)


def _arm(rng: np.random.Generator, gesture: str) -> LimbPose:
    return _limb(rng, _ARM_LIMITS, *_GESTURES[gesture])


def _gesture(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.array([weights[n] for n in names])
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _deg(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi)) * _DEG


def _standing(rng: np.random.Generator) -> Pose:
    legs = [_limb(rng, _LEG_LIMITS, (-8, 12), (0, 12), (0, 12), (-10, 20)) for _ in range(2)]
    weights = {"hanging": 12, "overhead": 1, "sideways": 1, "hand_on_hip": 2, "pointing": 1, "waving": 1, "folded": 2}
    arms = [_arm(rng, _gesture(rng, weights)) for _ in range(2)]
    return Pose(
        lean=_deg(rng, -6, 8),
        side_lean=_deg(rng, -5, 5),
        twist=_deg(rng, -12, 12),
        arms=(arms[0], arms[1]),
        legs=(legs[0], legs[1]),
    )


def _walking(rng: np.random.Generator, run: bool) -> Pose:
    amp = rng.uniform(30, 55) if run else rng.uniform(15, 35)
    phase = rng.uniform(-1, 1)
    legs, arms = [], []
    for hip in (amp * phase, -amp * phase):
        knee = (30, 110) if run and hip < 0 else ((5, 40) if hip < 0 else (0, 25))
        legs.append(_limb(rng, _LEG_LIMITS, (hip - 3, hip + 3), (0, 8), knee, (-5, 15)))
        swing = -0.9 * hip
        elbow = (70, 105) if run else (5, 45)
        arms.append(_limb(rng, _ARM_LIMITS, (swing - 6, swing + 6), (5, 18), elbow, (-25, 10)))
    lean = _deg(rng, 5, 18) if run else _deg(rng, -3, 8)
    return Pose(
        lean=lean,
        side_lean=_deg(rng, -4, 4),
        twist=_deg(rng, -12, 12),
        arms=(arms[0], arms[1]),
        legs=(legs[0], legs[1]),
    )


def _gesturing(rng: np.random.Generator) -> Pose:
    legs = [_limb(rng, _LEG_LIMITS, (-10, 15), (0, 25), (0, 20), (-10, 20)) for _ in range(2)]
    weights = {
        "hanging": 2,
        "overhead": 4,
        "sideways": 3,
        "hand_on_hip": 2.5,
        "pointing": 2,
        "waving": 2,
        "folded": 1.5,
    }
    left = _gesture(rng, weights)
    right = left if rng.random() < 0.3 else _gesture(rng, weights)
    arms = (_arm(rng, left), _arm(rng, right))
    return Pose(
        lean=_deg(rng, -8, 10), side_lean=_deg(rng, -8, 8), twist=_deg(rng, -15, 15), arms=arms, legs=(legs[0], legs[1])
    )


def _sitting(rng: np.random.Generator) -> Pose:
    legs = [_limb(rng, _LEG_LIMITS, (75, 100), (0, 20), (70, 105), (-10, 15)) for _ in range(2)]
    arms = [
        _arm(rng, "folded") if rng.random() < 0.5 else _limb(rng, _ARM_LIMITS, (0, 50), (5, 20), (20, 90), (-40, 0))
        for _ in range(2)
    ]
    return Pose(
        lean=_deg(rng, -10, 15),
        side_lean=_deg(rng, -5, 5),
        twist=_deg(rng, -10, 10),
        arms=(arms[0], arms[1]),
        legs=(legs[0], legs[1]),
        seated=True,
    )


def _crouching(rng: np.random.Generator) -> Pose:
    legs = [_limb(rng, _LEG_LIMITS, (95, 130), (8, 30), (100, 145), (-5, 20)) for _ in range(2)]
    arms = [_limb(rng, _ARM_LIMITS, (10, 75), (5, 30), (10, 80), (-40, 10)) for _ in range(2)]
    return Pose(
        lean=_deg(rng, 20, 50),
        side_lean=_deg(rng, -6, 6),
        twist=_deg(rng, -10, 10),
        arms=(arms[0], arms[1]),
        legs=(legs[0], legs[1]),
    )


_POSES: tuple[tuple[float, Callable[[np.random.Generator], Pose]], ...] = (
    (0.22, _standing),
    (0.20, lambda rng: _walking(rng, run=False)),
    (0.08, lambda rng: _walking(rng, run=True)),
    (0.24, _gesturing),
    (0.12, _sitting),
    (0.14, _crouching),
)


def _sample_pose(rng: np.random.Generator) -> Pose:
    """A random whole-body pose: standing, walking, running, gesturing, sitting or crouching,
    with the head turned, nodded and tilted a little."""
    weights = np.array([w for w, _ in _POSES])
    body = _POSES[int(rng.choice(len(_POSES), p=weights / weights.sum()))][1](rng)
    return replace(body, head_yaw=_deg(rng, -35, 35), head_pitch=_deg(rng, -15, 20), head_roll=_deg(rng, -12, 12))


def _sample_yaw(rng: np.random.Generator) -> float:
    """Facing: mostly towards the viewer, often in profile, sometimes from behind or anywhere."""
    kind = rng.choice(4, p=[0.45, 0.3, 0.15, 0.1])
    if kind == 0:
        return float(rng.normal(0, 22)) * _DEG
    if kind == 1:
        return float(rng.choice([-90, 90]) + rng.normal(0, 20)) * _DEG
    if kind == 2:
        return float(180 + rng.normal(0, 22)) * _DEG
    return float(rng.uniform(-math.pi, math.pi))


def sample_figure(rng: np.random.Generator, yaw: float | None = None) -> Figure:
    build = _sample_build(rng)
    outfit = _sample_outfit(rng)
    pose = _sample_pose(rng)
    return Figure(build, outfit, pose, _sample_yaw(rng) if yaw is None else yaw)
