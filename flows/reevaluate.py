"""Scheduled champion re-evaluation: is the registered champion still as good on today's val split?

The weekly deployment pulls the champion of the configured model's task,
``models:/<register.model_name>@champion`` (``<register.model_name>-onestage@champion`` when
``model`` is a one-stage preset: :func:`posecore.registry.champion_ref`, the name the register
stage used), its bundle checked against the SHA-256 recorded at registration
(:func:`posecore.registry.pull.pull`), runs it with ONNX
Runtime over the val split of the current target-encoding cache (``encode.out``, which must have
been built for the champion's codec; the cache key is checked) and scores it with
:func:`posecore.export.scoring.score_bundle` (``evaluate.*`` params). This is the export stage's
``onnx_AP`` computation, with the codec taken from the bundle instead of a training checkpoint,
so right after a pipeline run it reproduces that number. The registration record comes from
the version's tags (:func:`posecore.registry.champion_record`), today's evaluation-data
fingerprint from :func:`posecore.registry.eval_data_fingerprint`.

The result is recorded three ways: tags on the model version (``posecore.reeval.*``: metric,
value, change against the value recorded at registration, the evaluation data's fingerprint
and whether it is the data the version was registered on), an MLflow run in the
``tracking.experiment`` experiment (``reeval/*`` metrics, lineage tags: a history over time)
and a Prefect table artifact ``champion-reevaluation``. With ``max_drop`` set, the flow run
fails after recording when the champion got worse than at registration by more than that (on
the same data), so Prefect's notifications can page someone.

MLflow calls retry (transient I/O); a missing champion or a cache built for another codec fails
at once with a message that says what to do.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.pipeline import IO_RETRIES, IO_RETRY_DELAYS_S, find_repo
from posecore.errors import USER_ERRORS
from posecore.registry.pull import Champion
from posecore.registry.reevaluation import Reevaluation, check_drop, compare

if TYPE_CHECKING:
    from prefect import Task
    from prefect.client.schemas.objects import State, TaskRun


def _not_user_error(task: Task, task_run: TaskRun, state: State) -> bool:
    """Retry transient failures only: a missing champion or bad input fails the same way again."""
    return not isinstance(getattr(state, "data", None), (*USER_ERRORS, KeyError))


# --------------------------------------------------------------------------- tasks


@task(
    name="pull-champion",
    retries=IO_RETRIES,
    retry_delay_seconds=IO_RETRY_DELAYS_S,
    retry_condition_fn=_not_user_error,
    cache_policy=NO_CACHE,
)
def pull_champion(model_ref: str, alias: str, dest: Path, tracking_uri: str) -> Champion:
    """Download the bundle of ``model_ref`` (``NAME@alias``) into ``dest`` (SHA-256 checked); its registration record."""
    from posecore import registry

    mv = registry.pull(model_ref, dest, client=registry.open_client(tracking_uri))
    return registry.champion_record(mv, alias)


@task(name="evaluate-champion", cache_policy=NO_CACHE)
def evaluate_champion(champion: Champion, bundle_dir: Path, repo: Path) -> Reevaluation:
    """Score the pulled bundle on the current val split (no retries: it is computation)."""
    from posecore.config import load_params
    from posecore.datasets.layout import DatasetLayout
    from posecore.export.scoring import score_bundle
    from posecore.registry import eval_data_fingerprint

    params = load_params(repo / "params.yaml")
    dataset = repo / params.data.out
    metrics = score_bundle(
        bundle_dir, dataset, repo / params.encode.out, params.encode, params.evaluate, params.export.threads
    )
    val = DatasetLayout(dataset).annotations("val")
    eval_data = eval_data_fingerprint(val, configured=params.register.eval_data)
    if eval_data is None:
        raise FileNotFoundError(f"{val} does not exist: run the pipeline (`dvc repro convert encode`) first")
    return compare(champion, metrics, eval_data)


@task(
    name="record-reevaluation",
    retries=IO_RETRIES,
    retry_delay_seconds=IO_RETRY_DELAYS_S,
    retry_condition_fn=_not_user_error,
    cache_policy=NO_CACHE,
)
def record_reevaluation(result: Reevaluation, repo: Path, tracking_uri: str) -> str:
    """An MLflow run with the numbers, then the ``posecore.reeval.*`` tags on the version; returns the run id."""
    from mlflow import MlflowClient

    from posecore.config import load_params
    from posecore.experiment import MlflowRun, check_reachable, lineage_tags

    params = load_params(repo / "params.yaml")
    check_reachable(tracking_uri, params.tracking.connect_timeout_s)
    c = result.champion
    numbers = {f"reeval/{k}": v for k, v in result.metrics.items() if math.isfinite(v)}
    if result.change is not None:
        numbers["reeval/change"] = result.change
    tags = {
        **lineage_tags(repo),
        "posecore.stage": "reevaluate",
        "posecore.reeval.model": f"{c.model_name}/{c.version}",
        "posecore.reeval.alias": c.alias,
        "posecore.reeval.eval_data": result.eval_data,
        "posecore.reeval.same_data": str(result.same_data).lower(),
    }
    run = MlflowRun(
        tracking_uri,
        experiment=params.tracking.experiment,
        run_name=f"reevaluate {c.model_name} v{c.version}",
        tags=tags,
        artifact_location=params.tracking.artifact_location or None,
        curves_artifact=None,
    )
    with run:
        run.log_metrics(numbers, step=0)
    client = MlflowClient(tracking_uri)
    for key, value in result.tags(run.run_id).items():
        client.set_model_version_tag(c.model_name, c.version, key, value)
    return str(run.run_id)


@task(name="publish-reevaluation", cache_policy=NO_CACHE)
def publish_reevaluation(result: Reevaluation) -> None:
    """The ``champion-reevaluation`` table artifact."""
    c = result.champion
    create_table_artifact(
        result.table(),
        key="champion-reevaluation",
        description=f"{c.model_name}@{c.alias} (version {c.version}) on the current val split",
    )


# --------------------------------------------------------------------------- flow


@flow(name="reevaluate-champion")
def reevaluate_champion(
    repo: str | None = None,
    model_name: str | None = None,
    alias: str = "champion",
    max_drop: float | None = None,
) -> Reevaluation:
    """Pull ``models:/<model_name>@<alias>``, score it on the current val split, record the result.

    ``model_name`` is the registered name; it defaults to the one the register stage uses for the
    configured model (``register.model_name``, with ``-onestage`` for a one-stage ``model``). The
    tracking store is ``tracking.tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else the repository's
    ``mlflow.db``.
    """
    import tempfile

    from posecore.config import load_params
    from posecore.experiment import resolve_tracking_uri
    from posecore.registry import champion_ref

    root = find_repo(repo)
    params = load_params(root / "params.yaml")
    task = params.model.spec().build_codec().task
    ref = f"{model_name}@{alias}" if model_name else champion_ref(params.register.model_name, task, alias)
    uri = resolve_tracking_uri(params.tracking, root)
    with tempfile.TemporaryDirectory(prefix="posecore-champion-") as tmp:
        bundle = Path(tmp) / "bundle"
        champion = pull_champion(ref, alias, bundle, uri)
        result = evaluate_champion(champion, bundle, root)
    run_id = record_reevaluation(result, root, uri)
    publish_reevaluation(result)
    logger = get_run_logger()
    logger.info(
        "%s v%s: %s = %.6g now (at registration %s; same data: %s); MLflow run %s",
        champion.model_name,
        champion.version,
        result.metric,
        result.value,
        champion.recorded_value,
        result.same_data,
        run_id,
    )
    check_drop(result, max_drop)
    return result


if __name__ == "__main__":
    reevaluate_champion()
