"""Scheduled champion re-evaluation: is the registered champion still as good on today's val split?

The weekly deployment pulls ``models:/<register.model_name>@champion`` (its bundle, checked
against the SHA-256 recorded at registration: :func:`posecore.registry.pull`), runs it with ONNX
Runtime over the val split of the current target-encoding cache (``encode.out``, which must have
been built for the champion's codec; the cache key is checked) and scores it with the evaluate
stage's scoring (:func:`posecore.evaluation.topdown.score_predictions`, ``evaluate.*`` params).
This is the export stage's ``onnx_AP`` computation, with the codec taken from the bundle
instead of a training checkpoint, so right after a pipeline run it reproduces that number.

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

import hashlib
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.pipeline import IO_RETRIES, IO_RETRY_DELAYS_S, find_repo

if TYPE_CHECKING:
    from prefect import Task
    from prefect.client.schemas.objects import State, TaskRun

    from posecore.config import Params

TAG_PREFIX = "posecore.reeval."


class ChampionDegraded(RuntimeError):
    """The champion scores worse than at registration by more than ``max_drop`` on the same data."""


@dataclass(frozen=True)
class Champion:
    """The model version behind the alias, with what was recorded when it was registered."""

    model_name: str
    version: str
    alias: str
    run_id: str | None
    metric: str | None
    recorded_value: float | None
    eval_data: str | None
    higher_is_better: bool


@dataclass(frozen=True)
class Reevaluation:
    """``value`` of ``metric`` now; ``change`` = now - recorded (signed); ``worse_by`` > 0 when it got worse."""

    champion: Champion
    metric: str
    value: float
    metrics: dict[str, float]
    eval_data: str
    same_data: bool
    change: float | None
    worse_by: float | None
    evaluated_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def tags(self, mlflow_run_id: str | None = None) -> dict[str, str]:
        """The model version tags this re-evaluation sets."""
        out = {
            "metric": self.metric,
            "value": repr(self.value),
            "change": "none" if self.change is None else repr(self.change),
            "eval_data": self.eval_data,
            "same_data": str(self.same_data).lower(),
            "at": self.evaluated_at,
        }
        if mlflow_run_id:
            out["run_id"] = mlflow_run_id
        return {TAG_PREFIX + k: v for k, v in out.items()}

    def table(self) -> list[dict[str, Any]]:
        """Rows for the Prefect table artifact."""
        c = self.champion
        rows: list[dict[str, Any]] = [
            {"name": "model", "value": f"{c.model_name}@{c.alias} (version {c.version})"},
            {"name": f"{self.metric} now", "value": self.value},
            {"name": f"{self.metric} at registration", "value": c.recorded_value},
            {"name": "change", "value": self.change},
            {"name": "same data as at registration", "value": self.same_data},
            {"name": "eval data", "value": self.eval_data},
        ]
        rows += [{"name": k, "value": v} for k, v in self.metrics.items() if k != self.metric]
        return rows


def _not_user_error(task: Task, task_run: TaskRun, state: State) -> bool:
    """Retry transient failures only: a missing champion or bad input fails the same way again."""
    from posecore.registry import RegistryError

    return not isinstance(getattr(state, "data", None), RegistryError | FileNotFoundError | ValueError | KeyError)


def _fingerprint(path: Path) -> str:
    """``md5:<hex>`` of a file, as DVC records it and the register stage tags versions."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return f"md5:{digest.hexdigest()}"


def eval_data_fingerprint(params: Params, repo: Path) -> str:
    """The fingerprint the register stage would give the current val split (``register.eval_data``
    when set, else the md5 of the val annotations)."""
    if params.register.eval_data:
        return params.register.eval_data
    val = repo / params.data.out / "annotations" / "val.json"
    if not val.is_file():
        raise FileNotFoundError(f"{val} does not exist: run the pipeline (`dvc repro convert encode`) first")
    return _fingerprint(val)


def evaluate_bundle(bundle_dir: Path, params: Params, repo: Path) -> dict[str, float]:
    """Metrics (metrics.json names: ``AP``, ``AP_.5``, ``PCK``, ...) of the bundle on the val split of
    ``repo``'s cache. Glue over public posecore functions; see the module docstring."""
    from posecore.data.cache import cache_key, codec_from_config, open_cache
    from posecore.evaluation.topdown import metric_names, score_predictions
    from posecore.export.bundle import BundleInfo
    from posecore.export.onnx import ort_session, predict_split_onnx
    from posecore.metainfo import load_meta

    info = BundleInfo.read(bundle_dir)
    codec = codec_from_config(info.codec)
    dataset = repo / params.data.out
    meta = load_meta(dataset / "meta.yaml")
    if tuple(meta.keypoint_names) != tuple(info.keypoint_names):
        raise ValueError(
            f"the champion predicts the keypoints of meta {info.meta_name!r}, but {dataset} uses {meta.name!r} "
            "with other keypoints; re-evaluate on the dataset the champion was trained for"
        )
    try:
        split = open_cache(repo / params.encode.out, cache_key(dataset, params.encode, codec))["val"]
    except ValueError as exc:
        raise ValueError(
            f"the champion needs val inputs encoded for its own codec and input size {list(info.input_size)}: "
            f"{exc}. Set model.* in params.yaml to the champion's and run `dvc repro encode`."
        ) from None
    session = ort_session(info.model_path(bundle_dir), params.export.threads)
    preds = predict_split_onnx(session, split, codec, info, info.flip_test, params.evaluate.batch_size)
    result = score_predictions(preds, split, dataset / "annotations" / "val.json", meta, params.evaluate)
    return metric_names(result.metrics)


def compare(champion: Champion, metrics: dict[str, float], eval_data: str) -> Reevaluation:
    """The re-evaluation of ``champion`` given today's ``metrics`` on data ``eval_data``."""
    from posecore.registry import find_metric

    metric = champion.metric or "AP"
    value = find_metric(metrics, metric, "the re-evaluation")
    same = bool(champion.eval_data) and champion.eval_data == eval_data
    change = worse = None
    if champion.recorded_value is not None and math.isfinite(value):
        change = value - champion.recorded_value
        worse = -change if champion.higher_is_better else change
    return Reevaluation(champion, metric, value, metrics, eval_data, same, change, worse)


def check_drop(result: Reevaluation, max_drop: float | None) -> None:
    """Raise :class:`ChampionDegraded` when, on the data it was registered on, the champion now scores
    worse than at registration by more than ``max_drop`` (None: never)."""
    if max_drop is None or not result.same_data or result.worse_by is None or result.worse_by <= max_drop:
        return
    c = result.champion
    raise ChampionDegraded(
        f"{c.model_name} v{c.version} scores {result.metric} {result.value:.6g} on the same val data, worse than "
        f"at registration ({c.recorded_value:.6g}) by {result.worse_by:.6g} > max_drop {max_drop:g}; retrain "
        f"(the retrain deployment) or promote another version (`posecore registry promote {c.model_name} VERSION`)"
    )


# --------------------------------------------------------------------------- tasks


@task(
    name="pull-champion",
    retries=IO_RETRIES,
    retry_delay_seconds=IO_RETRY_DELAYS_S,
    retry_condition_fn=_not_user_error,
    cache_policy=NO_CACHE,
)
def pull_champion(model_name: str, alias: str, dest: Path, tracking_uri: str) -> Champion:
    """Download the bundle of ``model_name@alias`` into ``dest`` (SHA-256 checked); its registration record."""
    from posecore import registry
    from posecore.registry import LOWER_IS_BETTER, TAG_EVAL_DATA, TAG_HIGHER, TAG_METRIC, TAG_VALUE

    mv = registry.pull(f"{model_name}@{alias}", dest, client=registry.open_client(tracking_uri))
    tags = mv.tags or {}
    metric = tags.get(TAG_METRIC)
    raw_value = tags.get(TAG_VALUE)
    value = float(raw_value) if raw_value not in (None, "", "none") else None
    higher = tags.get(TAG_HIGHER)
    return Champion(
        model_name=model_name,
        version=str(mv.version),
        alias=alias,
        run_id=mv.run_id,
        metric=metric,
        recorded_value=value if value is not None and math.isfinite(value) else None,
        eval_data=tags.get(TAG_EVAL_DATA),
        higher_is_better=higher.lower() == "true" if higher else metric not in LOWER_IS_BETTER,
    )


@task(name="evaluate-champion", cache_policy=NO_CACHE)
def evaluate_champion(champion: Champion, bundle_dir: Path, repo: Path) -> Reevaluation:
    """Score the pulled bundle on the current val split (no retries: it is computation)."""
    from posecore.config import load_params

    params = load_params(repo / "params.yaml")
    metrics = evaluate_bundle(bundle_dir, params, repo)
    return compare(champion, metrics, eval_data_fingerprint(params, repo))


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
    from posecore.tracking import MlflowRun, check_reachable, lineage_tags

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

    ``model_name`` defaults to ``register.model_name``; the tracking store is ``tracking.tracking_uri``,
    else ``$MLFLOW_TRACKING_URI``, else the repository's ``mlflow.db``.
    """
    import tempfile

    from posecore.config import load_params
    from posecore.tracking import resolve_tracking_uri

    root = find_repo(repo)
    params = load_params(root / "params.yaml")
    name = model_name or params.register.model_name
    uri = resolve_tracking_uri(params.tracking, root)
    with tempfile.TemporaryDirectory(prefix="posecore-champion-") as tmp:
        bundle = Path(tmp) / "bundle"
        champion = pull_champion(name, alias, bundle, uri)
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
