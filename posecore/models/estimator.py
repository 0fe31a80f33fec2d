"""The pose estimator: backbone -> optional neck -> head, with the codec that encodes and decodes.

A model is described by a :class:`ModelSpec` (plain, JSON-able component descriptions, each
``{name: <registered builder>, <its options>}``) so that the same description builds it for
training, evaluation and export, and travels inside checkpoints and bundles. Presets are YAML
files in ``posecore/models/presets/`` (a few lines each); ``model.preset`` in params.yaml picks
one and the other ``model.*`` keys override it. To add a preset, add a YAML file there.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor, nn

import posecore.models.backbones  # noqa: F401  (registers)
import posecore.models.heads  # noqa: F401
import posecore.models.necks  # noqa: F401
from posecore.codecs import Codec, build_codec, codec_class
from posecore.codecs.yoloxpose import HEATMAP_OUTPUT_KEY as HEATMAPS
from posecore.metainfo import DatasetMeta
from posecore.models.builders import BACKBONES, HEADS, NECKS
from posecore.models.flip import average_flip, average_flip_heatmaps, flip_outputs

PRESET_DIR = Path(__file__).resolve().parent / "presets"


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str) -> dict[str, Any]:
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown model preset {name!r}; available: {', '.join(available_presets())}")
    return yaml.safe_load(path.read_text())


def _merge_component(base: Mapping[str, Any] | None, override: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """An override naming another builder replaces the component; otherwise its keys update the preset's."""
    if not override:
        return dict(base) if base else None
    if base and override.get("name", base.get("name")) == base.get("name"):
        return {**base, **override}
    return dict(override)


@dataclass(frozen=True)
class ModelSpec:
    """A fully resolved model description: input size (w, h) and one mapping per component."""

    input_size: tuple[int, int]
    backbone: dict[str, Any]
    head: dict[str, Any]
    codec: dict[str, Any]
    neck: dict[str, Any] | None = None
    flip_test: bool = True
    shift_heatmap: bool = False

    @classmethod
    def resolve(
        cls,
        preset: str = "",
        *,
        input_size: tuple[int, int] | None = None,
        backbone: Mapping[str, Any] | None = None,
        neck: Mapping[str, Any] | None = None,
        head: Mapping[str, Any] | None = None,
        codec: Mapping[str, Any] | None = None,
        flip_test: bool = True,
        shift_heatmap: bool = False,
    ) -> ModelSpec:
        base = load_preset(preset) if preset else {}
        parts = {
            key: _merge_component(base.get(key), value)
            for key, value in (("backbone", backbone), ("neck", neck), ("head", head), ("codec", codec))
        }
        size = input_size or base.get("input_size")
        missing = [k for k in ("backbone", "head", "codec") if not parts[k]] + ([] if size else ["input_size"])
        if missing:
            raise ValueError(
                f"model.{', model.'.join(missing)} not set: choose model.preset "
                f"({', '.join(available_presets())}) or give the component as {{name: ..., options}}"
            )
        for key in ("backbone", "neck", "head", "codec"):
            if parts[key] is not None and not isinstance(parts[key].get("name"), str):
                raise ValueError(f"model.{key}.name: required (the registered {key} to build)")
        if "input_size" in parts["codec"]:
            raise ValueError("model.codec.input_size: not allowed; the codec takes model.input_size")
        return cls(
            input_size=(int(size[0]), int(size[1])),
            backbone=parts["backbone"],
            head=parts["head"],
            codec=parts["codec"],
            neck=parts["neck"],
            flip_test=flip_test,
            shift_heatmap=shift_heatmap,
        )

    def build_codec(self) -> Codec:
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in self.codec.items() if k != "name"}
        return build_codec(self.codec["name"], input_size=self.input_size, **options)

    @property
    def task(self) -> str:
        """``topdown`` or ``onestage`` (:data:`posecore.codecs.base.TASKS`): the codec's kind decides it."""
        return codec_class(self.codec["name"]).task

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.__dict__))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ModelSpec:
        raw = copy.deepcopy(dict(raw))
        raw["input_size"] = tuple(raw["input_size"])
        return cls(**raw)


def _options(component: Mapping[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in component.items() if k != "name"}


class PoseEstimator(nn.Module):
    """inputs (B, 3, h, w) float32, normalised with ``mean``/``std`` -> outputs keyed like the codec's targets.

    Top-down (``task == "topdown"``, one person per input): ``predict`` decodes to keypoints
    (B, K, 2) in input pixels and scores (B, K), averaging with the horizontally flipped input
    when ``flip_test`` is on. One-stage (``"onestage"``, whole images): ``predict`` returns one
    :class:`~posecore.codecs.base.Poses` per image (every person found, input pixels). Its flip
    test averages only the keypoint heatmaps of a codec with ``refine="heatmap"`` (what keypoints
    snap to, :func:`~posecore.models.flip.flip_cell_heatmaps`); people are found on the plain
    image. A one-stage model without heatmaps has no flip test (as MMPose's RTMO / YOLOX-Pose).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        codec: Codec,
        meta: DatasetMeta,
        spec: ModelSpec,
        neck: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.backbone, self.neck, self.head = backbone, neck, head
        self.codec, self.spec = codec, spec
        self.task: str = codec.task
        self.meta_name = meta.name
        self.flip_indices = list(meta.flip_indices)
        self.mean: tuple[float, ...] = tuple(getattr(backbone, "mean", (123.675, 116.28, 103.53)))
        self.std: tuple[float, ...] = tuple(getattr(backbone, "std", (58.395, 57.12, 57.375)))

    def forward(self, inputs: Tensor) -> dict[str, Tensor]:
        feats = self.backbone(inputs)
        if self.neck is not None:
            feats = self.neck(feats)
        return self.head(feats)

    def loss(self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return self.head.loss(outputs, targets)

    def flip_averaged(self, inputs: Tensor) -> dict[str, Tensor]:
        """Outputs averaged with those of the mirrored input (MMPose's flip test)."""
        outputs = self(inputs)
        flipped = flip_outputs(self(inputs.flip(-1)), self.flip_indices, self.spec.shift_heatmap, self.spec.input_size)
        return average_flip(outputs, flipped)

    def heatmaps_flip_averaged(self, inputs: Tensor) -> dict[str, Tensor]:
        """One-stage outputs whose "heatmaps" are averaged with the mirrored input's (mapped back);
        one batch of 2B through the network."""
        both = self(torch.cat([inputs, inputs.flip(-1)]))
        n = inputs.shape[0]
        plain = {key: value[:n] for key, value in both.items()}
        return average_flip_heatmaps(plain, both[HEATMAPS][n:], self.flip_indices, int(self.codec.heatmap_stride))

    @property
    def has_flip_test(self) -> bool:
        """Whether ``predict`` can flip-test: every top-down model; one-stage ones with heatmaps."""
        return self.task == "topdown" or HEATMAPS in tuple(getattr(self.codec, "output_keys", ()))

    @torch.no_grad()
    def predict(self, inputs: Tensor, flip_test: bool | None = None) -> Any:
        use_flip = (self.spec.flip_test if flip_test is None else flip_test) and self.has_flip_test
        if self.task == "onestage":
            return self.codec.decode(self.heatmaps_flip_averaged(inputs) if use_flip else self(inputs))
        outputs = self.flip_averaged(inputs) if use_flip else self(inputs)
        return self.codec.decode(outputs)


def build_estimator(spec: ModelSpec, meta: DatasetMeta, pretrained: bool = True) -> PoseEstimator:
    """Build the model for ``meta``'s keypoints; parts that do not fit fail here with how to fix them.

    ``pretrained=False`` skips loading backbone weights (e.g. when a checkpoint follows).
    """
    codec = spec.build_codec()
    if codec.task == "onestage" and getattr(codec, "sigmas", "") is None:
        # OKS (assignment cost, OKS-NMS) with the dataset's own per-keypoint sigmas
        codec = dataclasses.replace(codec, sigmas=tuple(float(v) for v in meta.sigmas))
    backbone_opts = _options(spec.backbone)
    if not pretrained:
        backbone_opts.pop("pretrained", None)
    frozen_stages = int(backbone_opts.pop("frozen_stages", 0))
    frozen_chunk = backbone_opts.pop("frozen_chunk", 0)
    backbone = BACKBONES.build(spec.backbone["name"], **backbone_opts)
    if frozen_stages or frozen_chunk:
        try:
            backbone.freeze_stages(frozen_stages, frozen_chunk)
        except ValueError as exc:
            raise ValueError(f"model.backbone.{exc}") from exc
    channels, strides = tuple(backbone.out_channels), tuple(backbone.strides)
    neck = None
    if spec.neck:
        neck = NECKS.build(spec.neck["name"], in_channels=channels, strides=strides, **_options(spec.neck))
        channels, strides = tuple(neck.out_channels), tuple(neck.strides)
    head_opts = _options(spec.head)
    in_index = head_opts.get("in_index", -1)
    # a dense multi-level head (one-stage) reads every level; the others read feats[in_index]
    multi_level = bool(getattr(HEADS.get(spec.head["name"]), "multi_level", False))
    feature = (channels, strides) if multi_level else (channels[in_index], strides[in_index])
    try:
        head = HEADS.build(
            spec.head["name"],
            in_channels=feature[0],
            in_stride=feature[1],
            num_keypoints=meta.num_keypoints,
            codec=codec,
            **head_opts,
        )
    except ValueError as exc:
        raise ValueError(
            f"model.head ({spec.head['name']}) does not fit backbone {spec.backbone['name']} "
            f"(stride {feature[1]}, {feature[0]} channels) with input {spec.input_size}: {exc}"
        ) from exc
    return PoseEstimator(backbone, head, codec, meta, spec, neck)


def check_meta_matches(model: PoseEstimator, meta: DatasetMeta) -> None:
    """A checkpoint's head must predict exactly the dataset's keypoints."""
    k = model.head.num_keypoints if hasattr(model.head, "num_keypoints") else None
    if k is not None and k != meta.num_keypoints:
        raise ValueError(
            f"the model predicts {k} keypoints but dataset meta {meta.name!r} has {meta.num_keypoints}; "
            "train a model for this meta or point data.meta at the schema the model was trained on"
        )


__all__ = [
    "ModelSpec",
    "PoseEstimator",
    "available_presets",
    "build_estimator",
    "check_meta_matches",
    "load_preset",
    "PRESET_DIR",
]
