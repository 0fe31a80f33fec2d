"""Scheduled retraining: pull the data from the DVC remote, reproduce the pipeline, push the outputs.

A thin wrapper of :func:`flows.pipeline.training_pipeline` (run as its subflow) for the nightly
deployment: with a default DVC remote configured it runs ``dvc pull --allow-missing`` first (so a
fresh working copy or container starts from the stored data and models) and ``dvc push``
afterwards; without one it only reproduces. Registration and promotion of the new model happen
in the ``register`` stage. When nothing changed since the last run every stage is skipped by DVC,
so a schedule that fires with no new data or code costs only DVC's checks.

Retraining continues from the champion: unless ``params`` set ``model.init.from`` themselves
(``"none"`` for a cold start, or any other source), the flow sets it to ``init_from``, by default
``"champion"``, the current champion of the model the register stage registers to (the first run,
with no champion yet, starts cold). The training run then records the parent version and run
(``posecore.parent.*`` tags), which the registered version carries too, so ``posecore registry
show`` lists the chain. Promotion stays the register stage's gate: the continued model becomes
champion only if it beats the one it started from.

The flow leaves ``dvc.lock`` (and ``params.yaml`` when ``params`` are given) changed in the
working copy; committing them is the repository's business, not the schedule's.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.pipeline import PipelineResult, find_repo, has_default_remote, training_pipeline

INIT_KEY = "model.init.from"


@flow(name="retrain")
def retrain(
    repo: str | None = None, params: dict[str, Any] | None = None, init_from: str = "champion"
) -> PipelineResult:
    """Pull (when a DVC remote is configured), reproduce from ``init_from`` (unless ``params`` say
    ``model.init.from``), push (idem)."""
    root = find_repo(repo)
    remote = has_default_remote(root)
    logger = get_run_logger()
    logger.info("DVC remote: %s", "default remote configured: pull, repro, push" if remote else "none: repro only")
    params = dict(params or {})
    params.setdefault(INIT_KEY, init_from)
    logger.info("training starts from: %s", params[INIT_KEY])
    return training_pipeline(repo=str(root), params=params, pull=remote, push=remote)


if __name__ == "__main__":
    retrain()
