"""``bundle.json``: :class:`BundleInfo`, read and written without torch or onnx (the standard library and
the task names of :mod:`posecore.codecs.base`).

The file is one JSON object (``format`` 1)::

    {
      "format": 1,
      "task": "topdown" | "onestage",                                 # the codec's task; absent: "topdown"
      "model_file": "model.onnx", "int8_model_file": "model.int8.onnx" | null,
      "quantization": "none" | "dynamic" | "static",
      "input_name": "inputs", "outputs": ["simcc_x", "simcc_y"],
      "input_size": [w, h], "mean": [r, g, b], "std": [r, g, b],      # RGB, 0..255: x = (rgb - mean) / std
      "codec": {"name": "simcc", "input_size": [w, h], ...},          # posecore.data.cache.codec_config
      "bbox_padding": 1.25,                                           # box -> crop, as the val inputs were made
      "flip_test": true, "shift_heatmap": false,                      # run the mirrored batch too, then average
      "meta_name": "coco", "keypoint_names": [...], "flip_indices": [...], "sigmas": [...],
      "skeleton": [[a, b], ...], "keypoint_colors": [[r, g, b], ...], "skeleton_colors": [[r, g, b], ...],
      "provenance": {"mlflow_run_id": ..., "git_commit": ..., "metrics": {...}, ...},
      "weights_file": "weights.pt" | null, "spec_file": "model.json" | null   # the PyTorch side (below)
    }

Flip test at inference (what :meth:`PoseEstimator.flip_averaged` does, see
:mod:`posecore.models.flip`): run ``inputs[..., ::-1]`` too, map its outputs back (mirror the
x axis of ``heatmaps``/``simcc_x``, ``x -> 1 - x - 1 / w`` for ``coords``, reorder keypoints by
``flip_indices``, shift heatmaps one pixel right when ``shift_heatmap``) and average.

``task`` (one of :data:`posecore.codecs.base.TASKS`, the codec class's ``task``) says what the
model takes: person crops (``topdown``: boxes come from a detector) or whole images
(``onestage``: it finds the people itself). Bundles written before one-stage models existed have
no ``task`` and read as ``topdown``, the only kind there was.

``weights_file`` / ``spec_file`` (set together, or both null) name the PyTorch side of the model
that a runtime never needs but a warm start does (``model.init.from`` a bundle or a registry
model, :mod:`posecore.models.init`): ``weights.pt``, the deployed state dict (EMA weights when
the run kept an EMA) saved with ``torch.save`` as plain tensors, so it loads with
``weights_only=True``; ``model.json``, the model description the train stage wrote
(``{"model": ModelSpec.to_dict(), "meta": name}``). Bundles exported before they existed read
with both null. Reading bundle.json never imports torch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from posecore.codecs.base import TASKS

BUNDLE_FORMAT = 1
INFO_FILE = "bundle.json"
MODEL_FILE = "model.onnx"
INT8_MODEL_FILE = "model.int8.onnx"
WEIGHTS_FILE = "weights.pt"
SPEC_FILE = "model.json"
INPUT_NAME = "inputs"
METADATA_KEY = "posecore.bundle"
"""The ONNX metadata key under which ``bundle.json`` is embedded in the model files."""

QUANTIZATIONS = ("none", "dynamic", "static")


class BundleError(ValueError):
    """A bundle folder or ``bundle.json`` is missing or inconsistent; the message says what."""


@dataclass(frozen=True)
class BundleInfo:
    """Everything besides the network that running a model needs; the contents of ``bundle.json``."""

    keypoint_names: tuple[str, ...]
    flip_indices: tuple[int, ...]
    sigmas: tuple[float, ...]
    skeleton: tuple[tuple[int, int], ...]
    keypoint_colors: tuple[tuple[int, int, int], ...]
    skeleton_colors: tuple[tuple[int, int, int], ...]
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    codec: dict[str, Any]
    outputs: tuple[str, ...]
    bbox_padding: float
    meta_name: str
    flip_test: bool = True
    shift_heatmap: bool = False
    input_name: str = INPUT_NAME
    model_file: str = MODEL_FILE
    int8_model_file: str | None = None
    quantization: str = "none"
    provenance: dict[str, Any] = field(default_factory=dict)
    task: str = "topdown"
    weights_file: str | None = None
    spec_file: str | None = None
    format: int = BUNDLE_FORMAT

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise BundleError("bundle.json is inconsistent:\n" + "\n".join(f"  - {p}" for p in problems))

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    def problems(self) -> list[str]:
        k = len(self.keypoint_names)
        out = []
        if self.format != BUNDLE_FORMAT:
            out.append(f"format {self.format} is not supported (this posecore reads format {BUNDLE_FORMAT})")
        if self.task not in TASKS:
            out.append(f"task must be one of {', '.join(TASKS)} (the codec's task), got {self.task!r}")
        for name in ("flip_indices", "sigmas", "keypoint_colors"):
            if len(getattr(self, name)) != k:
                out.append(f"{name} has {len(getattr(self, name))} entries for {k} keypoints")
        idx = list(self.flip_indices)
        if sorted(idx) != list(range(k)) or any(idx[j] != i for i, j in enumerate(idx)):
            out.append(f"flip_indices must be a permutation of 0..{k - 1} that is its own inverse, got {idx}")
        if any(not (0 <= a < k and 0 <= b < k) for a, b in self.skeleton):
            out.append(f"skeleton links must index the {k} keypoints")
        if len(self.skeleton_colors) != len(self.skeleton):
            out.append(f"skeleton_colors has {len(self.skeleton_colors)} entries for {len(self.skeleton)} links")
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            out.append(f"input_size must be [w, h] > 0, got {list(self.input_size)}")
        if len(self.mean) != 3 or len(self.std) != 3 or not all(s > 0 for s in self.std):
            out.append("mean and std must have 3 values (RGB), std > 0")
        if not isinstance(self.codec.get("name"), str):
            out.append('codec must be {"name": <registered codec>, <its fields>}')
        if not self.outputs:
            out.append("outputs must name the model's outputs")
        if not (math.isfinite(self.bbox_padding) and self.bbox_padding > 0):
            out.append(f"bbox_padding must be > 0, got {self.bbox_padding}")
        if self.quantization not in QUANTIZATIONS:
            out.append(f"quantization must be one of {', '.join(QUANTIZATIONS)}, got {self.quantization!r}")
        if (self.quantization == "none") != (self.int8_model_file is None):
            out.append("int8_model_file is set exactly when quantization is not 'none'")
        if (self.weights_file is None) != (self.spec_file is None):
            out.append("weights_file and spec_file are set together (the weights need the model description)")
        return out

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), allow_nan=False))

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> BundleInfo:
        if not isinstance(raw, Mapping):
            raise BundleError(f"bundle.json must hold a JSON object, got {type(raw).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        missing = sorted(required - set(raw))
        if raw.get("format", BUNDLE_FORMAT) != BUNDLE_FORMAT:
            raise BundleError(f"bundle format {raw.get('format')} is not supported (expected {BUNDLE_FORMAT})")
        if unknown or missing:
            raise BundleError(f"bundle.json: unknown keys {unknown}, missing keys {missing}")
        value = dict(raw)
        for name in ("keypoint_names", "flip_indices", "sigmas", "outputs"):
            value[name] = tuple(value[name])
        for name in ("skeleton", "keypoint_colors", "skeleton_colors"):
            value[name] = tuple(tuple(v) for v in value[name])
        for name in ("input_size", "mean", "std"):
            value[name] = tuple(value[name])
        value["codec"] = dict(value["codec"])
        value["provenance"] = dict(value.get("provenance") or {})
        return cls(**value)

    @classmethod
    def from_json(cls, text: str) -> BundleInfo:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise BundleError(f"bundle.json is not valid JSON: {exc}") from exc

    @classmethod
    def read(cls, path: str | Path) -> BundleInfo:
        """From a bundle folder or its ``bundle.json``."""
        path = Path(path)
        file = path / INFO_FILE if path.is_dir() else path
        if not file.is_file():
            raise BundleError(f"{file} does not exist: not a posecore bundle (run `dvc repro export`)")
        return cls.from_json(file.read_text())

    def write(self, folder: str | Path) -> Path:
        """Write ``bundle.json`` into ``folder`` atomically."""
        from posecore.io import atomic_write_text

        return atomic_write_text(Path(folder) / INFO_FILE, self.to_json() + "\n")

    def model_path(self, folder: str | Path, int8: bool = False) -> Path:
        """The ONNX file of the bundle in ``folder`` (the int8 one with ``int8=True``)."""
        if int8:
            if self.int8_model_file is None:
                raise BundleError(f"the bundle in {folder} has no int8 model (export.quantize was 'none')")
            return Path(folder) / self.int8_model_file
        return Path(folder) / self.model_file


def _skeleton_colors(links: Sequence[Any]) -> tuple[tuple[int, int, int], ...]:
    return tuple(tuple(int(c) for c in link.color) for link in links)  # type: ignore[misc]


def bundle_meta_fields(meta: Any) -> dict[str, Any]:
    """The :class:`BundleInfo` fields that come from a :class:`posecore.metainfo.DatasetMeta`."""
    return {
        "meta_name": meta.name,
        "keypoint_names": tuple(meta.keypoint_names),
        "flip_indices": tuple(meta.flip_indices),
        "sigmas": tuple(float(s) for s in meta.sigmas),
        "skeleton": tuple((int(a), int(b)) for a, b in meta.skeleton_indices),
        "keypoint_colors": tuple(tuple(int(c) for c in color) for color in meta.keypoint_colors),
        "skeleton_colors": _skeleton_colors(meta.skeleton),
    }
