"""The articulated H36M-17 body of :mod:`.motion3d`: bone lengths, joint angles and their limits,
forward kinematics.

The body frame has x forward (the way the person faces), y to the person's left and z up, in
millimetres. The world shares its z axis (z up, the ground at z = 0), so a root yaw turns the
person about the vertical. Every joint angle is in radians; positive means, for each group:

* ``root``: ``yaw`` (heading about z, unlimited), ``pitch`` (pelvis tilted forward), ``roll``
  (tilted to the left);
* ``spine``, ``thorax``: ``bend`` forward, ``side`` to the left, ``twist`` to the left;
* ``neck``: ``nod`` forward, ``turn`` to the left;
* ``hip``, ``shoulder`` (one per side, keys ``l_`` / ``r_``): ``flex`` (limb forward), ``abd``
  (limb away from the body), ``twist`` (about the limb, mirrored between the sides);
* ``knee``: ``flex`` (shin backward); ``elbow``: ``flex`` (forearm forward).

A joint's rotation turns the bones below it: the left hip's angles move the left knee and foot.
Equal angles on both sides give mirror-image limbs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class _Joint:
    """One H36M joint: its parent, the bone from the parent (a length key of :data:`REF_BONES_MM`
    and the rest direction in the parent's body frame) and the angle group that turns its children."""

    name: str
    parent: int
    bone: str
    direction: tuple[float, float, float]
    group: str


#: MMPose's Human3.6M 17 joints, in dataset order (index = position); parents come first.
JOINTS: tuple[_Joint, ...] = (
    _Joint("root", -1, "", (0.0, 0.0, 0.0), "root"),
    _Joint("right_hip", 0, "hip", (0.0, -1.0, 0.0), "hip"),
    _Joint("right_knee", 1, "thigh", (0.0, 0.0, -1.0), "knee"),
    _Joint("right_foot", 2, "shin", (0.0, 0.0, -1.0), ""),
    _Joint("left_hip", 0, "hip", (0.0, 1.0, 0.0), "hip"),
    _Joint("left_knee", 4, "thigh", (0.0, 0.0, -1.0), "knee"),
    _Joint("left_foot", 5, "shin", (0.0, 0.0, -1.0), ""),
    _Joint("spine", 0, "spine", (0.0, 0.0, 1.0), "spine"),
    _Joint("thorax", 7, "chest", (0.0, 0.0, 1.0), "thorax"),
    _Joint("neck_base", 8, "neck", (0.25, 0.0, 1.0), "neck"),
    _Joint("head", 9, "head", (0.1, 0.0, 1.0), ""),
    _Joint("left_shoulder", 8, "shoulder", (0.0, 1.0, -0.15), "shoulder"),
    _Joint("left_elbow", 11, "upper_arm", (0.0, 0.0, -1.0), "elbow"),
    _Joint("left_wrist", 12, "forearm", (0.0, 0.0, -1.0), ""),
    _Joint("right_shoulder", 8, "shoulder", (0.0, -1.0, -0.15), "shoulder"),
    _Joint("right_elbow", 14, "upper_arm", (0.0, 0.0, -1.0), "elbow"),
    _Joint("right_wrist", 15, "forearm", (0.0, 0.0, -1.0), ""),
)
JOINT_NAMES: tuple[str, ...] = tuple(j.name for j in JOINTS)

#: Bone lengths (mm) of a reference person :data:`REF_HEIGHT_MM` tall, close to Human3.6M's subjects.
REF_BONES_MM: dict[str, float] = {
    "hip": 130.0,
    "thigh": 445.0,
    "shin": 445.0,
    "spine": 235.0,
    "chest": 255.0,
    "neck": 115.0,
    "head": 115.0,
    "shoulder": 150.0,
    "upper_arm": 280.0,
    "forearm": 250.0,
}
REF_HEIGHT_MM = 1750.0
ANKLE_HEIGHT_MM = 80.0
"""Height of the foot joint (the ankle) above the ground in the reference person."""

#: Joint limits (degrees) of every angle but the root's yaw; angles are clipped into them.
LIMITS_DEG: dict[str, tuple[float, float]] = {
    "root_pitch": (-20.0, 50.0),
    "root_roll": (-15.0, 15.0),
    "spine_bend": (-20.0, 60.0),
    "spine_side": (-25.0, 25.0),
    "spine_twist": (-35.0, 35.0),
    "thorax_bend": (-15.0, 30.0),
    "thorax_side": (-15.0, 15.0),
    "thorax_twist": (-20.0, 20.0),
    "neck_nod": (-40.0, 60.0),
    "neck_turn": (-70.0, 70.0),
    **{f"{s}_hip_flex": (-30.0, 125.0) for s in "lr"},
    **{f"{s}_hip_abd": (-20.0, 45.0) for s in "lr"},
    **{f"{s}_hip_twist": (-30.0, 40.0) for s in "lr"},
    **{f"{s}_knee_flex": (0.0, 150.0) for s in "lr"},
    **{f"{s}_shoulder_flex": (-50.0, 170.0) for s in "lr"},
    **{f"{s}_shoulder_abd": (-10.0, 160.0) for s in "lr"},
    **{f"{s}_shoulder_twist": (-60.0, 80.0) for s in "lr"},
    **{f"{s}_elbow_flex": (0.0, 145.0) for s in "lr"},
}
ANGLES: tuple[str, ...] = ("root_yaw", *LIMITS_DEG)


@dataclass(frozen=True)
class Build:
    """One subject's body: ``height_mm`` (standing height) and the length (mm) of each bone of
    :data:`REF_BONES_MM`, the same on both sides."""

    height_mm: float
    bones_mm: dict[str, float]

    @property
    def ankle_height_mm(self) -> float:
        return ANKLE_HEIGHT_MM * self.height_mm / REF_HEIGHT_MM


def sample_build(rng: np.random.Generator, height_mm: tuple[float, float], bone_jitter: float) -> Build:
    """A subject ``height_mm`` (lo, hi) tall, each bone scaled by a further factor within
    ``1 +- 2 * bone_jitter`` (left and right alike)."""
    height = float(rng.uniform(*height_mm))
    scale = height / REF_HEIGHT_MM
    jitter = np.clip(rng.normal(0.0, bone_jitter, len(REF_BONES_MM)), -2 * bone_jitter, 2 * bone_jitter)
    bones = {k: float(v * scale * (1.0 + d)) for (k, v), d in zip(REF_BONES_MM.items(), jitter, strict=True)}
    return Build(height, bones)


def clip_to_limits(angles: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``angles`` (radians, each (T,)) clipped into :data:`LIMITS_DEG`."""
    out = dict(angles)
    for key, (lo, hi) in LIMITS_DEG.items():
        if key in out:
            out[key] = np.clip(out[key], np.radians(lo), np.radians(hi))
    return out


def _rot(axis: int, a: np.ndarray) -> np.ndarray:
    """(T,) radians -> (T, 3, 3) rotations about body axis ``axis`` (0 x, 1 y, 2 z)."""
    c, s = np.cos(a), np.sin(a)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r = np.zeros((len(a), 3, 3))
    r[:, axis, axis] = 1.0
    r[:, i, i], r[:, i, j], r[:, j, i], r[:, j, j] = c, -s, s, c
    return r


def _local(joint: _Joint, angles: dict[str, np.ndarray], t: int) -> np.ndarray | None:
    """(T, 3, 3) rotation of ``joint``'s children relative to its parent frame, None for none."""
    g = joint.group
    if not g:
        return None
    side = 1.0 if joint.name.startswith("left_") else -1.0
    key = f"{'l' if side > 0 else 'r'}_{g}" if g in ("hip", "knee", "shoulder", "elbow") else g

    def a(dof: str) -> np.ndarray:
        return angles.get(f"{key}_{dof}", np.zeros(t))

    if g == "root":
        return _rot(2, a("yaw")) @ _rot(1, a("pitch")) @ _rot(0, a("roll"))
    if g in ("spine", "thorax"):
        return _rot(1, a("bend")) @ _rot(0, a("side")) @ _rot(2, a("twist"))
    if g == "neck":
        return _rot(1, a("nod")) @ _rot(2, a("turn"))
    if g in ("hip", "shoulder"):
        return _rot(2, side * a("twist")) @ _rot(1, -a("flex")) @ _rot(0, side * a("abd"))
    if g == "knee":
        return _rot(1, a("flex"))
    return _rot(1, -a("flex"))  # elbow


def forward_kinematics(build: Build, angles: dict[str, np.ndarray]) -> np.ndarray:
    """(T, J, 3) joint positions (mm) relative to the root, turned by the root's angles, from
    ``angles`` (radians, each (T,); a missing angle is 0)."""
    t = len(next(iter(angles.values())))
    pos = np.zeros((t, len(JOINTS), 3))
    rot = np.zeros((len(JOINTS), t, 3, 3))
    for j, joint in enumerate(JOINTS):
        parent_rot = rot[joint.parent] if joint.parent >= 0 else np.broadcast_to(np.eye(3), (t, 3, 3))
        if joint.parent >= 0:
            d = np.asarray(joint.direction) / np.linalg.norm(joint.direction)
            pos[:, j] = pos[:, joint.parent] + parent_rot @ (d * build.bones_mm[joint.bone])
        local = _local(joint, angles, t)
        rot[j] = parent_rot if local is None else parent_rot @ local
    return pos
