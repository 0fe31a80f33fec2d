"""What inference needs to know about a model: :class:`ModelInfo`, from a bundle or a checkpoint (no torch).

A bundle's ``bundle.json`` is :class:`posecore.export.bundle.BundleInfo` (the contract, read and
validated there); :meth:`ModelInfo.from_bundle` keeps what the runtime uses. A training
checkpoint folder gives the same through :meth:`ModelInfo.from_meta`. The crop warp is UDP's
exactly when the codec's is (``udp_heatmap``), as in training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from posecore.codecs import codec_class, numpy_decoder
from posecore.export.bundle import BundleInfo
from posecore.metainfo import DatasetMeta, Keypoint, SkeletonLink

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ModelInfo"]

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
_WHITE = (255, 255, 255)
_GREY = (180, 180, 180)


@dataclass(frozen=True)
class ModelInfo:
    """A model's keypoint schema, preprocessing and decoding config.

    input_size (w, h) in pixels; mean/std RGB in 0..255; codec ``{"name": ..., fields}``;
    skeleton as (a, b) keypoint indices; colours RGB. ``task``: ``topdown`` (person crops in,
    boxes from elsewhere) or ``onestage`` (whole images in, it finds the people; ``bbox_padding``
    unused; the flip test averages its keypoint heatmaps only, when it has them).
    """

    input_size: tuple[int, int]
    codec: dict[str, Any]
    keypoint_names: tuple[str, ...]
    flip_indices: tuple[int, ...]
    skeleton: tuple[tuple[int, int], ...] = ()
    keypoint_colors: tuple[tuple[int, int, int], ...] = ()
    skeleton_colors: tuple[tuple[int, int, int], ...] = ()
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    bbox_padding: float = 1.25
    sigmas: tuple[float, ...] | None = None
    flip_test: bool = True
    shift_heatmap: bool = False
    use_udp: bool = False
    meta_name: str = "bundle"
    provenance: dict[str, Any] = field(default_factory=dict)
    task: str = "topdown"

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    @cached_property
    def dataset_meta(self) -> DatasetMeta:
        """A :class:`DatasetMeta` with this schema, for drawing (``posecore.visualization.draw``)."""
        names = self.keypoint_names
        kcolors = self.keypoint_colors or (_WHITE,) * len(names)
        lcolors = self.skeleton_colors or (_GREY,) * len(self.skeleton)
        keypoints = tuple(
            Keypoint(name, "", tuple(kcolors[i]), names[j] if j != i else "")  # type: ignore[arg-type]
            for i, (name, j) in enumerate(zip(names, self.flip_indices, strict=True))
        )
        links = tuple(
            SkeletonLink(names[a], names[b], tuple(c)) for (a, b), c in zip(self.skeleton, lcolors, strict=True)
        )  # type: ignore[arg-type]
        sigmas = self.sigmas or (0.05,) * len(names)
        return DatasetMeta(self.meta_name, keypoints, links, (1.0,) * len(names), tuple(sigmas))

    @classmethod
    def from_meta(
        cls,
        meta: DatasetMeta,
        input_size: tuple[int, int],
        codec: Mapping[str, Any],
        **kwargs: Any,
    ) -> ModelInfo:
        """The info of a model trained on ``meta`` (used for PyTorch checkpoints)."""
        return cls(
            input_size=(int(input_size[0]), int(input_size[1])),
            codec=dict(codec),
            keypoint_names=tuple(meta.keypoint_names),
            flip_indices=tuple(meta.flip_indices),
            skeleton=tuple(meta.skeleton_indices),
            keypoint_colors=tuple(meta.keypoint_colors),
            skeleton_colors=tuple(s.color for s in meta.skeleton),
            sigmas=tuple(meta.sigmas) if meta.sigmas else None,
            use_udp=kwargs.pop("use_udp", _use_udp(codec, input_size)),
            meta_name=meta.name,
            **kwargs,
        )

    @classmethod
    def from_bundle(cls, bundle: BundleInfo) -> ModelInfo:
        """The runtime's view of a validated ``bundle.json``."""
        codec = {k: v for k, v in bundle.codec.items() if k != "input_size"}
        return cls(
            input_size=(int(bundle.input_size[0]), int(bundle.input_size[1])),
            codec=codec,
            keypoint_names=tuple(bundle.keypoint_names),
            flip_indices=tuple(int(i) for i in bundle.flip_indices),
            skeleton=tuple((int(a), int(b)) for a, b in bundle.skeleton),
            keypoint_colors=tuple(tuple(c) for c in bundle.keypoint_colors),  # type: ignore[misc]
            skeleton_colors=tuple(tuple(c) for c in bundle.skeleton_colors),  # type: ignore[misc]
            mean=tuple(float(v) for v in bundle.mean),  # type: ignore[arg-type]
            std=tuple(float(v) for v in bundle.std),  # type: ignore[arg-type]
            bbox_padding=float(bundle.bbox_padding),
            sigmas=tuple(float(v) for v in bundle.sigmas) or None,
            flip_test=bool(bundle.flip_test),
            shift_heatmap=bool(bundle.shift_heatmap),
            use_udp=_use_udp(codec, bundle.input_size),
            meta_name=bundle.meta_name,
            provenance=dict(bundle.provenance),
            task=bundle.task,
        )


def _use_udp(codec: Mapping[str, Any], input_size: Sequence[int]) -> bool:
    """Whether the codec pairs with the UDP crop; raises ValueError when the runtime cannot decode ``codec``."""
    numpy_decoder(codec, (int(input_size[0]), int(input_size[1])))
    return codec_class(codec["name"]).use_udp
