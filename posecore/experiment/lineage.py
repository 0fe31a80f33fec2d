"""What produced a run: code (git), data (``dvc.lock`` hashes), software and hardware.

:func:`git_commit` is the one git lookup of the project: the training run's tags
(:func:`lineage_tags`) and the export stage's bundle provenance both read the commit through it.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from posecore.experiment.keys import safe_key

_log = logging.getLogger(__name__)

DATA_STAGES = ("convert", "encode")
"""dvc.lock stages whose outputs' hashes identify the data version of a run."""


def lineage_tags(repo_root: str | Path, data_stages: Sequence[str] = DATA_STAGES) -> dict[str, str]:
    """What produced a run: code (git), data (dvc.lock hashes), software and hardware.

    Keys: ``git.commit`` (also as ``mlflow.source.git.commit``), ``git.branch``, ``git.dirty``
    (tracked files modified), ``dvc.<stage>.md5`` and ``dvc.<stage>.path`` for each of
    ``data_stages`` in ``dvc.lock`` (``dvc.<stage>.<path>.md5`` when a stage has several outputs),
    ``data.version`` (the first of those hashes: the converted dataset), ``torch.version``,
    ``cuda.version``, ``cuda.available``, ``device.name``, ``world_size``, ``host``,
    ``python.version``, ``mlflow.version``. Whatever cannot be found is left out; this never raises.
    """
    root = Path(repo_root)
    tags: dict[str, str] = {}
    for part in (_git_tags, lambda r: _dvc_tags(r / "dvc.lock", data_stages), lambda _r: _runtime_tags()):
        try:
            tags.update(part(root))
        except Exception as exc:  # lineage is best effort: a missing tool never stops training
            _log.warning("could not read lineage for the MLflow run: %s", exc)
    return tags


def git_commit(root: str | Path) -> dict[str, Any]:
    """``{"git_commit": <HEAD>, "git_dirty": <tracked files modified>}`` of the checkout at ``root``.

    ``{"git_commit": None}`` outside a git checkout (or without git); ``git_dirty`` is None when
    ``git status`` fails. Never raises: provenance is best effort.
    """
    path = Path(root)
    commit = _git(path, "rev-parse", "--verify", "HEAD")
    if not commit:
        return {"git_commit": None}
    status = _git(path, "status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _git_tags(root: Path) -> dict[str, str]:
    found = git_commit(root)
    commit = found["git_commit"]
    if not commit:
        return {}
    tags = {"git.commit": commit, "mlflow.source.git.commit": commit}
    if found["git_dirty"] is not None:
        tags["git.dirty"] = str(found["git_dirty"]).lower()
    branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD")
    if branch and branch != "HEAD":
        tags["git.branch"] = branch
    return tags


def _dvc_tags(lock_path: Path, stages: Sequence[str]) -> dict[str, str]:
    if not lock_path.is_file():
        return {}
    lock = yaml.safe_load(lock_path.read_text()) or {}
    tags: dict[str, str] = {}
    versions: list[str] = []
    for stage in stages:
        outs = ((lock.get("stages") or {}).get(stage) or {}).get("outs") or []
        hashed = [(str(o.get("path", "")), _out_hash(o)) for o in outs if isinstance(o, dict)]
        hashed = [(p, h) for p, h in hashed if h]
        if len(hashed) == 1:
            tags[f"dvc.{stage}.path"], tags[f"dvc.{stage}.md5"] = hashed[0]
        for path, digest in hashed if len(hashed) > 1 else ():
            tags[safe_key(f"dvc.{stage}.{path}.md5")] = digest
        versions += [h for _, h in hashed]
    if versions:
        tags["data.version"] = versions[0]
    return tags


def _out_hash(out: Mapping[str, Any]) -> str | None:
    for key in ("md5", "etag", "checksum"):
        if out.get(key):
            return str(out[key])
    return None


def _runtime_tags() -> dict[str, str]:
    import mlflow

    tags = {
        "python.version": platform.python_version(),
        "host": socket.gethostname(),
        "world_size": os.environ.get("WORLD_SIZE", "1"),
        "mlflow.version": mlflow.__version__,
        "device.name": platform.processor() or platform.machine() or "cpu",
    }
    try:
        import torch
    except ImportError:
        return tags
    cuda = torch.cuda.is_available()
    tags |= {
        "torch.version": torch.__version__,
        "cuda.version": str(torch.version.cuda or "none"),
        "cuda.available": str(cuda).lower(),
    }
    if cuda:
        tags["device.name"] = torch.cuda.get_device_name(torch.cuda.current_device())
        tags["cuda.device_count"] = str(torch.cuda.device_count())
    return tags
