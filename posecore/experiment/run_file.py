"""The training's run, created once and reopened by later stages from its run-id file.

:func:`make_logger` creates the train stage's run (after checking the tracking server answers)
and :class:`~posecore.experiment.run.MlflowRun` records its id in the run-id file;
:func:`open_existing_run` and :func:`open_run_if_recorded` reopen it for evaluate, export and
register.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from posecore.experiment.config import TrackingConfig
from posecore.experiment.keys import TAG_TASK
from posecore.experiment.lineage import lineage_tags
from posecore.experiment.run import MlflowRun, NullLogger
from posecore.experiment.store import check_reachable, resolve_tracking_uri


def make_logger(
    cfg: TrackingConfig,
    params: Any,
    repo_root: str | Path,
    rank: int,
    run_id_file: str | Path | None,
    *,
    run_id: str | None = None,
    stage: str = "train",
    task: str | None = None,
) -> MlflowRun | NullLogger:
    """The train stage's logger: an unstarted :class:`MlflowRun` on rank 0 (use it as ``with``),
    a :class:`NullLogger` elsewhere. ``run_id`` resumes that run (training resumed from a checkpoint).
    ``task`` (the codec's: ``topdown`` / ``onestage``) becomes the run tag :data:`TAG_TASK`, so runs
    of the two kinds, whose metrics are not comparable, can be told apart and searched.

    Raises :class:`~posecore.experiment.store.TrackingUnavailable` at once when the tracking
    server does not answer.
    """
    if rank != 0:
        return NullLogger()
    uri = resolve_tracking_uri(cfg, repo_root)
    check_reachable(uri, cfg.connect_timeout_s)
    return MlflowRun(
        uri,
        experiment=cfg.experiment,
        run_name=cfg.run_name,
        run_id=run_id,
        params=params,
        tags={**lineage_tags(repo_root), "posecore.stage": stage, **({TAG_TASK: task} if task else {})},
        params_prefix=stage,
        system_metrics=cfg.system_metrics,
        run_id_file=run_id_file,
        artifact_location=cfg.artifact_location or None,
    )


def read_run_id_file(run_id_file: str | Path) -> dict[str, str]:
    """``{"run_id", "tracking_uri", "experiment_id"}`` as written by :class:`MlflowRun`."""
    path = Path(run_id_file)
    if not path.is_file():
        raise FileNotFoundError(f"MLflow run id file {path} does not exist; run the train stage first")
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not an MLflow run id file written by posecore.experiment: {exc}") from exc
    if not isinstance(info, dict) or not info.get("run_id"):
        raise ValueError(f"{path} has no run_id; it was not written by posecore.experiment")
    return info


def open_existing_run(
    run_id_file: str | Path,
    *,
    tracking_uri: str | None = None,
    timeout: float = 10.0,
    tags: Mapping[str, Any] | None = None,
) -> MlflowRun:
    """The run recorded in ``run_id_file`` (by the train stage), for a later stage to log into.

    ``tracking_uri`` overrides the URI recorded in the file (e.g. the same server seen from another
    machine). Use it as ``with``; on exit the run ends again (FINISHED, or FAILED on an exception).
    """
    info = read_run_id_file(run_id_file)
    uri = tracking_uri or info.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise ValueError(f"{run_id_file} names no tracking URI; pass tracking_uri")
    check_reachable(uri, timeout)
    return MlflowRun(uri, run_id=info["run_id"], tags=tags, curves_artifact=None)


def open_run_if_recorded(run_id_file: str | Path, not_logged: str) -> MlflowRun | None:
    """The run in ``run_id_file``, checked reachable now so a later stage fails before its work, or
    None when training recorded no run (a model trained elsewhere): then the stage still runs and
    warns ``"<run_id_file> does not exist: <not_logged>"``, attributed to the stage's caller.
    """
    path = Path(run_id_file)
    if not path.is_file():
        warnings.warn(f"{path} does not exist: {not_logged}", stacklevel=3)
        return None
    return open_existing_run(path)
