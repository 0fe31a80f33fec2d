"""The ``model:`` section of params.yaml: a preset and overrides of its parts, resolved to a :class:`ModelSpec`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from posecore._flatten import YAML_KEY
from posecore.codecs import Codec
from posecore.models.estimator import ModelSpec, available_presets

NO_WARM_START = ("", "none")
"""``model.init.from`` values that mean: start from the built model (ImageNet backbone at best)."""


@dataclass(frozen=True)
class InitParams:
    """``model.init``: the weights training starts from instead of the freshly built model (a warm start).

    ``source`` (YAML ``from``, a Python keyword): "" or "none" for no warm start; a checkpoint
    file (a posecore ``best.pt``/``latest.pt``, a plain state dict, MMPose's
    ``{"state_dict": ...}`` or ``{"model": ...}``), a training folder (its ``best.pt``), a bundle
    folder (its ``weights.pt``) or a registry reference ``NAME@ALIAS`` / ``NAME/VERSION``.
    ``prefix``/``into``: keep only source keys starting with ``prefix`` and strip it (MMPose's
    ``init_cfg`` prefix), then put ``into`` in front (``backbone.`` loads a backbone-only file
    into the model's backbone). ``exclude``: fnmatch patterns of model keys never loaded.
    ``strict``: any missing, unexpected or shape-mismatched tensor is an error listing them all
    (keypoint-wise head transfer is allowed). ``keypoint_map``: {model keypoint: source
    keypoint, or a list of source keypoints whose rows are averaged (MMPose's KeypointConverter
    interpolates a target joint between two source joints the same way)} where names differ
    (same names match by themselves). What is done lies in
    :mod:`posecore.models.init`; reading the source, in :mod:`posecore.registry.warm_start`.
    """

    source: str = field(default="", metadata={YAML_KEY: "from"})
    prefix: str = ""
    into: str = ""
    exclude: tuple[str, ...] = ()
    strict: bool = False
    keypoint_map: dict[str, str | tuple[str, ...]] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return self.source.strip().lower() not in NO_WARM_START


@dataclass(frozen=True)
class ModelParams:
    """The model: a preset (``posecore/models/presets/``) and overrides of its parts.

    Each part is ``{name: <registered builder>, <its options>}``; a part naming another builder
    replaces the preset's, otherwise its keys update it. The codec takes ``input_size`` from
    here (one setting, one place). ``init`` says which weights training starts from
    (:class:`InitParams`); it is not part of the model's description (:meth:`spec`).
    """

    preset: str = field(default="synthetic-lite0-heatmap", metadata={"choices": lambda: ["", *available_presets()]})
    input_size: tuple[int, int] | None = None
    backbone: dict[str, Any] = field(default_factory=dict)
    neck: dict[str, Any] = field(default_factory=dict)
    head: dict[str, Any] = field(default_factory=dict)
    codec: dict[str, Any] = field(default_factory=dict)
    flip_test: bool = True
    shift_heatmap: bool = False
    init: InitParams = field(default_factory=InitParams)

    def spec(self) -> ModelSpec:
        return ModelSpec.resolve(
            self.preset,
            input_size=self.input_size,
            backbone=self.backbone,
            neck=self.neck,
            head=self.head,
            codec=self.codec,
            flip_test=self.flip_test,
            shift_heatmap=self.shift_heatmap,
        )

    def build_codec(self) -> Codec:
        return self.spec().build_codec()
