"""Nested dicts of params, flattened to dotted keys (for MLflow params and logs)."""

from __future__ import annotations

import dataclasses
from typing import Any


def to_dict(params: Any) -> dict[str, Any]:
    """Plain nested dict of a params object (for logging and JSON)."""
    return dataclasses.asdict(params)


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
