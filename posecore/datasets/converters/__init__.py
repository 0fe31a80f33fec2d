"""Converters from native keypoint formats to the canonical COCO keypoint dataset.

To add a format, write a module here with one function decorated by
``@register_converter("name")`` that parses the native files into
:class:`RawSplit` objects, and import it at the bottom of this file::

    @register_converter("myformat")
    def convert_myformat(spec: SourceSpec, meta: DatasetMeta) -> list[RawSplit]:
        ...

Validation, ``--drop-invalid``, the train/val split and the atomic write are shared
(see ``_base.py``); a converter never writes files itself.
"""

from __future__ import annotations

from collections.abc import Callable

from posecore.datasets.converters._base import ConvertReport, RawSplit, SourceSpec, convert
from posecore.metainfo import DatasetMeta

ConverterFn = Callable[[SourceSpec, DatasetMeta], list[RawSplit]]
_CONVERTERS: dict[str, ConverterFn] = {}


def register_converter(name: str, default_meta: str = "coco") -> Callable[[ConverterFn], ConverterFn]:
    def deco(fn: ConverterFn) -> ConverterFn:
        if name in _CONVERTERS:
            raise ValueError(f"converter {name!r} registered twice")
        _CONVERTERS[name] = fn
        _DEFAULT_META[name] = default_meta
        return fn

    return deco


_DEFAULT_META: dict[str, str] = {}


def default_meta(name: str) -> str:
    """The meta a format uses unless ``--meta``/``data.meta`` says otherwise."""
    return _DEFAULT_META.get(name, "coco")


def available_converters() -> list[str]:
    return sorted(_CONVERTERS)


def get_converter(name: str) -> ConverterFn:
    if name not in _CONVERTERS:
        raise ValueError(f"unknown data.source {name!r}; choose one of: {', '.join(available_converters())}")
    return _CONVERTERS[name]


__all__ = [
    "ConvertReport",
    "RawSplit",
    "SourceSpec",
    "convert",
    "register_converter",
    "available_converters",
    "get_converter",
    "default_meta",
]

# Importing the modules registers them.
from posecore.datasets.converters import (  # noqa: E402,F401  # noqa: E402,F401
    aic,
    coco,  # noqa: E402,F401
    coco_wholebody,
    crowdpose,
    dlc,
    lsp,
    mpii,
)
