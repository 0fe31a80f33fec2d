"""Nested dicts of params, flattened to dotted keys (for MLflow params and logs)."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

YAML_KEY = "yaml_key"
"""``field(metadata={YAML_KEY: "from"})``: the key params.yaml spells a field with, when the field
cannot have that name (a Python keyword); :func:`posecore.config.load_params` reads it and
:func:`to_dict` writes it, so logged params use the words of params.yaml."""


def yaml_name(f: dataclasses.Field[Any]) -> str:
    """The params.yaml key of dataclass field ``f`` (its name unless :data:`YAML_KEY` renames it)."""
    return str(f.metadata.get(YAML_KEY, f.name))


def to_dict(params: Any) -> dict[str, Any]:
    """Plain nested dict of a params object (for logging and JSON), keyed as params.yaml spells it."""
    return _plain(params)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {yaml_name(f): _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    return copy.deepcopy(value)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}`` for MLflow params."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out
