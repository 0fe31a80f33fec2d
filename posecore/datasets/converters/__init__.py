"""Converters from native keypoint formats to the canonical COCO keypoint dataset.

To add a format, write a module here with one function decorated by
``@register_converter("name")`` (from ``_base.py``) that parses the native files into
:class:`RawSplit` objects, and add the module to the imports below::

    @register_converter("myformat", default_meta="coco")
    def convert_myformat(spec: SourceSpec, meta: DatasetMeta) -> list[RawSplit]:
        ...

Validation, ``--drop-invalid``, the train/val split and the atomic write are shared
(see ``_base.py``); a converter never writes files itself. The lookups
(:func:`available_converters`, :func:`get_converter`) live here, below the imports of every
converter module, so the registry they read is always complete.
"""

from __future__ import annotations

from pathlib import Path

from posecore.datasets.converters import aic, coco, coco_wholebody, crowdpose, dlc, lsp, mpii, posetrack18
from posecore.datasets.converters._base import (
    CONVERTERS,
    ConverterFn,
    ConvertReport,
    RawSplit,
    SourceSpec,
    finalize_splits,
    register_converter,
    write_canonical,
)
from posecore.datasets.layout import DatasetLayout
from posecore.io import atomic_write_json
from posecore.metainfo import load_meta
from posecore.validation import summarize

_BUILTIN = (
    aic,
    coco,
    coco_wholebody,
    crowdpose,
    dlc,
    lsp,
    mpii,
    posetrack18,
)  # importing a module registers its converter


def default_meta(name: str) -> str:
    """The meta a format uses unless ``--meta``/``data.meta`` says otherwise."""
    return CONVERTERS.info(name)["default_meta"] if name in CONVERTERS else "coco"


def available_converters() -> list[str]:
    return CONVERTERS.names()


def get_converter(name: str) -> ConverterFn:
    if name not in CONVERTERS:
        raise ValueError(f"unknown data.source {name!r}; choose one of: {', '.join(available_converters())}")
    return CONVERTERS.get(name)


def convert(spec: SourceSpec, out_dir: str | Path) -> ConvertReport:
    """Convert ``spec`` into the canonical dataset at ``out_dir`` (replaced atomically); with ``merge``
    sources (``DataParams.merge``), all of them merged into one (:mod:`posecore.datasets.converters.merge`)."""
    merge = getattr(spec, "merge", None)
    if merge:
        from posecore.datasets.converters.merge import convert_merged

        report = convert_merged(spec, getattr(spec, "name", "") or spec.source, list(merge), Path(out_dir))
    else:
        meta = load_meta(spec.meta)
        raw = get_converter(spec.source)(spec, meta)
        splits, dropped, dropped_problems = finalize_splits(raw, meta, spec)
        counts = write_canonical(splits, meta, spec, Path(out_dir))
        report = ConvertReport(Path(out_dir), counts, dropped, summarize(dropped_problems))
    atomic_write_json(DatasetLayout(out_dir).report, report.to_dict(), indent=2)
    return report


__all__ = [
    "ConvertReport",
    "RawSplit",
    "SourceSpec",
    "available_converters",
    "convert",
    "default_meta",
    "get_converter",
    "register_converter",
]
