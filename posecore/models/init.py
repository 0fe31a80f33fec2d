"""Warm starts: put a source's weights into a built model, and carry the head's rows by keypoint name.

A source (:class:`InitSource`: a state dict, the source's keypoint names when known, a
description) is read by :mod:`posecore.registry.warm_start` from a checkpoint file, a bundle
folder or a registry reference (that module sits above this package because it reads bundles
and the registry). Here :func:`apply_init` maps the source's keys (``model.init.prefix`` /
``into``), drops the ``exclude`` patterns, compares the rest with the model's state dict and
copies what fits. It returns an :class:`InitReport` naming every tensor:

- loaded: copied whole;
- transferred: copied keypoint by keypoint;
- missing: the model has it, the source does not, so it keeps its fresh initialisation;
- unexpected: the source has it, the model does not;
- mismatched: same key, another shape (kept fresh);
- excluded: matched an ``exclude`` pattern.

Keypoint-aware transfer: each head declares its keypoint-indexed tensors
(``keypoint_axes()``: name -> (dim, values per keypoint), keypoint-major). When the source's
keypoint names differ from the model's (COCO-17 -> LSP-14, or the same names in another order),
those tensors are carried slice by slice: the model's ``left_knee`` takes the source's
``left_knee`` (or the source keypoint ``keypoint_map`` names for it; a list of source keypoints
gives the mean of their slices, so a linear last layer starts out predicting their mean: LSP's
``neck`` from COCO's two shoulders). Model keypoints without a source keep their fresh
initialisation (``fresh_keypoints``). A source without keypoint names
(a plain state dict) loads tensors of equal shape only.

With ``strict`` any missing, unexpected or mismatched tensor raises :class:`InitError`, which
lists them all. The check runs before the model is touched. A keypoint-wise transfer is allowed
under ``strict``: asking for another skeleton is what it is for.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from posecore.errors import UserError
from posecore.models.config import InitParams

SHOWN = 3
"""How many names :meth:`InitReport.summary` shows per category."""

Mismatch = tuple[str, tuple[int, ...], tuple[int, ...]]
"""(model key, source shape, model shape)."""


class InitError(UserError, ValueError):
    """The warm-start source cannot be read or does not fit the model as ``model.init`` asks; the message says what."""


@dataclass(frozen=True)
class InitSource:
    """Weights to start from.

    ``state``: {key: tensor}, keyed as the source saved them (before ``prefix``/``into``).
    ``keypoint_names``: the source head's keypoints in order, None when the file does not say.
    ``description``: where it came from, for messages. ``origin``: JSON-able facts about the
    source, such as its kind, path, registered model, version and run.
    """

    state: Mapping[str, Tensor]
    keypoint_names: tuple[str, ...] | None
    description: str
    origin: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InitReport:
    """What a warm start did to every tensor of the model (module docstring); ``to_dict`` is JSON-able."""

    source: str
    loaded: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[Mismatch, ...] = ()
    excluded: tuple[str, ...] = ()
    transferred: tuple[tuple[str, int], ...] = ()
    fresh_keypoints: tuple[str, ...] = ()
    origin: Mapping[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {
            "loaded": len(self.loaded),
            "transferred": len(self.transferred),
            "fresh_keypoints": len(self.fresh_keypoints),
            "missing": len(self.missing),
            "unexpected": len(self.unexpected),
            "mismatched": len(self.mismatched),
            "excluded": len(self.excluded),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "origin": dict(self.origin),
            "counts": self.counts(),
            "loaded": list(self.loaded),
            "transferred": [{"key": k, "keypoints": n} for k, n in self.transferred],
            "fresh_keypoints": list(self.fresh_keypoints),
            "missing": list(self.missing),
            "unexpected": list(self.unexpected),
            "mismatched": [{"key": k, "source_shape": list(s), "model_shape": list(m)} for k, s, m in self.mismatched],
            "excluded": list(self.excluded),
        }

    def summary(self) -> str:
        """One line for the source, then one per category: its count and its first few names."""
        shown = {
            "loaded": list(self.loaded),
            "transferred": [f"{k} ({n} keypoints)" for k, n in self.transferred],
            "fresh_keypoints": list(self.fresh_keypoints),
            "missing": list(self.missing),
            "unexpected": list(self.unexpected),
            "mismatched": [f"{k} {list(s)} -> {list(m)}" for k, s, m in self.mismatched],
            "excluded": list(self.excluded),
        }
        lines = [f"model.init from {self.source}"]
        for name, items in shown.items():
            more = f", ... (+{len(items) - SHOWN})" if len(items) > SHOWN else ""
            lines.append(f"  {name:<16}{len(items):>5}  {', '.join(items[:SHOWN])}{more}".rstrip())
        return "\n".join(lines)


def select_state(state: Mapping[str, Tensor], prefix: str = "", into: str = "") -> dict[str, Tensor]:
    """The entries whose key starts with ``prefix``, that prefix stripped and ``into`` put in front
    (MMPose's ``prefix``: ``backbone.`` keeps a whole model's backbone, ``into: backbone.`` loads a
    backbone-only file into a model's backbone)."""
    return {into + key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}


KeypointMap = Mapping[str, str | Sequence[str]]
"""``model.init.keypoint_map``: {model keypoint: source keypoint, or source keypoints to average}."""


def keypoint_sources(
    target: Sequence[str], source: Sequence[str], keypoint_map: KeypointMap | None = None
) -> list[tuple[int, ...] | None]:
    """For each model keypoint, the indices of the source keypoints it takes (``keypoint_map[name]``,
    one name or a list whose slices are averaged; else the same name), or None: it starts fresh.
    Raises :class:`InitError` when the map names keypoints that do not exist or an empty list."""
    chosen = {t: (s,) if isinstance(s, str) else tuple(s) for t, s in (keypoint_map or {}).items()}
    problems = [f"{t!r} is not a keypoint of the model" for t in chosen if t not in target]
    problems += [f"{t!r} maps to an empty list" for t, names in chosen.items() if not names]
    problems += [
        f"{s!r} (for {t!r}) is not a keypoint of the source"
        for t, names in chosen.items()
        for s in names
        if s not in source
    ]
    if problems:
        raise InitError(
            "model.init.keypoint_map maps {model keypoint: source keypoint or [source keypoints to average]}, but "
            + "; ".join(problems)
            + f". The model's keypoints: {', '.join(target)}. The source's: {', '.join(source)}"
        )
    index = {name: i for i, name in enumerate(source)}
    out: list[tuple[int, ...] | None] = []
    for name in target:
        names = chosen.get(name, (name,))
        out.append(tuple(index[n] for n in names) if all(n in index for n in names) else None)
    return out


def keypoint_axes(model: nn.Module) -> dict[str, tuple[int, int]]:
    """Every keypoint-indexed tensor of ``model``: full state-dict key -> (dim, values per keypoint),
    from the ``keypoint_axes()`` of its heads."""
    out: dict[str, tuple[int, int]] = {}
    for name, module in model.named_modules():
        declared = getattr(module, "keypoint_axes", None)
        if callable(declared):
            prefix = f"{name}." if name else ""
            out.update({prefix + key: axes for key, axes in declared().items()})
    return out


def _rows_fit(src: Tensor, dst: Tensor, dim: int, per: int, n_src: int, n_dst: int) -> bool:
    if src.ndim != dst.ndim or src.shape[dim] != n_src * per or dst.shape[dim] != n_dst * per:
        return False
    return all(a == b for i, (a, b) in enumerate(zip(src.shape, dst.shape, strict=True)) if i != dim)


def apply_init(model: nn.Module, source: InitSource, cfg: InitParams, keypoint_names: Sequence[str]) -> InitReport:
    """Copy ``source`` into ``model`` in place as ``cfg`` (``model.init``) says; ``keypoint_names``
    are the model's keypoints (its dataset meta's), in head order.

    Raises :class:`InitError` (the model untouched) when nothing of the source is left after
    ``prefix``, when ``keypoint_map`` names unknown keypoints or the source has no names to map,
    and under ``strict`` when any tensor is missing, unexpected or mismatched.
    """
    target = model.state_dict()  # tensors sharing storage with the parameters and buffers
    mapped = select_state(source.state, cfg.prefix, cfg.into)
    if not mapped:
        first = ", ".join(list(source.state)[:SHOWN])
        raise InitError(
            f"model.init.prefix {cfg.prefix!r} keeps no tensor of {source.description} (its keys look like "
            f"{first}); set the prefix its keys start with, or '' for all"
        )
    names = tuple(keypoint_names)
    if cfg.keypoint_map and source.keypoint_names is None:
        raise InitError(
            f"model.init.keypoint_map needs the source's keypoint names, but {source.description} does not "
            "carry them (a plain state dict); start from a bundle, a registry model or a posecore training "
            "folder (model.json and meta.yaml beside the checkpoint), or drop the map"
        )
    by_keypoint: list[tuple[int, ...] | None] | None = None
    if source.keypoint_names is not None:
        index = keypoint_sources(names, source.keypoint_names, cfg.keypoint_map)
        if index != [(i,) for i in range(len(source.keypoint_names))]:
            by_keypoint = index
    axes = keypoint_axes(model) if by_keypoint is not None else {}

    def excluded(key: str) -> bool:
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in cfg.exclude)

    loaded, missing, excluded_keys, mismatched = [], [], [], []
    transferred: list[tuple[str, int]] = []
    rows: list[tuple[str, int, int]] = []
    for key, dst in target.items():
        if excluded(key):
            excluded_keys.append(key)
        elif key not in mapped:
            missing.append(key)
        elif key in axes and by_keypoint is not None:
            dim, per = axes[key]
            src = mapped[key]
            if _rows_fit(src, dst, dim, per, len(source.keypoint_names or ()), len(names)):
                rows.append((key, dim, per))
                transferred.append((key, sum(i is not None for i in by_keypoint)))
            else:
                mismatched.append((key, tuple(src.shape), tuple(dst.shape)))
        elif tuple(mapped[key].shape) == tuple(dst.shape):
            loaded.append(key)
        else:
            mismatched.append((key, tuple(mapped[key].shape), tuple(dst.shape)))
    unexpected = [key for key in mapped if key not in target and not excluded(key)]
    if cfg.strict and (missing or unexpected or mismatched):
        problems = (
            [f"missing in the source: {k}" for k in missing]
            + [f"not in the model: {k}" for k in unexpected]
            + [f"shape {list(s)} in the source, {list(m)} in the model: {k}" for k, s, m in mismatched]
        )
        raise InitError(
            f"model.init.strict: {source.description} does not fit the model "
            f"({len(missing)} missing, {len(unexpected)} unexpected, {len(mismatched)} mismatched):\n"
            + "\n".join(f"  - {p}" for p in problems)
            + "\nSet model.init.strict: false to load what fits, or adjust prefix/into/exclude"
        )
    with torch.no_grad():
        for key in loaded:
            target[key].copy_(mapped[key])
        for key, dim, per in rows:
            src, dst = mapped[key], target[key]
            for t, picks in enumerate(by_keypoint or ()):
                if picks is not None:
                    rows_of = [src.narrow(dim, s * per, per) for s in picks]
                    dst.narrow(dim, t * per, per).copy_(rows_of[0] if len(picks) == 1 else torch.stack(rows_of).mean(0))
    fresh = tuple(n for n, s in zip(names, by_keypoint or (), strict=False) if s is None)
    return InitReport(
        source=source.description,
        loaded=tuple(loaded),
        missing=tuple(missing),
        unexpected=tuple(unexpected),
        mismatched=tuple(mismatched),
        excluded=tuple(excluded_keys),
        transferred=tuple(transferred),
        fresh_keypoints=fresh,
        origin=dict(source.origin),
    )


__all__ = [
    "InitError",
    "InitReport",
    "InitSource",
    "apply_init",
    "keypoint_axes",
    "keypoint_sources",
    "select_state",
]
