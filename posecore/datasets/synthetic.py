"""The embedded synthetic COCO-17 person-keypoint dataset: a pure, seeded generator.

Each person is an articulated pseudo-3-D figure in body units (standing height = 1; X is
the person's left, Y up, Z the way they face) with human proportions, posed within
anatomical joint limits (standing, walking, running, gesturing, sitting, crouching), turned
by a yaw angle (0 faces the viewer, so the person's left is on the image right; pi shows
the back) and projected orthographically. Parts are drawn far to near as shaded tapered
limbs, a torso polygon and a head with hair, eyes, ears and nose, over a cluttered
background, then occluders and a lighting/colour jitter are applied.

Labels follow COCO, in the project's pixel convention: pixel centres at integer coordinates,
and "the image" is the hull of the pixel centres, ``[0, W - 1] x [0, H - 1]`` (where MMPose
clips boxes).

- ``v=2``: in the image and the pixel under it shows the part the keypoint belongs to;
- ``v=1``: in the image but covered by the person's own torso or limbs, another person or
  an occluder;
- ``v=0`` with ``x = y = 0``: outside the image, or a face feature on the far side of the
  head (eyes and nose seen from behind, the far eye and ear in profile), which COCO
  annotators leave unlabelled.

``bbox`` (xywh) is the box of the person's visible silhouette (pixels not covered by
anything in front, each a unit square about its centre) clipped to the image, so it holds
every ``v=2`` keypoint; ``area`` is the silhouette's area inside the image (its pixel count
with pixels on the border counted by the half inside), like a COCO segmentation area, so
``area <= w * h``. A person with no visible pixel is not annotated; one that is visible but
has no labelled keypoint is kept with ``num_keypoints`` 0 (COCO keeps such people; the
loader and the evaluator ignore them).

Every image comes from its own generator seeded by ``(seed, split, index)``, so the output
is byte-identical whatever the number of worker processes.
"""

from __future__ import annotations

import colorsys
import math
import multiprocessing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import IntEnum
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from posecore.config import SynthParams
from posecore.io import atomic_output_dir, atomic_write_json
from posecore.metainfo import load_meta

__all__ = [
    "SPLITS",
    "Build",
    "Figure",
    "LimbPose",
    "Outfit",
    "PersonAnnotation",
    "Pose",
    "SceneOptions",
    "generate",
    "image_rng",
    "render_image",
    "sample_figure",
]

SPLITS = ("train", "val")
GENERATOR_VERSION = "2"
_JPEG_QUALITY = 90

_Color = tuple[float, float, float]

_SHIFT = 4
_ONE = 1 << _SHIFT
_OCCLUDER = np.iinfo(np.uint16).max
_PARTS_PER_PERSON = 16
_DEG = math.pi / 180.0


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


_OWNERS: dict[str, tuple[_Part, ...]] = {
    "nose": (_Part.HEAD,),
    "left_eye": (_Part.HEAD,),
    "right_eye": (_Part.HEAD,),
    "left_ear": (_Part.HEAD,),
    "right_ear": (_Part.HEAD,),
    "left_shoulder": (_Part.TORSO, _Part.L_UPPER_ARM),
    "right_shoulder": (_Part.TORSO, _Part.R_UPPER_ARM),
    "left_elbow": (_Part.L_UPPER_ARM, _Part.L_FOREARM),
    "right_elbow": (_Part.R_UPPER_ARM, _Part.R_FOREARM),
    "left_wrist": (_Part.L_FOREARM, _Part.L_HAND),
    "right_wrist": (_Part.R_FOREARM, _Part.R_HAND),
    "left_hip": (_Part.TORSO, _Part.L_THIGH),
    "right_hip": (_Part.TORSO, _Part.R_THIGH),
    "left_knee": (_Part.L_THIGH, _Part.L_SHANK),
    "right_knee": (_Part.R_THIGH, _Part.R_SHANK),
    "left_ankle": (_Part.L_SHANK, _Part.L_FOOT),
    "right_ankle": (_Part.R_SHANK, _Part.R_FOOT),
}
_FACE_FACING = {"nose": -0.1, "left_eye": 0.15, "right_eye": 0.15, "left_ear": -0.35, "right_ear": -0.35}
"""A face feature is visible when its outward normal's depth component exceeds this."""
_TORSO_HIDES = -0.6
"""A shoulder or hip is behind the trunk when its outward normal's depth component is below this."""


# ---------------------------------------------------------------------------------------
# Figure state
# ---------------------------------------------------------------------------------------


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


@dataclass(frozen=True, eq=False)
class PersonAnnotation:
    """One annotated person.

    keypoints (17, 3) float64 rows ``[x, y, v]`` in COCO-17 order, pixels (centres at
    integers), rounded to 0.01; v=0 rows are all zero. bbox ``(x, y, w, h)`` float pixels of
    the visible silhouette; area its area in square pixels; mask (H, W) bool, the silhouette
    itself (empty in what :func:`generate`'s workers return).
    """

    keypoints: np.ndarray
    bbox: tuple[float, float, float, float]
    area: float
    mask: np.ndarray = field(repr=False)

    @property
    def num_keypoints(self) -> int:
        return int(np.count_nonzero(self.keypoints[:, 2] > 0))

    def to_coco(self, ann_id: int, image_id: int) -> dict[str, Any]:
        kps: list[float | int] = []
        for x, y, v in self.keypoints.tolist():
            kps += [x, y, int(v)] if v > 0 else [0, 0, 0]
        return {
            "id": ann_id,
            "image_id": image_id,
            "category_id": 1,
            "bbox": [float(b) for b in self.bbox],
            "keypoints": kps,
            "num_keypoints": self.num_keypoints,
            "area": round(float(self.area), 2),
            "iscrowd": 0,
        }


# ---------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------
# 3-D skeleton
# ---------------------------------------------------------------------------------------


def _rx(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


_DOWN = np.array([0.0, -1.0, 0.0])


def _limb_dirs(frame: np.ndarray, limb: LimbPose, side: int, knee: bool) -> tuple[np.ndarray, np.ndarray]:
    """Unit directions (3,) of the upper and lower segment in body coordinates."""
    upper = frame @ _rz(side * limb.abduction) @ _rx(-limb.flexion)
    b = limb.bend
    local = np.array([side * math.sin(limb.twist) * math.sin(b), -math.cos(b), math.cos(limb.twist) * math.sin(b)])
    if knee:
        local[2] = -local[2]
    return upper @ _DOWN, upper @ local


@dataclass(frozen=True)
class _Skeleton:
    """Named 3-D points (3,) in body units relative to the pelvis, the torso and head
    frames (3, 3), and outward unit normals (3,) of the points that can face away."""

    points: dict[str, np.ndarray]
    torso: np.ndarray
    head: np.ndarray
    normals: dict[str, np.ndarray]


def _skeleton(fig: Figure) -> _Skeleton:
    b, p = fig.build, fig.pose
    torso = _rz(p.side_lean) @ _rx(p.lean) @ _ry(p.twist)
    head = torso @ _ry(p.head_yaw) @ _rx(p.head_pitch) @ _rz(p.head_roll)
    pts: dict[str, np.ndarray] = {"pelvis": np.zeros(3)}
    neck = torso @ np.array([0, b.spine, 0])
    pts["neck"] = neck
    pts["head"] = neck + head @ np.array([0, b.neck + 0.8 * b.head_ry, 0.01])
    rz = 1.1 * b.head_rx
    normals: dict[str, np.ndarray] = {}
    for side, name in ((1, "left"), (-1, "right")):
        shoulder = neck + torso @ np.array([side * b.shoulder_half, -0.012, 0])
        up, low = _limb_dirs(torso, p.arms[side < 0], side, knee=False)
        elbow = shoulder + b.upper_arm * up
        wrist = elbow + b.forearm * low
        pts[f"{name}_shoulder"], pts[f"{name}_elbow"], pts[f"{name}_wrist"] = shoulder, elbow, wrist
        pts[f"{name}_hand"] = wrist + b.hand * low
        normals[f"{name}_shoulder"] = torso @ np.array([side, 0.0, 0.0])

        hip = np.array([side * b.hip_half, 0.0, 0.0])
        up, low = _limb_dirs(np.eye(3), p.legs[side < 0], side, knee=True)
        knee = hip + b.thigh * up
        ankle = knee + b.shank * low
        pts[f"{name}_hip"], pts[f"{name}_knee"], pts[f"{name}_ankle"] = hip, knee, ankle
        normals[f"{name}_hip"] = np.array([side, 0.0, 0.0])
        toe_out = p.legs[side < 0].twist
        fwd = np.array([side * math.sin(toe_out), -0.25, math.cos(toe_out)])
        pts[f"{name}_heel"] = ankle + np.array([0, -0.7 * b.ankle_height, -0.025])
        pts[f"{name}_toe"] = ankle + b.foot * fwd / np.linalg.norm(fwd) + np.array([0, -0.3 * b.ankle_height, 0])

        eye = np.array([side * 0.36, 0.1, 0.92])
        pts[f"{name}_eye"] = pts["head"] + head @ (eye * (b.head_rx, b.head_ry, rz))
        normals[f"{name}_eye"] = head @ (eye / np.linalg.norm(eye))
        ear = np.array([side * 0.97, -0.05, -0.1])
        pts[f"{name}_ear"] = pts["head"] + head @ (ear * (b.head_rx, b.head_ry, rz))
        normals[f"{name}_ear"] = head @ (ear / np.linalg.norm(ear))
    pts["nose"] = pts["head"] + head @ np.array([0, -0.22 * b.head_ry, 1.08 * rz])
    pts["nose_root"] = pts["head"] + head @ np.array([0, -0.02 * b.head_ry, 0.8 * rz])
    normals["nose"] = head @ np.array([0.0, -0.15, 1.0])
    return _Skeleton(pts, torso, head, normals)


# ---------------------------------------------------------------------------------------
# Projection and drawing primitives
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _View:
    """Orthographic camera: image = origin + scale * R2(roll) @ (cam_x, -cam_y) pixels and
    depth = cam_z (body units, towards the viewer), where cam = Ry(yaw) @ body point."""

    yaw: float
    scale: float
    origin: tuple[float, float]
    roll: float = 0.0

    @cached_property
    def _image(self) -> np.ndarray:
        cr, sr = math.cos(self.roll), math.sin(self.roll)
        return self.scale * np.array([[cr, sr], [sr, -cr]]) @ _ry(self.yaw)[:2]

    @cached_property
    def _depth(self) -> np.ndarray:
        return _ry(self.yaw)[2]

    def project(self, v: np.ndarray) -> np.ndarray:
        """Image position (..., 2) of body points (..., 3)."""
        return v @ self._image.T + self.origin

    def direction(self, v: np.ndarray) -> np.ndarray:
        """Image-plane direction (2,) of a body-frame vector, in units of body length."""
        return self._image @ v / self.scale

    def depth(self, v: np.ndarray) -> float:
        return float(self._depth @ v)

    def depths(self, v: np.ndarray) -> np.ndarray:
        """Depths (N,) of body points (N, 3)."""
        return v @ self._depth


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


# ---------------------------------------------------------------------------------------
# Drawing a person
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Placed:
    """A figure with its camera: 2-D points (pixels), depths and per-keypoint facing."""

    figure: Figure
    view: _View
    skel: _Skeleton
    p2: dict[str, np.ndarray]
    depth: dict[str, float]

    @classmethod
    def make(cls, figure: Figure, view: _View) -> _Placed:
        sk = _skeleton(figure)
        names = list(sk.points)
        pts = np.array([sk.points[k] for k in names])
        xy = view.project(pts)
        z = view.depths(pts)
        return cls(figure, view, sk, dict(zip(names, xy, strict=True)), dict(zip(names, z.tolist(), strict=True)))

    def moved(self, dx: float, dy: float) -> _Placed:
        view = _View(
            self.view.yaw, self.view.scale, (self.view.origin[0] + dx, self.view.origin[1] + dy), self.view.roll
        )
        shift = np.array([dx, dy])
        return _Placed(self.figure, view, self.skel, {k: v + shift for k, v in self.p2.items()}, self.depth)

    def facing(self, name: str) -> float:
        """Depth component of the outward normal at ``name`` (1: faces the viewer)."""
        return self.view.depth(self.skel.normals[name])

    def shows(self, name: str) -> bool:
        """Whether face feature ``name`` is on the near side of the head (drawn and labelled)."""
        return self.facing(name) > _FACE_FACING[name]

    @cached_property
    def extent(self) -> tuple[float, float, float, float]:
        """Rough 2-D box (x0, y0, x1, y1) of the drawn figure in pixels."""
        pts = np.array(list(self.p2.values()))
        pad = 0.07 * self.view.scale
        lo, hi = pts.min(axis=0) - pad, pts.max(axis=0) + pad
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


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


# ---------------------------------------------------------------------------------------
# Scene: background, placement, occluders, lighting
# ---------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------
# Annotation
# ---------------------------------------------------------------------------------------


@cache
def _keypoint_names() -> tuple[str, ...]:
    names = tuple(load_meta("coco").keypoint_names)
    missing = set(names) ^ set(_OWNERS)
    if missing:
        raise ValueError(f"the coco meta and the synthetic generator disagree on keypoints: {sorted(missing)}")
    return names


def _annotate(pl: _Placed, index: int, labels: np.ndarray) -> PersonAnnotation | None:
    h, w = labels.shape
    base = 1 + index * _PARTS_PER_PERSON
    mask = (labels >= base) & (labels < base + _PARTS_PER_PERSON)
    if not mask.any():
        return None
    names = _keypoint_names()
    kps = np.zeros((len(names), 3))
    for k, name in enumerate(names):
        x, y = np.round(pl.p2[name], 2)
        if not (0 <= x <= w - 1 and 0 <= y <= h - 1):
            continue
        if name in _FACE_FACING and not pl.shows(name):
            continue
        hidden = name.endswith(("shoulder", "hip")) and pl.facing(name) < _TORSO_HIDES
        label = int(labels[int(round(y)), int(round(x))])
        owned = label - base in _OWNERS[name] and label >= base
        kps[k] = (x, y, 2 if owned and not hidden else 1)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    x0, x1 = max(cols[0] - 0.5, 0.0), min(cols[-1] + 0.5, w - 1.0)
    y0, y1 = max(rows[0] - 0.5, 0.0), min(rows[-1] + 0.5, h - 1.0)
    area = float(_edge_weights(h) @ mask.astype(np.float32) @ _edge_weights(w))
    return PersonAnnotation(kps, (float(x0), float(y0), float(x1 - x0), float(y1 - y0)), area, mask)


@cache
def _edge_weights(n: int) -> np.ndarray:
    """How much of each pixel's square lies in [0, n - 1]: (n,) float32, 0.5 at both ends."""
    w = np.ones(n, np.float32)
    w[[0, -1]] = 0.5
    return w


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


# ---------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    """Image ``index`` of ``split``, written to ``root / images / split / file_name``."""

    params: SynthParams
    split: str
    index: int
    root: Path

    @property
    def file_name(self) -> str:
        """Relative to the split's image folder, as COCO's ``file_name`` is to ``train2017/``."""
        return f"{self.index:06d}.jpg"

    @property
    def path(self) -> Path:
        return self.root / "images" / self.split / self.file_name


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of image ``index`` of ``split``; independent of every other image."""
    return np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, SPLITS.index(split), index])


def _render_job(job: _Job) -> list[PersonAnnotation]:
    p = job.params
    options = SceneOptions(occluders=p.occluders)
    image, anns = render_image(
        image_rng(p.seed, job.split, job.index), p.width, p.height, p.min_people, p.max_people, options
    )
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f"JPEG encoding of {job.split}/{job.file_name} failed")
    job.path.write_bytes(buf.tobytes())
    return [PersonAnnotation(a.keypoints, a.bbox, a.area, np.zeros((0, 0), bool)) for a in anns]


def generate(params: SynthParams, out_dir: Path) -> dict[str, dict[str, int]]:
    """Write the dataset to ``out_dir`` atomically and return ``{split: {"images": n, "annotations": m}}``.

    Layout: ``annotations/{train,val}.json`` (COCO keypoints) and
    ``images/{train,val}/NNNNNN.jpg`` (JPEG quality 90); ``file_name`` is relative to the
    split's image folder ``images/<split>/``, as in COCO. Image and annotation ids are unique across both splits (train first).
    ``params.workers`` > 1 renders in that many forked processes; the bytes written do not
    depend on it.
    """
    if params.min_people > params.max_people:
        raise ValueError(f"min_people ({params.min_people}) must be <= max_people ({params.max_people})")
    sizes = {"train": params.n_train, "val": params.n_val}
    category = load_meta("coco").coco_category()
    _keypoint_names()
    counts: dict[str, dict[str, int]] = {}
    with atomic_output_dir(out_dir) as tmp:
        for split in SPLITS:
            (tmp / "images" / split).mkdir(parents=True)
        jobs = [_Job(params, split, i, tmp) for split in SPLITS for i in range(sizes[split])]
        if params.workers > 1:
            with multiprocessing.get_context("fork").Pool(params.workers) as pool:
                results = pool.map(_render_job, jobs, chunksize=max(1, min(32, len(jobs) // (4 * params.workers))))
        else:
            results = [_render_job(job) for job in jobs]
        image_id, ann_id = 0, 0
        for split in SPLITS:
            images, annotations = [], []
            for job, anns in zip(jobs, results, strict=True):
                if job.split != split:
                    continue
                image_id += 1
                images.append(
                    {"id": image_id, "file_name": job.file_name, "width": params.width, "height": params.height}
                )
                for a in anns:
                    ann_id += 1
                    annotations.append(a.to_coco(ann_id, image_id))
            info = {
                "description": f"posecore synthetic COCO-17 person keypoints ({split})",
                "version": GENERATOR_VERSION,
                "seed": params.seed,
            }
            coco = {"info": info, "images": images, "annotations": annotations, "categories": [category]}
            atomic_write_json(tmp / "annotations" / f"{split}.json", coco)
            counts[split] = {"images": len(images), "annotations": len(annotations)}
    return counts
