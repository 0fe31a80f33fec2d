"""Reading the registry back: resolve ``NAME@alias`` / ``NAME/VERSION``, download a version's bundle,
describe and list versions, and the champion's registration record.

:func:`pull` checks every file against the SHA-256 recorded at registration before the bundle
replaces ``out_dir``; :func:`champion_record` reads what a version was registered with (metric,
value, direction, evaluation data, task) from its tags, for the champion re-evaluation.

References name the registered model itself: one-stage models are registered under
``<register.model_name>-onestage`` (:func:`~posecore.registry.config.registered_model_name`), so
their champion is ``<base>-onestage@champion``; :func:`champion_ref` builds it from the base name.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from posecore.export.lift_bundle import is_lift_bundle, lift_bundle_files
from posecore.registry.bundle import BUNDLE_ARTIFACT, read_bundle, sha256_file
from posecore.registry.config import LOWER_IS_BETTER, RegistryError, registered_model_name
from posecore.registry.tags import (
    CHAMPION,
    TAG_DECISION,
    TAG_EVAL_DATA,
    TAG_GIT,
    TAG_HIGHER,
    TAG_METRIC,
    TAG_PARENT_VERSION,
    TAG_REASON,
    TAG_SHA,
    TAG_VALUE,
    bool_tag,
    float_tag,
    task_tag,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

_log = logging.getLogger(__name__)

_REF_RE = re.compile(r"^(?:models:/)?(?P<name>[^@/]+?)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+))$")


@dataclass(frozen=True)
class Champion:
    """The model version behind an alias, with what was recorded when it was registered.

    ``task``: ``topdown`` / ``onestage`` (``topdown`` for versions registered before the tag existed).
    """

    model_name: str
    version: str
    alias: str
    run_id: str | None
    metric: str | None
    recorded_value: float | None
    eval_data: str | None
    higher_is_better: bool
    task: str = "topdown"


def champion_record(mv: ModelVersion, alias: str) -> Champion:
    """The registration record of ``mv`` (reached through ``alias``), read from its version tags.

    ``higher_is_better`` defaults, without the tag, to the metric's usual direction (EPE, NME,
    MPJPE, loss: lower is better); a missing, non-numeric or non-finite value is None.
    """
    tags = mv.tags or {}
    metric = tags.get(TAG_METRIC)
    return Champion(
        model_name=str(mv.name),
        version=str(mv.version),
        alias=alias,
        run_id=mv.run_id,
        metric=metric,
        recorded_value=float_tag(tags.get(TAG_VALUE)),
        eval_data=tags.get(TAG_EVAL_DATA),
        higher_is_better=bool_tag(tags.get(TAG_HIGHER) or None, metric not in LOWER_IS_BETTER),
        task=task_tag(tags),
    )


def champion_ref(base: str, task: str, alias: str = CHAMPION) -> str:
    """``NAME@alias`` of the registered model of ``task`` with base name ``base`` (``register.model_name``),
    the same name the register stage registered it under."""
    return f"{registered_model_name(base, task)}@{alias}"


def parse_model_ref(ref: str) -> tuple[str, str | None, str | None]:
    """``"NAME@alias"`` / ``"NAME/VERSION"`` (optionally ``models:/`` in front) -> (name, alias, version)."""
    m = _REF_RE.match(ref.strip())
    if not m:
        raise ValueError(f"model reference {ref!r} must look like NAME@champion or NAME/3")
    return m["name"], m["alias"], m["version"]


def resolve_version(client: MlflowClient, ref: str) -> ModelVersion:
    name, alias, version = parse_model_ref(ref)
    if alias is not None:
        mv = version_by_alias(client, name, alias)
        if mv is None:
            raise RegistryError(f"{name} has no version with alias {alias!r} (see `posecore registry show {name}`)")
        return mv
    assert version is not None
    return get_version(client, name, version)


def pull(model_ref: str, out_dir: str | Path, *, client: MlflowClient | None = None) -> ModelVersion:
    """Download the bundle of ``model_ref`` (``NAME@alias`` or ``NAME/VERSION``) into ``out_dir``.

    ``out_dir`` is replaced atomically (posecore.io.atomic_output_dir) and only after the files'
    SHA-256 match the version's tags, so it holds either the old bundle or the complete new one.
    ``posecore infer --model out_dir`` then runs it. Returns the version pulled (an alias is
    resolved once, so the files are that version's even if the alias moves meanwhile).
    """
    import mlflow
    from mlflow import MlflowClient

    from posecore.io import atomic_output_dir

    client = client or MlflowClient()
    mv = resolve_version(client, model_ref)
    base = client.get_model_version_download_uri(mv.name, str(mv.version)).rstrip("/")
    out = Path(out_dir)
    with atomic_output_dir(out) as tmp, tempfile.TemporaryDirectory(prefix="posecore-pull-") as dl:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{base}/{BUNDLE_ARTIFACT}", dst_path=dl, tracking_uri=client.tracking_uri
        )
        src = Path(local)
        try:
            if is_lift_bundle(src):
                lift_bundle_files(src)  # a lifter's bundle (posecore.registry.lift)
            else:
                read_bundle(src)
        except (FileNotFoundError, ValueError) as exc:
            raise RegistryError(
                f"{mv.name} version {mv.version} holds no valid posecore bundle under {BUNDLE_ARTIFACT} ({exc}); "
                "was it registered with posecore.registry.log_bundle?"
            ) from None
        for entry in src.iterdir():
            shutil.move(str(entry), tmp / entry.name)
        for key, expected in (mv.tags or {}).items():
            name = key[len(TAG_SHA) :]
            if key.startswith(TAG_SHA) and (not (tmp / name).is_file() or sha256_file(tmp / name) != expected):
                raise RegistryError(f"{name} of {mv.name} version {mv.version} does not match its recorded SHA-256")
    _log.info("pulled %s version %s into %s", mv.name, mv.version, out)
    return mv


def open_client(tracking_uri: str | None = None, timeout: float = 10.0) -> MlflowClient:
    """A client for ``tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///./mlflow.db``.

    Fails fast: a SQLite file that does not exist (rather than creating an empty store) or a
    server that does not answer raise FileNotFoundError / :class:`posecore.experiment.TrackingUnavailable`.
    """
    from mlflow import MlflowClient

    from posecore.experiment.config import TrackingConfig
    from posecore.experiment.store import check_reachable, resolve_tracking_uri, sqlite_path

    uri = resolve_tracking_uri(TrackingConfig(tracking_uri=tracking_uri or ""), Path.cwd())
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        raise FileNotFoundError(
            f'no MLflow store at {db}; pass --tracking-uri or set MLFLOW_TRACKING_URI (e.g. eval "$(posecore stack env)")'
        )
    check_reachable(uri, timeout)
    return MlflowClient(uri)


def describe_version(mv: ModelVersion) -> dict[str, Any]:
    """The fields ``posecore registry show`` prints for one version."""
    tags = mv.tags or {}
    return {
        "version": str(mv.version),
        "aliases": list(getattr(mv, "aliases", []) or []),
        "metric": tags.get(TAG_METRIC),
        "value": float_tag(tags.get(TAG_VALUE)),
        "eval_data": tags.get(TAG_EVAL_DATA),
        "task": task_tag(tags),
        "decision": tags.get(TAG_DECISION),
        "reason": tags.get(TAG_REASON),
        "run_id": mv.run_id,
        "git_commit": tags.get(TAG_GIT),
        "parent": tags.get(TAG_PARENT_VERSION),
        "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(timespec="seconds")
        if mv.creation_timestamp
        else None,
    }


def list_versions(client: MlflowClient, model_name: str) -> list[ModelVersion]:
    """Every version of ``model_name``, newest first."""
    versions = client.search_model_versions(f"name = '{_quote(model_name)}'")
    return sorted(versions, key=lambda mv: int(mv.version), reverse=True)


def version_by_alias(client: MlflowClient, model_name: str, alias: str) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def get_version(client: MlflowClient, model_name: str, version: str) -> ModelVersion:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(model_name, version)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryError(f"{model_name} has no version {version}: {exc.message}") from None
        raise


def _quote(text: str) -> str:
    return text.replace("'", "\\'")
