"""The abstract :class:`Codec` and the codec registry.

A codec is a frozen dataclass: its fields are its typed configuration, checked in
``__post_init__``. Codecs are registered by name with :func:`register_codec` and built with
:func:`build_codec`; :func:`available_codecs` lists the names.

To add a codec: subclass :class:`Codec` as a ``@dataclass(frozen=True)``, set ``target_keys``,
implement ``encode``/``decode``/``target_shapes``, decorate the class with
``@register_codec("my_codec")`` and import its module at the bottom of
``posecore/codecs/__init__.py``. Implement ``decode_numpy`` too, with the NumPy twins of the
helpers in ``_utils.py``: the bundle runtime decodes with it, without torch. The registry-driven
tests in ``tests/codecs/test_codecs.py`` then ask for a default-kwargs entry for it, and
``tests/codecs/test_decode_numpy.py`` for a variant whose ``decode_numpy`` it compares with ``decode``.

Codec modules import torch lazily (:func:`posecore._lazy.lazy_import`), so that
:func:`numpy_decoder` and every ``decode_numpy`` run where torch is not installed.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from posecore._registry import Registry

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "TASKS",
    "Codec",
    "NumpyDecoder",
    "OneStageCodec",
    "Poses",
    "available_codecs",
    "build_codec",
    "codec_class",
    "numpy_decoder",
    "register_codec",
]

#: The kinds of model a codec trains: ``topdown`` (one person per crop; boxes come from elsewhere)
#: and ``onestage`` (whole images in, every person's box and keypoints out, no detector).
TASKS = ("topdown", "onestage")

#: outputs (keyed like the codec's targets, NumPy arrays) -> keypoints (N, K, 2), scores (N, K), float32;
#: for a one-stage codec, one :class:`Poses` per image.
NumpyDecoder = Callable[[Mapping[str, np.ndarray]], "tuple[np.ndarray, np.ndarray] | list[Poses]"]


class Codec(ABC):
    """One way to turn keypoints into training targets and model outputs back into keypoints.

    encode: keypoints (N, K, 2) float32 in input-image pixels, visible (N, K) float32 in [0, 1]
        -> targets dict[str, Tensor], float32, always with "keypoint_weights" (N, K).
    decode: outputs dict[str, Tensor] keyed like the targets (extra keys are ignored)
        -> keypoints (N, K, 2) float32 in input-image pixels, scores (N, K) float32.
    decode_numpy: the same with NumPy arrays in and out, for the torch-free bundle runtime.

    All are batched over instances and vectorised; encode and decode run on the device of their
    inputs. ``decode_numpy`` computes in float64 whatever the outputs' dtype (it costs nothing
    next to the network): the Newton steps of DARK divide by the maps' curvature, and on flat
    maps float32 rounding alone moves a keypoint by up to ~1e-3 px. It equals ``decode`` fed the
    same outputs as float64.
    """

    #: Keys of the tensors the head predicts and a loss compares against ``encode``'s targets.
    target_keys: ClassVar[tuple[str, ...]]
    #: Whether the targets pair with the UDP crop (``TopdownAffine(use_udp=True)``).
    use_udp: ClassVar[bool] = False
    #: The kind of model (one of :data:`TASKS`): it decides the data path, evaluation protocol,
    #: bundle runtime and registry name; the codec is its one source, so a preset cannot disagree.
    task: ClassVar[str] = "topdown"

    @abstractmethod
    def encode(self, keypoints: Tensor, visible: Tensor) -> dict[str, Tensor]:
        """keypoints (N, K, 2), visible (N, K) -> targets (``target_keys`` + "keypoint_weights")."""

    @abstractmethod
    def decode(self, outputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """outputs (``target_keys``, batched over N) -> keypoints (N, K, 2), scores (N, K)."""

    def decode_numpy(self, outputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``decode`` in NumPy (float64 inside): outputs -> keypoints (N, K, 2), scores (N, K), float32.

        Not abstract, so that a stand-in codec in a test needs none; every registered codec has one
        (``tests/codecs/test_decode_numpy.py``), or its models cannot run as bundles.
        """
        raise NotImplementedError(f"{type(self).__name__} has no decode_numpy, so its bundles cannot be decoded")

    @abstractmethod
    def target_shapes(self, num_keypoints: int) -> dict[str, tuple[int, ...]]:
        """Per-instance shape of each target in ``target_keys`` (the batch dimension left out)."""


@dataclass(frozen=True, eq=False)
class Poses:
    """The people a one-stage model found in one image, best first; arrays are torch or NumPy alike.

    boxes (n, 4) xyxy, keypoints (n, K, 2) (both in model-input pixels), scores (n,) the
    person score, keypoint_scores (n, K) in [0, 1]; float32. n may be 0: an image with nobody
    in it is a result, not an error.
    """

    boxes: Any
    scores: Any
    keypoints: Any
    keypoint_scores: Any

    def __len__(self) -> int:
        return int(self.scores.shape[0])


class OneStageCodec(Codec):
    """A codec of a one-stage (detector-free) model: whole images in, every person out.

    encode: one image's people, keypoints (N, K, 2) and boxes (N, 4) xyxy in input pixels,
        visible (N, K) -> the ground truth the head's dynamic assigner matches predictions to
        (``target_keys``: "boxes", "keypoints", "visible", "areas", plus "keypoint_weights").
    decode: the head's dense outputs, batched over B images (``output_keys``) -> one
        :class:`Poses` per image after the score threshold, NMS and ``max_detections``.
    decode_numpy: the same from NumPy arrays, for the torch-free bundle runtime.
    """

    task: ClassVar[str] = "onestage"
    #: Keys of the dense outputs the head predicts and ``decode`` reads.
    output_keys: ClassVar[tuple[str, ...]]

    @abstractmethod
    def encode(self, keypoints: Tensor, visible: Tensor, boxes: Tensor | None = None) -> dict[str, Tensor]:  # type: ignore[override]
        """keypoints (N, K, 2), visible (N, K), boxes (N, 4) or None (from the keypoints) -> ground truth."""

    @abstractmethod
    def decode(self, outputs: Mapping[str, Tensor]) -> list[Poses]:  # type: ignore[override]
        """Dense outputs (B, A, ...) -> one :class:`Poses` per image (torch tensors)."""

    def decode_numpy(self, outputs: Mapping[str, np.ndarray]) -> list[Poses]:  # type: ignore[override]
        raise NotImplementedError(f"{type(self).__name__} has no decode_numpy, so its bundles cannot be decoded")


C = TypeVar("C", bound=type[Codec])


def _check_codec(name: str, cls: Any) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Codec) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"@register_codec({name!r}) needs a dataclass subclassing Codec, got {cls!r}")


_CODECS: Registry[Codec] = Registry("codec", check=_check_codec)


def register_codec(name: str) -> Callable[[C], C]:
    """Class decorator: make a frozen-dataclass :class:`Codec` buildable as ``build_codec(name)``."""
    return _CODECS.register(name)


def available_codecs() -> tuple[str, ...]:
    """Registered codec names, sorted."""
    return tuple(_CODECS.names())


def build_codec(name: str, **kwargs: object) -> Codec:
    """Build the codec registered as ``name`` from its dataclass fields.

    Raises ValueError for an unknown name (listing the available ones), for an unknown keyword
    (listing the codec's fields) and for a missing required field.
    """
    return _CODECS.build(name, **kwargs)


def codec_class(name: str) -> type[Codec]:
    """The class registered as ``name``."""
    return _CODECS.get(name)  # type: ignore[return-value]


def numpy_decoder(config: Mapping[str, Any], input_size: tuple[int, int] | None = None) -> NumpyDecoder:
    """A bundle's codec config ``{"name": ..., <the codec's fields>}`` -> the codec's ``decode_numpy``.

    ``input_size`` (W, H) overrides ``config["input_size"]``; JSON lists become tuples. Keys that
    are not fields of the codec are ignored (a bundle written by another version may carry
    them). Raises ValueError for an unknown codec name (listing the known ones) or a config
    without the fields the codec needs.
    """
    if not isinstance(config, Mapping) or not isinstance(config.get("name"), str):
        raise ValueError(f"codec config must be a mapping with a 'name'; got {config!r}")
    name = config["name"]
    if name not in _CODECS or codec_class(name).decode_numpy is Codec.decode_numpy:
        known = [n for n in available_codecs() if codec_class(n).decode_numpy is not Codec.decode_numpy]
        raise ValueError(f"no numpy decoder for codec {name!r}; available: {', '.join(known)}")
    fields = {f.name for f in dataclasses.fields(codec_class(name)) if f.init}
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in fields}
    if input_size is not None:
        kwargs["input_size"] = tuple(input_size)
    return build_codec(name, **kwargs).decode_numpy
