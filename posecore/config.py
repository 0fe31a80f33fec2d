"""Typed configuration: ``params.yaml`` read once into frozen dataclasses.

Every section is a dataclass; :func:`load_params` builds :class:`Params` from the
YAML and rejects unknown keys, wrong types and out-of-range values, naming the dotted
key and what is allowed. Stages and flows receive the typed object, never raw dicts.

Each section's dataclass lives in the package it configures (``data`` in
:mod:`posecore.datasets.converters.config`, ``model`` in :mod:`posecore.models.config`, ``encode``
in :mod:`posecore.data.config`, ``tracking`` in :mod:`posecore.experiment.config`, ...); this
module only aggregates them and loads them. To add a section: define a frozen dataclass with
defaults in its package (``field(metadata=...)`` may carry ``range=(lo, hi)`` for numbers or
``choices=callable_or_list`` for strings, and ``yaml_key="from"`` (:data:`posecore._flatten.YAML_KEY`)
for a YAML key that cannot be a field name, such as a Python keyword) and add it as a field of
:class:`Params`. dvc.yaml names the dotted keys a stage uses.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

from posecore._flatten import flatten as flatten
from posecore._flatten import to_dict as to_dict
from posecore._flatten import yaml_name
from posecore.data.config import EncodeParams
from posecore.datasets.converters.config import DataParams
from posecore.datasets.synthetic.config import SynthParams
from posecore.engine.config import TrainConfig, check_train_config
from posecore.engine.lifting import LiftParams
from posecore.errors import UserError
from posecore.evaluation.topdown import EvalConfig
from posecore.experiment import TrackingConfig
from posecore.export.config import ExportConfig
from posecore.metainfo import available_metas
from posecore.models.config import ModelParams
from posecore.models.recipe import RECIPE_SECTIONS, fill_recipe
from posecore.registry import RegisterConfig
from posecore.storage import StorageConfig
from posecore.transforms.topdown import TopdownAugmentation

T = TypeVar("T")


class ConfigError(UserError, ValueError):
    """params.yaml (or an override) is invalid; the message lists every bad key."""

    def __init__(self, errors: list[str], file: str = "params.yaml") -> None:
        self.errors = errors
        super().__init__(f"{file} is invalid:\n" + "\n".join(f"  - {e}" for e in errors))


@dataclass(frozen=True)
class Params:
    data: DataParams = field(default_factory=DataParams)
    synth: SynthParams = field(default_factory=SynthParams)
    model: ModelParams = field(default_factory=ModelParams)
    encode: EncodeParams = field(default_factory=EncodeParams)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: TopdownAugmentation = field(default_factory=TopdownAugmentation)
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    register: RegisterConfig = field(default_factory=RegisterConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    lift: LiftParams = field(default_factory=LiftParams)


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) in (list, tuple):
        return f"a list of {_type_name(get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def _coerce(tp: Any, value: Any, key: str, errors: list[str]) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key, errors)
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _coerce(inner[0], value, key, errors)
        for alternative in inner:  # the first type the value fits
            trial: list[str] = []
            out = _coerce(alternative, value, key, trial)
            if not trial:
                return out
        errors.append(
            f"{key}: expected {' or '.join(_type_name(a) for a in inner)}, got {type(value).__name__} {value!r}"
        )
        return value
    if origin is Literal:
        # YAML 1.1 (and tools that rewrite params.yaml, such as `dvc exp run -S`) turn an
        # unquoted off/on into a boolean; read it back as the word the user wrote.
        if isinstance(value, bool) and ("off" if not value else "on") in get_args(tp):
            value = "off" if not value else "on"
        if value not in get_args(tp):
            errors.append(f"{key}: {value!r} is not allowed; allowed values: {_type_name(tp)}")
        return value
    if origin is dict:
        kt, vt = get_args(tp)
        if value is None:
            return {}
        if not isinstance(value, dict):
            errors.append(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
            return {}
        return {_coerce(kt, k, f"{key}.{k}", errors): _coerce(vt, v, f"{key}.{k}", errors) for k, v in value.items()}
    if origin in (list, tuple):
        args = get_args(tp)
        if not isinstance(value, list | tuple):
            errors.append(f"{key}: expected a list, got {type(value).__name__} {value!r}")
            return value
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{key}[{i}]", errors) for i, v in enumerate(value))
        if origin is tuple:
            if len(value) != len(args):
                errors.append(f"{key}: expected {len(args)} values, got {len(value)}")
                return tuple(value)
            return tuple(_coerce(a, v, f"{key}[{i}]", errors) for i, (a, v) in enumerate(zip(args, value, strict=True)))
        return [_coerce(args[0], v, f"{key}[{i}]", errors) for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            errors.append(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            errors.append(f"{key}: expected a number, got {type(value).__name__} {value!r}")
            return value
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            errors.append(f"{key}: expected a string, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"config type {tp!r} for {key} is not supported by posecore.config")


def _build(cls: type[T], raw: Any, prefix: str, errors: list[str]) -> T:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        errors.append(f"{prefix or 'params'}: expected a mapping, got {type(raw).__name__} {raw!r}")
        return cls()
    hints = typing.get_type_hints(cls)
    # keyed by the params.yaml spelling (a field may be renamed, e.g. `from`: see posecore._flatten.YAML_KEY)
    fields = {yaml_name(f): f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in raw:
        if key not in fields:
            where = f"{prefix}.{key}" if prefix else str(key)
            errors.append(f"{where}: unknown key; allowed keys: {', '.join(fields)}")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in raw:
            continue
        key = f"{prefix}.{name}" if prefix else name
        n_errors = len(errors)
        value = _coerce(hints[f.name], raw[name], key, errors)
        if len(errors) > n_errors:
            continue
        lo_hi = f.metadata.get("range")
        if lo_hi is not None and isinstance(value, int | float) and not (lo_hi[0] <= value <= lo_hi[1]):
            errors.append(f"{key}: {value} is out of range; allowed: {lo_hi[0]} to {lo_hi[1]}")
            continue
        choices = f.metadata.get("choices")
        if choices is not None:
            allowed = list(choices() if callable(choices) else choices)
            if value not in allowed:
                errors.append(f"{key}: {value!r} is not allowed; allowed values: {', '.join(map(str, allowed))}")
                continue
        kwargs[f.name] = value
    try:
        return cls(**kwargs)
    except ValueError as exc:  # a section's own cross-field check (__post_init__)
        errors.append(f"{prefix or 'params'}: {exc}")
        return cls()


def _check_cross(params: Params, errors: list[str]) -> None:
    if params.synth.min_people > params.synth.max_people:
        errors.append(
            f"synth.min_people ({params.synth.min_people}) must be <= synth.max_people ({params.synth.max_people})"
        )
    if params.data.source == "synthetic" and params.data.meta != params.synth.meta:
        errors.append(
            f"data.meta ({params.data.meta!r}) must equal synth.meta ({params.synth.meta!r}) when data.source is "
            "'synthetic': the synth stage draws that skeleton"
        )
    if params.data.source == "synthetic" and params.data.root != params.synth.out:
        errors.append(
            f"data.root ({params.data.root!r}) must equal synth.out ({params.synth.out!r}) when data.source is "
            "'synthetic': the convert stage reads what the synth stage writes"
        )
    try:
        spec = params.model.spec()
    except (ValueError, TypeError) as exc:
        message = str(exc)
        errors.append(message if message.startswith("model.") else f"model: {message}")
    else:
        try:
            spec.build_codec()
        except (ValueError, TypeError) as exc:
            errors.append(f"model.codec: {exc}")
    errors.extend(check_train_config(params.train))
    errors.extend(check_train_config(params.lift.train, "lift.train"))
    lift_meta = params.lift.meta
    if not (lift_meta.endswith((".yaml", ".yml")) or lift_meta in available_metas()):
        errors.append(f"lift.meta: {lift_meta!r} is not a known dataset meta; allowed: h36m or a path to a .yaml file")
    if params.lift.source == "h36m" and not (params.lift.root and params.lift.annotations and params.lift.cameras):
        errors.append(
            "lift.source is 'h36m': set lift.root, lift.annotations ({train: FILE.npz, val: FILE.npz}) and "
            "lift.cameras (the camera JSON), relative to lift.root"
        )
    meta = params.data.meta
    if not (meta.endswith((".yaml", ".yml")) or meta in available_metas()):
        errors.append(
            f"data.meta: {meta!r} is not a known dataset meta; allowed: {', '.join(available_metas())} or a path to a .yaml file"
        )


def parse_params(raw: Any, file: str = "params.yaml") -> Params:
    """Build :class:`Params` from parsed YAML, raising :class:`ConfigError` with every problem.

    Null ``train``/``augment`` keys first take the model preset's recipe (:mod:`posecore.models.recipe`)."""
    errors: list[str] = []
    if isinstance(raw, dict):
        hints = typing.get_type_hints(Params)
        keys = {name: [yaml_name(f) for f in dataclasses.fields(hints[name])] for name in RECIPE_SECTIONS}
        raw, errors = fill_recipe(raw, ModelParams().preset, keys)
    params = _build(Params, raw, "", errors)
    if not errors:
        _check_cross(params, errors)
    if errors:
        raise ConfigError(errors, file)
    return params


def load_params(path: str | Path = "params.yaml", overrides: dict[str, Any] | None = None) -> Params:
    """Read ``path`` once; ``overrides`` maps dotted keys (``"train.lr"``) to values."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) if path.exists() else {}
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], str(path)) from exc
    raw = raw or {}
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return parse_params(raw, str(path))
