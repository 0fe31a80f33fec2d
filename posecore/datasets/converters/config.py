"""The ``data:`` section of params.yaml: a :class:`SourceSpec` plus where the converted dataset goes."""

from __future__ import annotations

from dataclasses import dataclass, field

from posecore.datasets.converters._base import SourceSpec
from posecore.datasets.converters.merge import MergeSource, converter_names


@dataclass(frozen=True)
class DataParams(SourceSpec):
    """The source dataset and where the canonical (converted) dataset goes (``stages/convert.py``)."""

    source: str = field(default="synthetic", metadata={"choices": converter_names})
    out: str = "data/converted"
    #: The primary source's label in a merged dataset's provenance (default: ``source``).
    name: str = ""
    #: More sources merged into the same canonical dataset, mapped to ``meta``'s keypoints
    #: (:mod:`posecore.datasets.converters.merge`).
    merge: list[MergeSource] = field(default_factory=list)
