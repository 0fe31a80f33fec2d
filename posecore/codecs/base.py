"""The abstract :class:`Codec` and the codec registry.

A codec is a frozen dataclass: its fields are its typed configuration, checked in
``__post_init__``. Codecs are registered by name with :func:`register_codec` and built with
:func:`build_codec`; :func:`available_codecs` lists the names.

To add a codec: subclass :class:`Codec` as a ``@dataclass(frozen=True)``, set ``target_keys``,
implement ``encode``/``decode``/``target_shapes``, decorate the class with
``@register_codec("my_codec")`` and import its module at the bottom of
``posecore/codecs/__init__.py``. The registry-driven tests in ``tests/codecs/test_codecs.py``
then ask for a default-kwargs entry for it.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import ClassVar, TypeVar

from torch import Tensor

__all__ = ["Codec", "available_codecs", "build_codec", "codec_class", "register_codec"]


class Codec(ABC):
    """One way to turn keypoints into training targets and model outputs back into keypoints.

    encode: keypoints (N, K, 2) float32 in input-image pixels, visible (N, K) float32 in [0, 1]
        -> targets dict[str, Tensor], float32, always with "keypoint_weights" (N, K).
    decode: outputs dict[str, Tensor] keyed like the targets (extra keys are ignored)
        -> keypoints (N, K, 2) float32 in input-image pixels, scores (N, K) float32.

    Both are batched over instances, vectorised and run on the device of their inputs.
    """

    #: Keys of the tensors the head predicts and a loss compares against ``encode``'s targets.
    target_keys: ClassVar[tuple[str, ...]]

    @abstractmethod
    def encode(self, keypoints: Tensor, visible: Tensor) -> dict[str, Tensor]:
        """keypoints (N, K, 2), visible (N, K) -> targets (``target_keys`` + "keypoint_weights")."""

    @abstractmethod
    def decode(self, outputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """outputs (``target_keys``, batched over N) -> keypoints (N, K, 2), scores (N, K)."""

    @abstractmethod
    def target_shapes(self, num_keypoints: int) -> dict[str, tuple[int, ...]]:
        """Per-instance shape of each target in ``target_keys`` (the batch dimension left out)."""


C = TypeVar("C", bound=type[Codec])

_CODECS: dict[str, type[Codec]] = {}


def register_codec(name: str) -> Callable[[C], C]:
    """Class decorator: make a frozen-dataclass :class:`Codec` buildable as ``build_codec(name)``."""

    def wrap(cls: C) -> C:
        if not (isinstance(cls, type) and issubclass(cls, Codec) and dataclasses.is_dataclass(cls)):
            raise TypeError(f"@register_codec({name!r}) needs a dataclass subclassing Codec, got {cls!r}")
        if name in _CODECS and _CODECS[name] is not cls:
            raise ValueError(f"codec name {name!r} is already taken by {_CODECS[name].__qualname__}")
        _CODECS[name] = cls
        return cls

    return wrap


def available_codecs() -> tuple[str, ...]:
    """Registered codec names, sorted."""
    return tuple(sorted(_CODECS))


def build_codec(name: str, **kwargs: object) -> Codec:
    """Build the codec registered as ``name`` from its dataclass fields.

    Raises ValueError for an unknown name (listing the available ones), for an unknown keyword
    (listing the codec's fields) and for a missing required field.
    """
    try:
        cls = _CODECS[name]
    except KeyError:
        raise ValueError(f"unknown codec {name!r}; available codecs: {', '.join(available_codecs())}") from None
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        raise ValueError(
            f"codec {name!r} ({cls.__name__}) has no field(s) {', '.join(unknown)}; its fields are: {', '.join(fields)}"
        )
    missing = [
        f.name
        for f in fields.values()
        if f.name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ValueError(f"codec {name!r} ({cls.__name__}) needs field(s) {', '.join(missing)}")
    return cls(**kwargs)


def codec_class(name: str) -> type[Codec]:
    """The class registered as ``name``."""
    if name not in _CODECS:
        raise ValueError(f"unknown codec {name!r}; available codecs: {', '.join(available_codecs())}")
    return _CODECS[name]
