"""Write dotted parameter overrides (``{"train.lr": 0.001}``) into params.yaml, as ``dvc exp run -S`` would.

The overrides are checked by the typed loader (:func:`posecore.config.parse_params`) before
anything is written, so a misspelt key or a wrong type fails with the loader's message and
leaves the file untouched. The file is rewritten keeping its comments and quoting (ruamel's
round trip) when that text reads back, with PyYAML as the stages read it, to exactly the
intended values; otherwise (YAML 1.1 words such as ``off``/``yes`` written unquoted) it is
written plainly with PyYAML and the comments are lost.
"""

from __future__ import annotations

import copy
import io
import logging
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

import yaml

from posecore.config import parse_params
from posecore.io import atomic_write_text

_log = logging.getLogger("flows.params")


def set_dotted(tree: MutableMapping[str, Any], dotted: str, value: Any, new_map: type = dict) -> None:
    """``tree["a"]["b"] = value`` for ``dotted = "a.b"``, creating missing mappings with ``new_map``."""
    *parents, leaf = dotted.split(".")
    if not leaf or not all(parents):
        raise ValueError(f"params override {dotted!r} is not a dotted key like 'train.lr'")
    node: Any = tree
    for depth, part in enumerate(parents):
        child = node.get(part)
        if child is None:
            child = node[part] = new_map()
        elif not isinstance(child, MutableMapping):
            where = ".".join(parents[: depth + 1])
            raise ValueError(f"params override {dotted!r}: {where} is a {type(child).__name__}, not a section")
        node = child
    node[leaf] = value


def _round_trip(text: str, overrides: Mapping[str, Any]) -> str | None:
    """``text`` with the overrides applied by ruamel (comments kept), or None without ruamel."""
    try:
        from ruamel.yaml import YAML
        from ruamel.yaml.comments import CommentedMap
    except ImportError:
        return None
    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.width = 4096
    data = rt.load(text) or CommentedMap()
    for dotted, value in overrides.items():
        set_dotted(data, dotted, copy.deepcopy(value), CommentedMap)
    out = io.StringIO()
    rt.dump(data, out)
    return out.getvalue()


def write_overrides(params_file: str | Path, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Apply ``overrides`` (dotted key -> value) to ``params_file``; returns the new parsed contents.

    Raises :class:`posecore.config.ConfigError` (nothing written) when the result is not valid params.
    """
    path = Path(params_file)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; params overrides need the repository's params.yaml")
    original = path.read_text()
    expected = yaml.safe_load(original) or {}
    for dotted, value in overrides.items():
        set_dotted(expected, dotted, copy.deepcopy(value))
    parse_params(copy.deepcopy(expected), str(path))
    text = _round_trip(original, overrides)
    if text is None or yaml.safe_load(text) != expected:
        _log.warning("%s: rewriting without its comments (the round trip would change values)", path)
        text = yaml.safe_dump(expected, sort_keys=False)
    atomic_write_text(path, text)
    return expected
