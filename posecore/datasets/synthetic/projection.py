"""From a figure to the image plane: the 3-D skeleton, the orthographic camera, a placed person.

:func:`_skeleton` poses a :class:`~posecore.datasets.synthetic.figure.Figure` into named 3-D
points and outward normals (body units, pelvis at the origin); :class:`_View` turns it by the
person's yaw, scales, rolls and moves it into pixels; :class:`_Placed` holds the result that
drawing and annotation read (2-D points, depths, which face features face the viewer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from posecore.datasets.synthetic.figure import Figure, LimbPose

_FACE_FACING = {"nose": -0.1, "left_eye": 0.15, "right_eye": 0.15, "left_ear": -0.35, "right_ear": -0.35}
"""A face feature is visible when its outward normal's depth component exceeds this."""


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
