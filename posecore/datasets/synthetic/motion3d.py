"""The embedded synthetic 3D pose dataset: H36M-17 people in motion, seen by random cameras, with
2D joints as a 2D detector would give them. The generator itself needs only NumPy; nothing is downloaded.

Each **subject** has a rigid skeleton built by forward kinematics (:mod:`._skeleton3d`): a
standing height of 1.55-1.95 m and bone lengths within about +-8 % of Human3.6M-like proportions,
the same on the left and right. Each **motion sequence** (one subject, one action,
``frames_min``-``frames_max`` frames at ``fps``) drives the joint angles with sinusoids of random frequency, amplitude and
phase, clipped to the joint limits, on top of a slow idle sway:

* ``walk``: a gait cycle (hips, knees, counter-swinging arms) while the root travels along an
  ellipse of 0.4-1.4 m semi-axes about the capture centre, facing the way it moves;
* ``arm_swing``: both arms swing at the shoulders and elbows, in step or independently;
* ``squat``: knees to 60-120 degrees with the hips and trunk following;
* ``turn``: the root's yaw turns steadily or sweeps back and forth, stepping in place;
* ``walk+arm_swing``, ``squat+arm_swing``, ``turn+arm_swing``: the second overrides the arms.

The feet stay on the ground (the lower foot at ankle height) and, except when walking, the
midpoint of the feet stays where it is. The world has z up and the ground at z = 0, in mm.

Each split has its own **camera rig** (ids ``C01``... over both splits, never shared): cameras
all around the capture centre (azimuths spread over 360 degrees), elevation -10..30 degrees,
3.5-6.5 m away, aimed at about pelvis height, focal length 1000-1200 px, principal point within
25 px of the centre of a 1000 x 1000 image, and small Human3.6M-like distortion (or none, with
``distortion=False``). Each motion sequence is seen by ``cameras_per_sequence`` cameras of its
split's rig, and each view is one :class:`~posecore.datasets.pose3d.format.PoseSequence`:
``joints_3d`` in that camera's coordinates, ``keypoints_2d`` their projection
(:meth:`Camera.project`, with distortion) plus detector-like noise:

* Gaussian noise with a standard deviation drawn per joint and view in
  ``[noise_px_min, noise_px_max]`` px (per coordinate);
* outliers: with probability ``outlier_prob`` per joint and frame, a further Gaussian offset of
  ``outlier_px`` px per coordinate;
* dropped joints: runs of ``drop_frames`` frames starting at random (about ``drop_prob`` of all
  joints), and every joint whose true projection lies outside the image. A dropped joint has score
  0 and keeps its noisy coordinates (not zeroed), as a heatmap detector still returns a location;
* ``scores_2d`` = ``exp(-err**2 / (2 * 10 px**2))`` of the pixel error ``err``, lowered by up to
  0.1 at random and at least 0.01 (0 means dropped, nothing else): high for accurate joints, near
  0 for outliers.

Splits are by subject and camera: subjects are numbered over both splits (``S01``... train, then
val) and neither the ``val`` subjects nor its cameras are in ``train``. Every number comes from a
generator seeded by ``(seed, stream, indices)`` (a subject's body by its number, a sequence's
motion by subject and sequence, a view's noise also by camera), so the same
:class:`Motion3DParams` gives byte-identical arrays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from posecore.datasets.pose3d.format import Camera, PoseSequence, save_sequences
from posecore.datasets.synthetic._skeleton3d import (
    JOINT_NAMES,
    REF_HEIGHT_MM,
    Build,
    clip_to_limits,
    forward_kinematics,
    sample_build,
)
from posecore.io import atomic_output_dir
from posecore.progress import Progress

__all__ = [
    "ACTIONS",
    "GENERATOR_VERSION",
    "JOINT_NAMES",
    "SPLITS",
    "Motion3DParams",
    "generate_splits",
    "split_cameras",
    "write_splits",
]

SPLITS = ("train", "val")
ACTIONS = ("walk", "arm_swing", "squat", "turn", "walk+arm_swing", "squat+arm_swing", "turn+arm_swing")
GENERATOR_VERSION = "1"
"""Written into each sequence's ``extra``; bump it whenever the same parameters give other output."""

IMAGE_SIZE = 1000
_HEIGHT_MM = (1550.0, 1950.0)
_BONE_JITTER = 0.04
_ELEVATION_DEG = (-10.0, 30.0)
_DISTANCE_MM = (3500.0, 6500.0)
_FOCAL_PX = (1000.0, 1200.0)
_SCORE_PX = 10.0
_MIN_SCORE = 0.01
"""The lowest score of a joint that was not dropped: 0 means dropped only."""
_FEET = (JOINT_NAMES.index("left_foot"), JOINT_NAMES.index("right_foot"))
_STREAMS = {"subject": 0, "camera": 1, "motion": 2, "detector": 3}
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Motion3DParams:
    """The synthetic 3D dataset (module docstring). The defaults give about 147k train and 59k val
    frames (5 + 2 subjects x 35 sequences x 4 cameras x 120-300 frames at 50 fps)."""

    seed: int = 0
    n_subjects_train: int = field(default=5, metadata={"range": (1, 1000)})
    n_subjects_val: int = field(default=2, metadata={"range": (1, 1000)})
    sequences_per_subject: int = field(default=35, metadata={"range": (1, 10_000)})
    frames_min: int = field(default=120, metadata={"range": (1, 100_000)})
    frames_max: int = field(default=300, metadata={"range": (1, 100_000)})
    fps: float = field(default=50.0, metadata={"range": (1.0, 1000.0)})
    #: Views of each motion sequence, drawn from its split's rig of ``n_cameras_<split>`` cameras.
    cameras_per_sequence: int = field(default=4, metadata={"range": (1, 100)})
    n_cameras_train: int = field(default=8, metadata={"range": (1, 100)})
    n_cameras_val: int = field(default=4, metadata={"range": (1, 100)})
    noise_px_min: float = field(default=2.0, metadata={"range": (0.0, 100.0)})
    noise_px_max: float = field(default=5.0, metadata={"range": (0.0, 100.0)})
    outlier_prob: float = field(default=0.01, metadata={"range": (0.0, 1.0)})
    outlier_px: float = field(default=40.0, metadata={"range": (0.0, 1000.0)})
    drop_prob: float = field(default=0.02, metadata={"range": (0.0, 1.0)})
    drop_frames: int = field(default=5, metadata={"range": (1, 1000)})
    distortion: bool = True

    def __post_init__(self) -> None:
        pairs = [("frames_min", "frames_max"), ("noise_px_min", "noise_px_max")]
        pairs += [("cameras_per_sequence", f"n_cameras_{s}") for s in SPLITS]
        for lo, hi in pairs:
            if getattr(self, lo) > getattr(self, hi):
                raise ValueError(f"{lo} ({getattr(self, lo)}) must be <= {hi} ({getattr(self, hi)})")

    def n_subjects(self, split: str) -> int:
        """The number of subjects of ``split``."""
        return self.n_subjects_train if split == "train" else self.n_subjects_val

    def n_cameras(self, split: str) -> int:
        """The number of cameras in the rig of ``split``."""
        return self.n_cameras_train if split == "train" else self.n_cameras_val


def _rng(seed: int, stream: str, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, _STREAMS[stream], *keys])


def _first_index(cfg: Motion3DParams, split: str, what: str) -> int:
    """Index of the split's first subject or camera in a numbering over both splits."""
    before = SPLITS[: SPLITS.index(split)]
    return sum(cfg.n_subjects(s) if what == "subject" else cfg.n_cameras(s) for s in before)


def split_cameras(cfg: Motion3DParams, split: str) -> list[Camera]:
    """The camera rig of ``split`` (module docstring): ``n_cameras_<split>`` cameras aimed at the
    capture centre (world origin, z up), ids unique over both splits."""
    rng = _rng(cfg.seed, "camera", SPLITS.index(split))
    n, first = cfg.n_cameras(split), _first_index(cfg, split, "camera")
    azimuths = (np.arange(n) + rng.uniform(0, 1, n)) * (2 * np.pi / n) + rng.uniform(0, 2 * np.pi)
    cameras = []
    for i, az in enumerate(azimuths):
        el = np.radians(rng.uniform(*_ELEVATION_DEG))
        dist = rng.uniform(*_DISTANCE_MM)
        target = np.array([*rng.normal(0.0, 150.0, 2), rng.uniform(850.0, 1050.0)])
        centre = target + dist * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        forward = (target - centre) / dist
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        roll = np.radians(rng.normal(0.0, 1.5))
        right, down = np.cos(roll) * right + np.sin(roll) * down, np.cos(roll) * down - np.sin(roll) * right
        f = rng.uniform(*_FOCAL_PX)
        c = IMAGE_SIZE / 2 + np.clip(rng.normal(0.0, 10.0, 2), -25.0, 25.0)
        k = (rng.normal(-0.2, 0.03), rng.normal(0.2, 0.05), rng.normal(0.0, 0.005))
        p = tuple(rng.normal(0.0, 0.001, 2))
        axes = np.stack([right, down, forward], 1)  # columns: the camera's x, y, z in the world
        camera = Camera(
            f=(float(f), float(f * (1 + rng.normal(0.0, 0.002)))),
            c=(float(c[0]), float(c[1])),
            R=tuple(tuple(float(v) for v in row) for row in axes),  # type: ignore[arg-type]
            T=(float(centre[0]), float(centre[1]), float(centre[2])),
            k=tuple(float(v) for v in k) if cfg.distortion else (0.0, 0.0, 0.0),  # type: ignore[arg-type]
            p=tuple(float(v) for v in p) if cfg.distortion else (0.0, 0.0),  # type: ignore[arg-type]
            width=IMAGE_SIZE,
            height=IMAGE_SIZE,
            id=f"C{first + i + 1:02d}",
        )
        aim = camera.world_to_camera(target)
        if not np.allclose(aim, [0.0, 0.0, dist], atol=1e-6 * dist):
            raise RuntimeError(
                f"camera {camera.id}: its aim point is at {aim} in camera coordinates, not on the optical axis "
                f"{dist:.0f} mm ahead; Camera's extrinsics convention changed, update split_cameras"
            )
        cameras.append(camera)
    return cameras


def _wave(rng: np.random.Generator, t: np.ndarray, freq_hz: tuple[float, float], amp_deg: float) -> np.ndarray:
    """(T,) radians: ``amp_deg * sin(2 pi f t + phase)`` with ``f`` and the phase drawn at random."""
    return np.radians(amp_deg) * np.sin(2 * np.pi * rng.uniform(*freq_hz) * t + rng.uniform(0, 2 * np.pi))


def _stand(rng: np.random.Generator, t: np.ndarray) -> dict[str, np.ndarray]:
    """A relaxed standing posture facing a random way."""
    ones = np.ones_like(t)
    angles = {"root_yaw": rng.uniform(-np.pi, np.pi) * ones}
    for s in "lr":
        angles |= {f"{s}_knee_flex": np.radians(4.0) * ones, f"{s}_elbow_flex": np.radians(15.0) * ones}
        angles[f"{s}_shoulder_abd"] = np.radians(8.0) * ones
    return angles


def _idle(rng: np.random.Generator, t: np.ndarray) -> dict[str, np.ndarray]:
    """Slow zero-mean sway added to every angle (amplitudes in degrees)."""
    amps = {"root_pitch": 2, "root_roll": 2, "spine_bend": 4, "spine_side": 3, "spine_twist": 5, "thorax_bend": 3}
    amps |= {"thorax_side": 2, "thorax_twist": 3, "neck_nod": 10, "neck_turn": 20}
    for s in "lr":
        amps |= {f"{s}_hip_flex": 3, f"{s}_hip_abd": 2, f"{s}_knee_flex": 3, f"{s}_shoulder_flex": 6}
        amps |= {f"{s}_shoulder_abd": 4, f"{s}_shoulder_twist": 10, f"{s}_elbow_flex": 10}
    return {k: _wave(rng, t, (0.1, 0.5), rng.uniform(0.3, 1.0) * a) for k, a in amps.items()}


def _walk(rng: np.random.Generator, t: np.ndarray, build: Build) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Gait angles and the (T, 2) root path (mm) along an ellipse about the origin."""
    freq = rng.uniform(0.8, 1.1)
    phase = 2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)
    hip, knee, arm = rng.uniform(18, 30), rng.uniform(45, 65), rng.uniform(10, 30)
    angles = {"root_pitch": np.radians(5.0) + 0 * t, "spine_twist": np.radians(4.0) * np.sin(phase)}
    for s, shift in (("l", 0.0), ("r", np.pi)):
        p = phase + shift
        angles[f"{s}_hip_flex"] = np.radians(8.0 + hip * np.sin(p))
        angles[f"{s}_knee_flex"] = np.radians(5.0 + knee * ((1 + np.cos(p)) / 2) ** 2)
        angles[f"{s}_shoulder_flex"] = np.radians(-arm * np.sin(p))
        angles[f"{s}_elbow_flex"] = np.radians(15.0 + arm * (1 - np.sin(p)) / 2)
    speed = freq * rng.uniform(1100, 1400) * build.height_mm / REF_HEIGHT_MM  # mm/s: one stride per gait cycle
    a, b = rng.uniform(700, 1400), rng.uniform(400, 900)
    direction = rng.choice([-1.0, 1.0])
    theta = direction * speed * t / np.sqrt((a * a + b * b) / 2) + rng.uniform(0, 2 * np.pi)
    tilt = rng.uniform(0, np.pi)
    rot = np.array([[np.cos(tilt), -np.sin(tilt)], [np.sin(tilt), np.cos(tilt)]])
    path = np.stack([a * np.cos(theta), b * np.sin(theta)], -1) @ rot.T
    velocity = direction * np.stack([-a * np.sin(theta), b * np.cos(theta)], -1) @ rot.T
    angles["root_yaw"] = np.unwrap(np.arctan2(velocity[:, 1], velocity[:, 0]))
    return angles, path


def _arm_swing(rng: np.random.Generator, t: np.ndarray) -> dict[str, np.ndarray]:
    """Shoulders and elbows swinging, both arms alike or each its own way."""
    angles: dict[str, np.ndarray] = {}
    together = rng.random() < 0.5
    state = rng.bit_generator.state
    freq = (0.3, 1.2)
    for s in "lr":
        if together:
            rng.bit_generator.state = state
        angles[f"{s}_shoulder_flex"] = np.radians(rng.uniform(0, 60)) + _wave(rng, t, freq, rng.uniform(20, 70))
        angles[f"{s}_shoulder_abd"] = np.radians(rng.uniform(10, 50)) + _wave(rng, t, freq, rng.uniform(10, 50))
        angles[f"{s}_shoulder_twist"] = np.radians(rng.uniform(-20, 20)) + 0 * t
        angles[f"{s}_elbow_flex"] = np.radians(rng.uniform(30, 80)) + _wave(rng, t, freq, rng.uniform(10, 30))
    return angles


def _squat(rng: np.random.Generator, t: np.ndarray) -> dict[str, np.ndarray]:
    """Repeated squats: the knees bend to ``depth``, the thighs and trunk follow, arms forward."""
    depth = rng.uniform(60, 120)
    down = (1 - np.cos(2 * np.pi * rng.uniform(0.2, 0.5) * t + rng.uniform(0, 2 * np.pi))) / 2
    angles = {"root_pitch": np.radians(0.3 * depth * down), "spine_bend": np.radians(0.1 * depth * down)}
    for s in "lr":
        angles[f"{s}_knee_flex"] = np.radians(5.0 + depth * down)
        angles[f"{s}_hip_flex"] = np.radians(5.0 + 0.45 * depth * down)
        angles[f"{s}_shoulder_flex"] = np.radians(5.0 + 60.0 * down)
    return angles


def _turn(rng: np.random.Generator, t: np.ndarray) -> dict[str, np.ndarray]:
    """The root's yaw turning steadily or sweeping back and forth, stepping in place."""
    if rng.random() < 0.5:
        yaw = rng.choice([-1.0, 1.0]) * np.radians(rng.uniform(45, 120)) * t
    else:
        yaw = _wave(rng, t, (0.1, 0.3), rng.uniform(60, 150))
    angles = {"root_yaw": yaw + rng.uniform(-np.pi, np.pi)}
    rate = np.gradient(yaw, t) if len(t) > 1 else 0 * t
    angles["neck_turn"] = np.clip(0.3 * rate, -0.6, 0.6)  # the head leads the turn
    phase = 2 * np.pi * rng.uniform(0.8, 1.2) * t + rng.uniform(0, 2 * np.pi)
    for s, shift in (("l", 0.0), ("r", np.pi)):
        angles[f"{s}_hip_flex"] = np.radians(5.0 + 8.0 * np.sin(phase + shift))
        angles[f"{s}_knee_flex"] = np.radians(5.0 + 20.0 * ((1 + np.cos(phase + shift)) / 2) ** 2)
    return angles


def _motion(rng: np.random.Generator, build: Build, action: str, t: np.ndarray) -> np.ndarray:
    """(T, J, 3) world joints (mm) of ``build`` performing ``action`` at times ``t`` (s)."""
    angles, path = _stand(rng, t), None
    for part in action.split("+"):
        if part == "walk":
            walk, path = _walk(rng, t, build)
            angles |= walk
        else:
            angles |= {"arm_swing": _arm_swing, "squat": _squat, "turn": _turn}[part](rng, t)
    for key, sway in _idle(rng, t).items():
        angles[key] = angles.get(key, 0 * t) + sway
    joints = forward_kinematics(build, clip_to_limits(angles))
    feet = joints[:, _FEET]
    if path is None:  # the feet stay where they are
        path = rng.uniform(-300, 300, 2) - feet[..., :2].mean(1)
    height = build.ankle_height_mm - feet[..., 2].min(1)
    return joints + np.concatenate([np.broadcast_to(path, (len(t), 2)), height[:, None]], -1)[:, None]


def _detect(rng: np.random.Generator, uv: np.ndarray, cfg: Motion3DParams) -> tuple[np.ndarray, np.ndarray]:
    """Detector-like (T, J, 2) keypoints and (T, J) scores from the (T, J, 2) true projection (px)."""
    t, j = uv.shape[:2]
    sigma = rng.uniform(cfg.noise_px_min, cfg.noise_px_max, j)
    noisy = uv + rng.normal(size=(t, j, 2)) * sigma[:, None]
    outlier = rng.random((t, j)) < cfg.outlier_prob
    noisy += outlier[..., None] * rng.normal(0.0, cfg.outlier_px, (t, j, 2))
    starts = np.cumsum(rng.random((t, j)) < cfg.drop_prob / cfg.drop_frames, 0)
    lagged = np.concatenate([np.zeros((min(cfg.drop_frames, t), j)), starts[: max(t - cfg.drop_frames, 0)]])
    dropped = (starts - lagged > 0) | ((uv < 0) | (uv > IMAGE_SIZE - 1)).any(-1)
    err = np.linalg.norm(noisy - uv, axis=-1)
    scores = np.clip(np.exp(-0.5 * (err / _SCORE_PX) ** 2) - 0.1 * rng.random((t, j)), _MIN_SCORE, 1.0)
    return noisy.astype(np.float32), np.where(dropped, 0.0, scores).astype(np.float32)


def _views(cfg: Motion3DParams, split: str, subject: int, index: int, rig: list[Camera]) -> list[PoseSequence]:
    """The views of motion sequence ``index`` of global subject ``subject`` by cameras of ``rig``."""
    build = sample_build(_rng(cfg.seed, "subject", subject), _HEIGHT_MM, _BONE_JITTER)
    rng = _rng(cfg.seed, "motion", subject, index)
    n_before = _first_index(cfg, split, "subject")
    action = ACTIONS[((subject - n_before) * cfg.sequences_per_subject + index) % len(ACTIONS)]
    n_frames = int(rng.integers(cfg.frames_min, cfg.frames_max + 1))
    world = _motion(rng, build, action, np.arange(n_frames) / cfg.fps)
    cams = sorted(int(c) for c in rng.choice(len(rig), cfg.cameras_per_sequence, replace=False))
    name = f"S{subject + 1:02d}_{index:02d}_{action}"
    extra = {"fps": cfg.fps, "height_mm": round(build.height_mm, 1), "generator": f"motion3d/{GENERATOR_VERSION}"}
    out = []
    for c in cams:
        cam = rig[c]
        joints = cam.world_to_camera(world).astype(np.float32)
        if joints[..., 2].min() < 500.0:
            raise RuntimeError(f"{name}: a joint comes within 0.5 m of camera {cam.id}; the rig is too close")
        keypoints, scores = _detect(_rng(cfg.seed, "detector", subject, index, c), cam.project(joints), cfg)
        out.append(
            PoseSequence(
                name=f"{name}_{cam.id}",
                subject=f"S{subject + 1:02d}",
                action=action,
                camera=cam,
                frames=np.arange(n_frames, dtype=np.int64),
                keypoints_2d=keypoints,
                scores_2d=scores,
                joints_3d=joints,
                extra=dict(extra),
            )
        )
    return out


def generate_splits(cfg: Motion3DParams) -> dict[str, list[PoseSequence]]:
    """``{"train": [...], "val": [...]}``: every view of every motion sequence of the split's subjects
    (module docstring), ordered by subject, sequence and camera. Each sequence holds ``joints_3d``
    (T, 17, 3) float32 camera mm, ``keypoints_2d`` (T, 17, 2) float32 px, ``scores_2d`` (T, 17)
    float32 in [0, 1], ``frames`` (T,) int64 ``0..T-1``, and ``extra["fps"]``."""
    out: dict[str, list[PoseSequence]] = {}
    total = sum(cfg.n_subjects(s) for s in SPLITS) * cfg.sequences_per_subject
    frames = 0
    with Progress("synth3d", total=total, unit="seq") as bar:
        for split in SPLITS:
            bar.set_prefix(split)
            rig, first = split_cameras(cfg, split), _first_index(cfg, split, "subject")
            out[split] = []
            for subject in range(first, first + cfg.n_subjects(split)):
                for index in range(cfg.sequences_per_subject):
                    views = _views(cfg, split, subject, index, rig)
                    out[split] += views
                    frames += sum(len(v) for v in views)
                    bar.update(1, frames=frames)
    return out


def write_splits(cfg: Motion3DParams, out_dir: str | Path) -> dict[str, dict[str, int]]:
    """Write each split with :func:`save_sequences` into ``out_dir/<split>/``, replacing ``out_dir``
    atomically (all splits or none); ``{split: {"sequences": n, "frames": m}}``."""
    splits = generate_splits(cfg)
    counts = {}
    with atomic_output_dir(out_dir) as tmp:
        for split, sequences in splits.items():
            save_sequences(tmp / split, sequences)
            counts[split] = {"sequences": len(sequences), "frames": sum(len(s) for s in sequences)}
            _log.info("synth3d: wrote %s: %d sequences, %d frames", split, *counts[split].values())
    return counts
