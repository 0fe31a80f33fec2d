"""The ``model:`` section of params.yaml: a preset and overrides of its parts, resolved to a :class:`ModelSpec`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from posecore.codecs import Codec
from posecore.models.estimator import ModelSpec, available_presets


@dataclass(frozen=True)
class ModelParams:
    """The model: a preset (``posecore/models/presets/``) and overrides of its parts.

    Each part is ``{name: <registered builder>, <its options>}``; a part naming another builder
    replaces the preset's, otherwise its keys update it. The codec takes ``input_size`` from
    here (one setting, one place).
    """

    preset: str = field(default="synthetic-lite0-heatmap", metadata={"choices": lambda: ["", *available_presets()]})
    input_size: tuple[int, int] | None = None
    backbone: dict[str, Any] = field(default_factory=dict)
    neck: dict[str, Any] = field(default_factory=dict)
    head: dict[str, Any] = field(default_factory=dict)
    codec: dict[str, Any] = field(default_factory=dict)
    flip_test: bool = True
    shift_heatmap: bool = False

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
