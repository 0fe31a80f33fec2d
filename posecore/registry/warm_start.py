"""Reading ``model.init.from`` into weights (:class:`~posecore.models.init.InitSource`), and
:func:`warm_start`, which applies them to a built model.

``from`` is one of:

- ``""`` or ``"none"``: no warm start;
- ``"champion"``: the champion of the registered model this training registers to
  (``register.model_name`` for its task, :func:`~posecore.registry.config.registered_model_name`),
  the scheduled retrain's default; while there is none yet, training starts cold with a warning;
- a weights file: a posecore training checkpoint (``best.pt`` / ``latest.pt``; its EMA weights
  when the run kept an EMA, the deployed ones), MMPose's ``{"state_dict": ...}``,
  ``{"model": ...}``, or a plain state dict;
- a training folder (``train.checkpoint_dir``): its ``best.pt``;
- a bundle folder: its ``weights.pt`` (:mod:`posecore.export.bundle`);
- a registry reference ``NAME@ALIAS`` / ``NAME/VERSION`` (``models:/`` optional), pulled with
  :func:`posecore.registry.pull.pull` and read as a bundle. An existing path wins over a
  reference of the same spelling.

Keypoint names come with bundles (bundle.json) and with posecore checkpoints that have their
``model.json`` and ``meta.yaml`` beside them; other files have none, so only same-shape tensors
load from them (see :mod:`posecore.models.init`).

Files are read with ``torch.load(..., weights_only=True)`` only. A file that pickles anything
besides tensors and plain containers is refused, never executed. Corrupt and foreign files get
an :class:`~posecore.models.init.InitError` naming the file and what was expected.

This module sits in the registry package because that is the lowest layer that sees all three
kinds of source: bundles (:mod:`posecore.export`), checkpoints (:mod:`posecore.engine`) and the
registry. What is done with the weights is :mod:`posecore.models.init`'s.
"""

from __future__ import annotations

import logging
import pickle
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from posecore.engine.checkpoint import BEST, CHECKPOINT_FORMAT, inference_state_dict
from posecore.export.bundle import INFO_FILE, WEIGHTS_FILE, BundleError, BundleInfo
from posecore.export.trained import META_YAML, MODEL_JSON
from posecore.metainfo import load_meta
from posecore.models.config import InitParams
from posecore.models.init import InitError, InitReport, InitSource, apply_init
from posecore.registry.config import registered_model_name
from posecore.registry.pull import open_client, parse_model_ref, pull, version_by_alias
from posecore.registry.tags import CHAMPION, TAG_INIT_SOURCE, TAG_PARENT_RUN, TAG_PARENT_VERSION

_log = logging.getLogger(__name__)

EXPECTED = (
    "a state dict ({name: tensor}, torch.save(model.state_dict(), path)), a posecore checkpoint "
    "(best.pt), or a checkpoint holding one under 'state_dict' or 'model' (MMPose)"
)


def load_weights_file(path: str | Path) -> tuple[dict[str, Tensor], str]:
    """The state dict in ``path`` and what kind of file held it (for messages).

    Raises :class:`InitError` for a missing, corrupt or foreign file, and for one whose pickle
    holds more than tensors and plain containers (``weights_only`` loading refuses it).
    """
    path = Path(path)
    if not path.is_file():
        raise InitError(f"model.init.from: {path} does not exist")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        what = f"a pickled {found[1]}" if found else "pickled objects"
        raise InitError(
            f"{path} holds {what} besides tensors, and posecore loads weights only (torch.load with "
            f"weights_only=True never runs pickled code); expected {EXPECTED}"
        ) from None
    except Exception as exc:  # torch reports corrupt and foreign files with many error types
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        raise InitError(
            f"{path} is not a readable PyTorch weights file ({type(exc).__name__}: {detail}); expected {EXPECTED}"
        ) from None
    return _unwrap(raw, path)


def _unwrap(raw: Any, path: Path) -> tuple[dict[str, Tensor], str]:
    if isinstance(raw, dict) and raw.get("format") == CHECKPOINT_FORMAT and isinstance(raw.get("model"), dict):
        state, kind = inference_state_dict(raw), "posecore checkpoint" + (", EMA weights" if raw.get("ema") else "")
    elif isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        state, kind = raw["state_dict"], "checkpoint's state_dict"
    elif isinstance(raw, dict) and isinstance(raw.get("model"), dict):
        state, kind = raw["model"], "checkpoint's model"
    elif isinstance(raw, dict) and raw:
        state, kind = raw, "state dict"
    else:
        shown = f"a dict with keys {sorted(map(str, raw))[:5]}" if isinstance(raw, dict) else f"a {type(raw).__name__}"
        raise InitError(f"{path} holds {shown}; expected {EXPECTED}")
    not_tensors = [str(k) for k, v in state.items() if not isinstance(v, Tensor)]
    if not_tensors or not state:
        raise InitError(
            f"{path} ({kind}) holds {'no tensors' if not state else 'entries that are not tensors: ' + ', '.join(not_tensors[:5])}"
            f"; expected {EXPECTED}"
        )
    return {str(k): v for k, v in state.items()}, kind


def _checkpoint_keypoints(path: Path) -> tuple[str, ...] | None:
    """The keypoint names of a posecore checkpoint with its training folder's description beside it."""
    folder = path.parent
    if (folder / MODEL_JSON).is_file() and (folder / META_YAML).is_file():
        return tuple(load_meta(folder / META_YAML).keypoint_names)
    return None


def _from_file(path: Path) -> InitSource:
    state, kind = load_weights_file(path)
    names = _checkpoint_keypoints(path) if kind.startswith("posecore checkpoint") else None
    return InitSource(state, names, f"{path} ({kind})", {"kind": "checkpoint", "path": str(path)})


def _from_bundle(folder: Path, origin: dict[str, Any] | None = None, label: str | None = None) -> InitSource:
    label = label or f"bundle {folder}"
    try:
        info = BundleInfo.read(folder)
    except BundleError as exc:
        raise InitError(f"model.init.from: {label}: {exc}") from None
    if info.weights_file is None:
        raise InitError(
            f"model.init.from: {label} has no PyTorch weights ({WEIGHTS_FILE}): it was exported before bundles "
            "carried them; re-export it with this version (`dvc repro export`), and register it again to start "
            "from the registry"
        )
    state, _ = load_weights_file(folder / info.weights_file)
    facts = {"kind": "bundle", "path": str(folder), "meta": info.meta_name}
    facts["mlflow_run_id"] = info.provenance.get("mlflow_run_id")
    return InitSource(state, tuple(info.keypoint_names), label, {**facts, **(origin or {})})


def _from_registry(ref: str, tracking_uri: str | None) -> InitSource:
    client = open_client(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="posecore-init-") as tmp:
        mv = pull(ref, Path(tmp) / "bundle", client=client)
        origin = {"kind": "registry", "ref": ref, "model": mv.name, "version": str(mv.version), "run_id": mv.run_id}
        label = f"{ref} ({mv.name} version {mv.version}, run {mv.run_id})"
        return _from_bundle(Path(tmp) / "bundle", origin, label)


def _is_reference(text: str) -> bool:
    try:
        parse_model_ref(text)
    except ValueError:
        return False
    return True


def resolve_init_source(
    source: str, *, tracking_uri: str | None = None, champion_of: str | None = None
) -> InitSource | None:
    """``model.init.from`` -> the weights to start from (module docstring), None for "" / "none"
    and for ``"champion"`` while the registered model ``champion_of`` has no champion.

    ``tracking_uri`` is where registry references are looked up (None: ``$MLFLOW_TRACKING_URI``,
    else ``./mlflow.db``). Raises :class:`InitError` saying what was expected.
    """
    text = source.strip()
    if text.lower() in ("", "none"):
        return None
    if text.lower() == CHAMPION:
        if not champion_of:
            raise InitError("model.init.from: 'champion' needs the registered model's name (register.model_name)")
        mv = version_by_alias(open_client(tracking_uri), champion_of, CHAMPION)
        if mv is None:
            _log.warning("model.init.from: champion: %s has no champion yet, so training starts cold", champion_of)
            return None
        return _from_registry(f"{champion_of}/{mv.version}", tracking_uri)
    path = Path(text).expanduser()
    if text.startswith("models:/") or (not path.exists() and _is_reference(text)):
        return _from_registry(text, tracking_uri)
    if path.is_dir():
        if (path / INFO_FILE).is_file():
            return _from_bundle(path)
        if (path / BEST).is_file():
            return _from_file(path / BEST)
        raise InitError(
            f"model.init.from: the folder {path} is neither a bundle ({INFO_FILE}) nor a training folder ({BEST})"
        )
    if path.is_file():
        return _from_file(path)
    raise InitError(
        f"model.init.from: {text!r} is not a file or folder, nor a registry reference (NAME@ALIAS or NAME/VERSION); "
        "give a checkpoint file, a bundle or training folder, a registry model, or 'none'"
    )


def warm_start(
    model: nn.Module,
    cfg: InitParams,
    keypoint_names: Sequence[str],
    *,
    tracking_uri: str | None = None,
    model_name: str = "",
    task: str = "topdown",
) -> InitReport | None:
    """Apply ``model.init`` to ``model`` in place (``keypoint_names``: the model's, its dataset meta's);
    None when ``cfg`` asks for no warm start (or for the champion while there is none). The report's
    origin also holds ``from`` as written. ``model_name`` (``register.model_name``) and ``task``
    name the registered model whose champion ``from: champion`` means."""
    if not cfg.enabled:
        return None
    champion_of = registered_model_name(model_name, task) if model_name else None
    source = resolve_init_source(cfg.source, tracking_uri=tracking_uri, champion_of=champion_of)
    if source is None:
        return None
    source = InitSource(source.state, source.keypoint_names, source.description, {"from": cfg.source, **source.origin})
    return apply_init(model, source, cfg, keypoint_names)


def lineage_tags(report: InitReport) -> dict[str, str]:
    """The training run's warm-start tags (:data:`~posecore.registry.tags.LINEAGE_TAGS`): where the
    weights came from, and the registered version and run that made them, when known. The register
    stage copies them onto the new version, so the registry shows each version's parent."""
    origin = report.origin
    tags = {TAG_INIT_SOURCE: report.source}
    if origin.get("model") and origin.get("version"):
        tags[TAG_PARENT_VERSION] = f"{origin['model']}/{origin['version']}"
    run_id = origin.get("run_id") or origin.get("mlflow_run_id")
    if run_id:
        tags[TAG_PARENT_RUN] = str(run_id)
    return tags


__all__ = ["lineage_tags", "load_weights_file", "resolve_init_source", "warm_start"]
