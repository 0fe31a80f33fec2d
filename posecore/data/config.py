"""The ``encode:`` section of params.yaml: a :class:`CacheSpec` plus where the cache lives."""

from __future__ import annotations

from dataclasses import dataclass

from posecore.data.cache import CacheSpec


@dataclass(frozen=True)
class EncodeParams(CacheSpec):
    """The target-encoding cache (``stages/encode.py``); ``out`` is not part of the cache key."""

    out: str = "data/cache"
