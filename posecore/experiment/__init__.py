"""Experiment tracking with MLflow: where runs go, what produced them, and the run the pipeline shares.

* :mod:`posecore.experiment.config` — :class:`TrackingConfig` (the ``tracking:`` section of params.yaml);
* :mod:`posecore.experiment.store` — the tracking URI, artifact location, reachability check
  (:class:`TrackingUnavailable`);
* :mod:`posecore.experiment.lineage` — git, ``dvc.lock`` and runtime tags; :func:`git_commit`;
* :mod:`posecore.experiment.keys` — keys and values as MLflow accepts them;
* :mod:`posecore.experiment.curves` — the training-curves PNG;
* :mod:`posecore.experiment.run` — :class:`MlflowRun` (one run per training), :class:`NullLogger`;
* :mod:`posecore.experiment.run_file` — :func:`make_logger`, and :func:`open_existing_run` /
  :func:`open_run_if_recorded` for later stages that reopen the run.

Not to be confused with :mod:`posecore.inference.tracking`, which follows people across video frames.
"""

from posecore.experiment.config import TrackingConfig
from posecore.experiment.curves import plot_curves
from posecore.experiment.keys import MAX_KEY_LENGTH, MAX_PARAM_LENGTH, MAX_TAG_LENGTH, param_value
from posecore.experiment.lineage import DATA_STAGES, git_commit, lineage_tags
from posecore.experiment.run import MlflowRun, NullLogger
from posecore.experiment.run_file import make_logger, open_existing_run, open_run_if_recorded, read_run_id_file
from posecore.experiment.store import (
    TrackingUnavailable,
    check_reachable,
    default_artifact_location,
    resolve_tracking_uri,
)

__all__ = [
    "DATA_STAGES",
    "MAX_KEY_LENGTH",
    "MAX_PARAM_LENGTH",
    "MAX_TAG_LENGTH",
    "MlflowRun",
    "NullLogger",
    "TrackingConfig",
    "TrackingUnavailable",
    "check_reachable",
    "default_artifact_location",
    "git_commit",
    "lineage_tags",
    "make_logger",
    "open_existing_run",
    "open_run_if_recorded",
    "param_value",
    "plot_curves",
    "read_run_id_file",
    "resolve_tracking_uri",
]
