"""The ``data:`` section of params.yaml: a :class:`SourceSpec` plus where the converted dataset goes."""

from __future__ import annotations

from dataclasses import dataclass, field

from posecore.datasets.converters._base import SourceSpec


def _converter_names() -> list[str]:
    from posecore.datasets.converters import available_converters  # the registry imports this package's modules

    return available_converters()


@dataclass(frozen=True)
class DataParams(SourceSpec):
    """The source dataset and where the canonical (converted) dataset goes (``stages/convert.py``)."""

    source: str = field(default="synthetic", metadata={"choices": _converter_names})
    out: str = "data/converted"
