"""A lifter's bundle: ``bundle.json`` (task ``lifting``) + ``model.onnx``, and a NumPy + ONNX Runtime lifter.

Folder (written by the ``export3d`` stage, :func:`posecore.export.lift_export.export_lifter`)::

    bundle.json   {"format": 1, "task": "lifting", "model_file": "model.onnx",
                   "input_name": "inputs", "output_name": "joints_3d",
                   "lifter": {"name": "videopose3d", "codec": "video_pose_lifting", "receptive_field": 27, ...},
                   "codec": {"num_keypoints": 17, "root_index": 0, "remove_root": false, "use_scores": false,
                             ["keypoints_mean", ...]},
                   "receptive_field": 27, "causal": false, "temporal": true, "flip_test": true,
                   "meta_name": "h36m", "keypoint_names": [...], "flip_indices": [...], "skeleton": [[a, b], ...],
                   "provenance": {...}, "weights_file": "weights.pt", "spec_file": "model.json"}
    model.onnx    inputs (N, T, J, C) float32 -> joints_3d (N, T - receptive_field + 1, J', 3) metres
                  (per-frame lifters: (N, J, C) -> (N, J', 3)); N and T dynamic
    weights.pt    the state dict (plain tensors, weights_only), model.json: the lifter's description

:class:`LiftRuntime` needs NumPy and ONNX Runtime only. ``lift(keypoints (T, J, 2) px, scores
(T, J) or None, image_size (W, H))`` returns (T, J, 3) root-relative camera millimetres, one row
per frame, as the pipeline's evaluation lifts a sequence: the codec's screen normalisation
(:mod:`posecore.codecs.pose_lifting`, here in NumPy), edge padding so every frame gets an output
(centred windows: ``receptive_field // 2`` frames each side; causal: ``receptive_field - 1``
before), the mirrored input averaged in when ``flip_test``, and the codec's decoding.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from posecore.export.bundle import BUNDLE_FORMAT, INFO_FILE, MODEL_FILE, SPEC_FILE, WEIGHTS_FILE, BundleError

__all__ = ["LIFTING_TASK", "LiftBundleInfo", "LiftRuntime", "is_lift_bundle", "lift_bundle_files"]

LIFTING_TASK = "lifting"
MM_PER_UNIT = 1000.0  # the codecs' targets are metres


@dataclass(frozen=True)
class LiftBundleInfo:
    """The contents of a lifter's ``bundle.json`` (module docstring)."""

    lifter: dict[str, Any]
    codec: dict[str, Any]
    receptive_field: int
    causal: bool
    temporal: bool
    keypoint_names: tuple[str, ...]
    flip_indices: tuple[int, ...]
    skeleton: tuple[tuple[int, int], ...]
    meta_name: str
    flip_test: bool = True
    input_name: str = "inputs"
    output_name: str = "joints_3d"
    model_file: str = MODEL_FILE
    provenance: dict[str, Any] = field(default_factory=dict)
    weights_file: str | None = WEIGHTS_FILE
    spec_file: str | None = SPEC_FILE
    task: str = LIFTING_TASK
    format: int = BUNDLE_FORMAT

    def __post_init__(self) -> None:
        k = len(self.keypoint_names)
        problems = []
        if self.task != LIFTING_TASK:
            problems.append(f"task must be {LIFTING_TASK!r}, got {self.task!r}")
        if self.format != BUNDLE_FORMAT:
            problems.append(f"format {self.format} is not supported (this posecore reads {BUNDLE_FORMAT})")
        if self.codec.get("num_keypoints") != k:
            problems.append(f"codec.num_keypoints is {self.codec.get('num_keypoints')} for {k} keypoint names")
        idx = list(self.flip_indices)
        if sorted(idx) != list(range(k)) or any(idx[j] != i for i, j in enumerate(idx)):
            problems.append(f"flip_indices must be a permutation of 0..{k - 1} that is its own inverse")
        if self.receptive_field < 1 or (not self.temporal and self.receptive_field != 1):
            problems.append(f"receptive_field {self.receptive_field} does not fit temporal={self.temporal}")
        if problems:
            raise BundleError("lifting bundle.json is inconsistent:\n" + "\n".join(f"  - {p}" for p in problems))

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), allow_nan=False))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> LiftBundleInfo:
        if raw.get("task") != LIFTING_TASK:
            raise BundleError(
                f"this bundle's task is {raw.get('task', 'topdown')!r}, not {LIFTING_TASK!r}: it finds 2D keypoints "
                "(pass it as --model); a lifter bundle comes from `dvc repro export3d`"
            )
        value = dict(raw)
        try:
            value["keypoint_names"] = tuple(value["keypoint_names"])
            value["flip_indices"] = tuple(value["flip_indices"])
            value["skeleton"] = tuple(tuple(link) for link in value["skeleton"])
            return cls(**value)
        except (KeyError, TypeError) as exc:
            raise BundleError(f"lifting bundle.json is incomplete or has unknown keys: {exc}") from exc

    @classmethod
    def read(cls, folder: str | Path) -> LiftBundleInfo:
        file = Path(folder) / INFO_FILE
        if not file.is_file():
            raise BundleError(f"{file} does not exist: not a posecore bundle (run `dvc repro export3d`)")
        try:
            return cls.from_dict(json.loads(file.read_text()))
        except json.JSONDecodeError as exc:
            raise BundleError(f"{file} is not valid JSON: {exc}") from exc

    def write(self, folder: str | Path) -> Path:
        from posecore.io import atomic_write_text

        return atomic_write_text(Path(folder) / INFO_FILE, json.dumps(self.to_dict(), indent=2) + "\n")


def is_lift_bundle(folder: str | Path) -> bool:
    """Whether ``folder`` holds a lifter's bundle (its bundle.json says task ``lifting``)."""
    file = Path(folder) / INFO_FILE
    try:
        return json.loads(file.read_text()).get("task") == LIFTING_TASK
    except (OSError, ValueError, AttributeError):
        return False


def lift_bundle_files(folder: str | Path) -> list[str]:
    """The files of a lifting bundle that a registered version records by SHA-256, after checking
    bundle.json and that each file is there."""
    info = LiftBundleInfo.read(folder)
    names = [INFO_FILE, info.model_file, *(n for n in (info.weights_file, info.spec_file) if n)]
    for name in names:
        if not (Path(folder) / name).is_file():
            raise BundleError(f"the lifting bundle {folder} names {name} in bundle.json, but the file is missing")
    return names


class LiftRuntime:
    """A lifter bundle run by ONNX Runtime on NumPy arrays (module docstring)."""

    def __init__(self, folder: str | Path, threads: int = 0) -> None:
        import onnxruntime as ort

        self.folder = Path(folder)
        self.info = LiftBundleInfo.read(self.folder)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        path = self.folder / self.info.model_file
        if not path.is_file():
            raise BundleError(f"{path} does not exist: the bundle is incomplete")
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        c = self.info.codec
        self._mean = None if c.get("keypoints_mean") is None else np.asarray(c["keypoints_mean"], np.float32)
        self._std = None if c.get("keypoints_std") is None else np.asarray(c["keypoints_std"], np.float32)
        self._tmean = None if c.get("target_mean") is None else np.asarray(c["target_mean"], np.float32)
        self._tstd = None if c.get("target_std") is None else np.asarray(c["target_std"], np.float32)

    @property
    def keypoint_names(self) -> tuple[str, ...]:
        return self.info.keypoint_names

    def encode(self, keypoints: np.ndarray, scores: np.ndarray | None, image_size: Sequence[float]) -> np.ndarray:
        """keypoints (T, J, 2) px, scores (T, J) -> model inputs (T, J, C) (the codec's ``encode``)."""
        kp = np.asarray(keypoints, np.float32)
        j = self.info.num_keypoints
        if kp.ndim != 3 or kp.shape[1:] != (j, 2):
            raise ValueError(f"keypoints must be (T, {j}, 2) pixels for this lifter's {j} joints; got {kp.shape}")
        w, h = (float(v) for v in image_size)
        if not (w > 0 and h > 0 and math.isfinite(w) and math.isfinite(h)):
            raise ValueError(f"image_size must be a positive (W, H); got {image_size!r}")
        found = np.isfinite(kp).all(-1)
        xy = (np.where(found[..., None], kp, 0.0) - (w / 2, h / 2)) / (w / 2)
        if self._mean is not None and self._std is not None:
            xy = (xy - self._mean) / self._std
        if not self.info.codec.get("use_scores"):
            return xy.astype(np.float32)
        sc = np.ones(kp.shape[:2], np.float32) if scores is None else np.asarray(scores, np.float32)
        return np.concatenate([xy, np.where(found, sc, 0.0)[..., None]], -1).astype(np.float32)

    def _flip_inputs(self, x: np.ndarray) -> np.ndarray:
        idx = list(self.info.flip_indices)
        xy = x[..., :2] if self._mean is None else x[..., :2] * self._std + self._mean
        xy = np.stack([-xy[..., 0], xy[..., 1]], -1)[..., idx, :]
        if self._mean is not None:
            xy = (xy - self._mean) / self._std
        return np.concatenate([xy, x[..., idx, 2:]], -1).astype(np.float32)

    def _target_flip(self) -> list[int]:
        idx, c = list(self.info.flip_indices), self.info.codec
        if not c.get("remove_root"):
            return idx
        r = int(c["root_index"])
        keep = [j for j in range(len(idx)) if j != r]
        position = {j: i for i, j in enumerate(keep)}
        return [position[idx[j]] for j in keep]

    def _unstandardize(self, t: np.ndarray) -> np.ndarray:
        return t if self._tmean is None else t * self._tstd + self._tmean

    def _run(self, x: np.ndarray) -> np.ndarray:
        """inputs (B, [T,] J, C) -> targets (B, [T_out,] J', 3) in metres (unstandardised), flip-averaged."""
        run = self.session.run([self.info.output_name], {self.info.input_name: x})[0]
        out = self._unstandardize(run)
        if self.info.flip_test:
            mirrored = self._unstandardize(
                self.session.run([self.info.output_name], {self.info.input_name: self._flip_inputs(x)})[0]
            )
            back = (mirrored * np.asarray([-1.0, 1.0, 1.0], np.float32))[..., self._target_flip(), :]
            out = (out + back) / 2
        return out

    def lift(self, keypoints: np.ndarray, scores: np.ndarray | None, image_size: Sequence[float]) -> np.ndarray:
        """keypoints (T, J, 2) px, scores (T, J) or None, image_size (W, H) -> joints (T, J, 3) root-relative mm."""
        x = self.encode(keypoints, scores, image_size)
        t = x.shape[0]
        if t == 0:
            return np.zeros((0, self.info.num_keypoints, 3), np.float32)
        if self.info.temporal:
            rf = self.info.receptive_field
            before = rf - 1 if self.info.causal else rf // 2
            frames = np.clip(np.arange(-before, t + rf - 1 - before), 0, t - 1)
            targets = self._run(x[frames][None])[0]  # (T, J', 3)
        else:
            targets = self._run(x)
        joints = targets * MM_PER_UNIT
        c = self.info.codec
        if c.get("remove_root"):
            r = int(c["root_index"])
            joints = np.concatenate([joints[:, :r], np.zeros_like(joints[:, :1]), joints[:, r:]], axis=1)
        return joints.astype(np.float32)
