"""The canonical 3D pose sequence format: what converters and the synthetic 3D generator write and
the lifting models read.

One sequence is one person seen by one camera over ``T`` frames in time order (``frames`` says
which; a source sampled below the video rate, like MMPose's H36M files, skips frames):

* ``keypoints_2d`` (T, J, 2) float32: 2D joints in image pixels (ground truth projected, or a 2D
  detector's output), with ``scores_2d`` (T, J) float32 in [0, 1] (0: the joint was not found);
* ``joints_3d`` (T, J, 3) float32: 3D joints in the camera's coordinates, millimetres (x right,
  y down, z forward, as the pinhole model below);
* ``frames`` (T,) int64: the frame index of each row in the source video;
* ``camera``: intrinsics ``f``, ``c`` (pixels), distortion ``k`` (3 radial), ``p`` (2 tangential),
  image ``width``/``height``, and extrinsics ``R`` (3, 3), ``T`` (3,) mm, with
  ``x_cam = R.T @ (x_world - T)``: ``T`` is the camera centre in the world and ``R`` rotates camera
  axes into world axes (its columns are the camera's x, y, z in world coordinates). This is the
  convention of Human3.6M camera files as MMPose writes them (``SimpleCamera``: ``R`` and ``T`` are
  "camera-to-world"), checked against MMPose's H36M test sample (:mod:`.h36m`).

On disk a split is one folder: ``sequences.json`` (per sequence: name, subject, action, camera id
and parameters, frame count, offset into the arrays) and ``arrays.npz`` with the concatenated
arrays (``frames``, ``keypoints_2d``, ``scores_2d``, ``joints_3d``), read with
``allow_pickle=False``. Both are written into a temporary folder that is renamed into place.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from posecore.io import atomic_output_dir

__all__ = ["Camera", "PoseSequence", "load_sequences", "save_sequences"]

INDEX_FILE = "sequences.json"
ARRAYS_FILE = "arrays.npz"
ARRAY_KEYS = ("frames", "keypoints_2d", "scores_2d", "joints_3d")


@dataclass(frozen=True)
class Camera:
    """A pinhole camera with Human3.6M's distortion model.

    Extrinsics (module docstring): ``x_cam = R.T @ (x_world - T)``, ``T`` in mm. On MMPose's H36M
    sample, world joints taken to the camera this way match the camera-space ``S`` to 2.4e-7 m, while
    ``R @ (x_world - T)`` is off by up to 13 m. Projection: ``(u, v) = (x/z, y/z)``, then H36M's own
    distortion ``d = u * (1 + k1 r^2 + k2 r^4 + k3 r^6 + p2 u + p1 v) + (p2, p1) r^2`` and
    ``pixel = d * f + c``; it reproduces the sample's ``part`` (H36M's released 2D joints) to 4e-5 px.
    MMPose's ``SimpleCamera.camera_to_pixel`` doubles the ``p2 u + p1 v`` term (textbook
    Brown-Conrady) and lands up to 0.22 px away from ``part``.
    """

    f: tuple[float, float]
    c: tuple[float, float]
    R: tuple[tuple[float, float, float], ...] = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    T: tuple[float, float, float] = (0.0, 0.0, 0.0)
    k: tuple[float, float, float] = (0.0, 0.0, 0.0)
    p: tuple[float, float] = (0.0, 0.0)
    width: int = 1000
    height: int = 1000
    id: str = ""

    def world_to_camera(self, x: np.ndarray) -> np.ndarray:
        """(..., 3) world mm -> (..., 3) camera mm: ``R.T @ (x - T)`` per point (row vectors: ``(x - T) @ R``)."""
        return (np.asarray(x, np.float64) - np.asarray(self.T)) @ np.asarray(self.R)

    def camera_to_world(self, x: np.ndarray) -> np.ndarray:
        """(..., 3) camera mm -> (..., 3) world mm: ``R @ x + T`` per point."""
        return np.asarray(x, np.float64) @ np.asarray(self.R).T + np.asarray(self.T)

    def project(self, x: np.ndarray, distort: bool = True) -> np.ndarray:
        """(..., 3) camera mm -> (..., 2) pixels; with ``distort``, H36M's radial + tangential model."""
        x = np.asarray(x, np.float64)
        uv = x[..., :2] / x[..., 2:3]
        if distort:
            k, p = np.asarray(self.k), np.asarray(self.p)
            r2 = (uv**2).sum(-1, keepdims=True)
            radial = 1 + k[0] * r2 + k[1] * r2**2 + k[2] * r2**3
            tan = (uv * p[::-1]).sum(-1, keepdims=True)
            uv = uv * (radial + tan) + np.asarray(p)[::-1] * r2
        return uv * np.asarray(self.f) + np.asarray(self.c)


@dataclass
class PoseSequence:
    """One person, one camera, ``T`` frames (module docstring for the arrays' shapes and units)."""

    name: str
    subject: str
    action: str
    camera: Camera
    frames: np.ndarray
    keypoints_2d: np.ndarray
    scores_2d: np.ndarray
    joints_3d: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        t = len(self.frames)
        j = self.joints_3d.shape[1] if self.joints_3d.ndim == 3 else -1
        expected = {"keypoints_2d": (t, j, 2), "scores_2d": (t, j), "joints_3d": (t, j, 3)}
        for key, shape in expected.items():
            if getattr(self, key).shape != shape:
                raise ValueError(
                    f"sequence {self.name!r}: {key} has shape {getattr(self, key).shape}, expected {shape} "
                    f"(T={t} frames, J={j} joints)"
                )

    def __len__(self) -> int:
        return len(self.frames)


def save_sequences(out_dir: str | Path, sequences: Sequence[PoseSequence]) -> Path:
    """Write ``sequences`` as one split folder (module docstring), replacing it atomically."""
    index, offset = [], 0
    for seq in sequences:
        index.append(
            {
                "name": seq.name,
                "subject": seq.subject,
                "action": seq.action,
                "camera": asdict(seq.camera),
                "length": len(seq),
                "offset": offset,
                "extra": seq.extra,
            }
        )
        offset += len(seq)
    arrays: dict[str, np.ndarray] = {}
    dtypes = {"frames": np.int64, "keypoints_2d": np.float32, "scores_2d": np.float32, "joints_3d": np.float32}
    for key in ARRAY_KEYS:
        parts = [np.asarray(getattr(seq, key), dtypes[key]) for seq in sequences]
        arrays[key] = np.concatenate(parts) if parts else np.zeros((0,), dtypes[key])
    with atomic_output_dir(out_dir) as tmp:
        (tmp / INDEX_FILE).write_text(json.dumps({"sequences": index}, indent=1))
        np.savez(tmp / ARRAYS_FILE, **arrays)  # type: ignore[arg-type]
    return Path(out_dir)


def _camera(d: dict[str, Any]) -> Camera:
    return Camera(
        f=tuple(d["f"]),
        c=tuple(d["c"]),
        R=tuple(tuple(r) for r in d["R"]),
        T=tuple(d["T"]),
        k=tuple(d["k"]),
        p=tuple(d["p"]),
        width=int(d["width"]),
        height=int(d["height"]),
        id=str(d.get("id", "")),
    )  # type: ignore[arg-type]


def load_sequences(split_dir: str | Path) -> list[PoseSequence]:
    """The sequences of a split folder written by :func:`save_sequences`."""
    split_dir = Path(split_dir)
    index = json.loads((split_dir / INDEX_FILE).read_text())["sequences"]
    with np.load(split_dir / ARRAYS_FILE, allow_pickle=False) as data:
        arrays = {key: data[key] for key in ARRAY_KEYS}
    out = []
    for rec in index:
        sl = slice(rec["offset"], rec["offset"] + rec["length"])
        out.append(
            PoseSequence(
                name=rec["name"],
                subject=rec["subject"],
                action=rec["action"],
                camera=_camera(rec["camera"]),
                frames=arrays["frames"][sl],
                keypoints_2d=arrays["keypoints_2d"][sl],
                scores_2d=arrays["scores_2d"][sl],
                joints_3d=arrays["joints_3d"][sl],
                extra=rec.get("extra", {}),
            )
        )
    return out
