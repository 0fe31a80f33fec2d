"""Scheduled retraining: pull the data from the DVC remote, reproduce the pipeline, push the outputs.

A thin wrapper of :func:`flows.pipeline.training_pipeline` (run as its subflow) for the nightly
deployment: with a default DVC remote configured it runs ``dvc pull --allow-missing`` first (so a
fresh working copy or container starts from the stored data and models) and ``dvc push``
afterwards; without one it only reproduces. Registration and promotion of the new model happen
in the ``register`` stage. When nothing changed since the last run every stage is skipped by DVC,
so a schedule that fires with no new data or code costs only DVC's checks.

The flow leaves ``dvc.lock`` (and ``params.yaml`` when ``params`` are given) changed in the
working copy; committing them is the repository's business, not the schedule's.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.pipeline import PipelineResult, find_repo, has_default_remote, training_pipeline


@flow(name="retrain")
def retrain(repo: str | None = None, params: dict[str, Any] | None = None) -> PipelineResult:
    """Pull (when a DVC remote is configured), reproduce, push (idem)."""
    root = find_repo(repo)
    remote = has_default_remote(root)
    get_run_logger().info(
        "DVC remote: %s", "default remote configured: pull, repro, push" if remote else "none: repro only"
    )
    return training_pipeline(repo=str(root), params=params, pull=remote, push=remote)


if __name__ == "__main__":
    retrain()
