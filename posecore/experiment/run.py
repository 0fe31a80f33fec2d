"""MLflow runs: one run per training, which later stages (evaluate, export, register) reopen.

The train stage builds its logger with :func:`make_logger`; rank 0 gets an :class:`MlflowRun`,
every other rank a :class:`NullLogger` with the same methods (both satisfy the engine's
:class:`~posecore.engine.trainer.TrainLogger`)::

    with make_logger(tracking_cfg, params, repo_root, rank, run_id_file=Path("models/mlflow_run.json")) as logger:
        fit(..., logger=logger)

:func:`make_logger` checks that a tracking server answers *before* training starts and raises
:class:`~posecore.experiment.store.TrackingUnavailable` otherwise. The run id goes to
``run_id_file`` (JSON with the run id and the tracking URI), and a later stage logs into the
same run with::

    with open_existing_run(Path("models/mlflow_run.json")) as run:
        run.log_metrics({"test/AP": 0.71}, step=0)

Inside the ``with`` block the run is MLflow's active run and the process's tracking URI is the
run's, so ``mlflow.<flavor>.log_model(...)`` attaches to it; both are restored on exit.

Step metrics are buffered (:mod:`posecore.experiment._batching`) and written with
``MlflowClient.log_batch`` at most every ``flush_interval_s`` seconds, when the engine logs its
end-of-epoch ``epoch`` metric, and at close, so logging costs the training loop next to nothing
(``benchmarks/bench_tracking.py``).

Creating the training's run and reopening it from its run-id file live in
:mod:`posecore.experiment.run_file`.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import is_dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from posecore._flatten import flatten, to_dict
from posecore.experiment._batching import BATCH_PARAMS_TAGS, MetricBuffer, chunks
from posecore.experiment.curves import log_curves
from posecore.experiment.keys import MAX_TAG_LENGTH, param_value, safe_key
from posecore.experiment.store import (
    default_artifact_location,
    use_tracking_uri,
)
from posecore.io import atomic_write_json

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from mlflow import MlflowClient

_log = logging.getLogger(__name__)


class NullLogger:
    """The logger of ranks other than 0: accepts every call of :class:`MlflowRun` and does nothing."""

    run_id: str | None = None
    tracking_uri: str | None = None

    def __enter__(self) -> NullLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def start(self) -> NullLogger:
        return self

    def close(self, status: str = "FINISHED") -> None:
        return None

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        return None

    def log_params(self, params: Mapping[str, Any]) -> None:
        return None

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        return None

    def log_figure(self, figure: Figure, artifact_file: str) -> None:
        return None

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        return None

    def flush(self) -> None:
        return None


class MlflowRun:
    """One MLflow run, new or resumed (``run_id``); a context manager implementing ``TrainLogger``.

    ``params`` (a params dataclass or mapping) is logged flattened (``train.lr``) and in full as
    the ``params.json`` artifact. ``params_prefix`` is put before the keys given to
    :meth:`log_params` (the engine logs its ``TrainConfig`` unprefixed; with ``"train"`` those
    land on the same keys as ``params.train.*`` and are not logged twice). A param that already
    has another value in a resumed run keeps its first value; the change is recorded as the tag
    ``posecore.param_changed.<key>``.

    On exit the buffered metrics are written, the training curves (every metric but ``epoch``
    and ``system/*``, from the store, so a resumed run is drawn whole) go to ``curves_artifact``
    unless it is None, and the run ends FINISHED, FAILED (exception) or KILLED (Ctrl-C).
    """

    def __init__(
        self,
        tracking_uri: str,
        *,
        experiment: str = "posecore",
        run_name: str = "",
        run_id: str | None = None,
        params: Any = None,
        tags: Mapping[str, Any] | None = None,
        params_prefix: str = "",
        system_metrics: bool = False,
        run_id_file: str | Path | None = None,
        artifact_location: str | None = None,
        flush_interval_s: float = 5.0,
        flush_on: Sequence[str] = ("epoch",),
        curves_artifact: str | None = "plots/curves.png",
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_name = run_name
        self.run_id = run_id
        self.run_id_file = Path(run_id_file) if run_id_file is not None else None
        self._resume = run_id is not None
        self._init_params = params
        self._init_tags = dict(tags or {})
        self._params_prefix = params_prefix
        self._system_metrics = system_metrics
        self._artifact_location = artifact_location
        self._curves_artifact = curves_artifact
        self._client: MlflowClient | None = None
        self._logged_params: dict[str, str] = {}
        self._metrics = MetricBuffer(flush_interval_s, flush_on)
        self._restore_uri: Callable[[], None] | None = None
        self._active = False

    @property
    def flush_interval_s(self) -> float:
        """Seconds between writes of buffered step metrics."""
        return self._metrics.flush_interval_s

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> MlflowRun:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            status = "FINISHED"
        elif issubclass(exc_type, KeyboardInterrupt):
            status = "KILLED"
        else:
            status = "FAILED"
        self.close(status)

    def start(self) -> MlflowRun:
        """Create (or resume) the run, make it MLflow's active run, log tags and params, write the run id file."""
        if self._active:
            return self
        import mlflow
        from mlflow import MlflowClient

        self._client = MlflowClient(self.tracking_uri)
        self._restore_uri = use_tracking_uri(self.tracking_uri)
        try:
            system = self._system_metrics and _system_metrics_available()
            tags = dict(self._init_tags)
            if self._resume:
                run = mlflow.start_run(run_id=self.run_id, log_system_metrics=system)
                self._logged_params = dict(run.data.params)
            else:
                experiment_id = self._experiment_id()
                str_tags = {safe_key(k): param_value(v, MAX_TAG_LENGTH) for k, v in tags.items()}
                run = mlflow.start_run(
                    experiment_id=experiment_id,
                    run_name=self.run_name or None,
                    tags=str_tags,
                    log_system_metrics=system,
                )
            self.run_id = run.info.run_id
            self._active = True
        except BaseException:
            self._restore_global_uri()
            raise
        try:
            if self._resume and tags:
                self.set_tags(tags)
            if self._init_params is not None:
                tree = to_dict(self._init_params) if is_dataclass(self._init_params) else dict(self._init_params)
                self._log_flat_params(flatten(tree))
                self._client.log_dict(self.run_id, json.loads(json.dumps(tree, default=str)), "params.json")
            if self.run_id_file is not None:
                atomic_write_json(
                    self.run_id_file,
                    {"run_id": self.run_id, "tracking_uri": self.tracking_uri, "experiment_id": run.info.experiment_id},
                    indent=2,
                )
        except BaseException:
            self.close("FAILED")
            raise
        _log.info("MLflow run %s (%s)", self.run_id, self.tracking_uri)
        return self

    def close(self, status: str = "FINISHED") -> None:
        """Write what is buffered, draw the curves, end the run with ``status``; safe to call twice."""
        if not self._active:
            return
        import mlflow

        self._active = False
        try:
            self._metrics.write(self._client, self.run_id, final=True)
            if self._curves_artifact and self._metrics.keys:
                assert self._client is not None and self.run_id is not None
                log_curves(self._client, self.run_id, self._metrics.keys, self._curves_artifact)
        finally:
            try:
                mlflow.end_run(status=status)
            except Exception as exc:
                warnings.warn(f"could not end MLflow run {self.run_id}: {exc}", RuntimeWarning, stacklevel=2)
            self._restore_global_uri()

    @property
    def client(self) -> MlflowClient:
        """The client bound to this run's tracking URI (for what this class does not wrap)."""
        self._require_open()
        assert self._client is not None
        return self._client

    def _restore_global_uri(self) -> None:
        restore, self._restore_uri = self._restore_uri, None
        if restore is not None:
            restore()

    def _require_open(self) -> None:
        if not self._active:
            raise RuntimeError("the MLflow run is not open: use `with MlflowRun(...)` or call start() first")

    # ------------------------------------------------------------------ TrainLogger

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Buffer ``metrics`` at ``step``; written every ``flush_interval_s`` seconds, at epoch ends and at close."""
        self._require_open()
        if self._metrics.add(metrics, step):
            self._metrics.write(self._client, self.run_id)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log ``params`` (nested mappings flattened to dotted keys, ``params_prefix`` in front)."""
        self._require_open()
        self._log_flat_params(flatten(dict(params), self._params_prefix))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file, or a folder as ``<artifact_path>/<folder name>/...``."""
        path = Path(path)
        if path.is_dir():
            dest = f"{artifact_path}/{path.name}" if artifact_path else path.name
            self.client.log_artifacts(self.run_id, str(path), dest)
        elif path.is_file():
            self.client.log_artifact(self.run_id, str(path), artifact_path)
        else:
            raise FileNotFoundError(f"cannot log {path} to MLflow: it does not exist")

    # ------------------------------------------------------------------ extras

    def log_figure(self, figure: Figure, artifact_file: str, dpi: int = 100) -> None:
        """Save a matplotlib figure as the PNG artifact ``artifact_file`` (e.g. ``plots/pck.png``)."""
        with tempfile.TemporaryDirectory(prefix="posecore-fig-") as tmp:
            local = Path(tmp) / Path(artifact_file).name
            figure.savefig(local, format="png", dpi=dpi)
            parent = str(Path(artifact_file).parent)
            self.log_artifact(local, None if parent == "." else parent)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        entities = [RunTag(safe_key(k), param_value(v, MAX_TAG_LENGTH)) for k, v in tags.items()]
        for chunk in chunks(entities, BATCH_PARAMS_TAGS):
            self.client.log_batch(self.run_id, tags=chunk)

    def flush(self) -> None:
        """Write buffered metrics now."""
        self._require_open()
        self._metrics.write(self._client, self.run_id)

    # ------------------------------------------------------------------ internals

    def _experiment_id(self) -> str:
        from mlflow.exceptions import MlflowException

        assert self._client is not None
        found = self._client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        location = self._artifact_location or default_artifact_location(self.tracking_uri)
        try:
            return self._client.create_experiment(self.experiment, artifact_location=location)
        except MlflowException:  # created concurrently by another process
            found = self._client.get_experiment_by_name(self.experiment)
            if found is None:
                raise
            return found.experiment_id

    def _log_flat_params(self, flat: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        new: list[Any] = []
        changed: dict[str, str] = {}
        for raw_key, raw_value in flat.items():
            key, value = safe_key(raw_key), param_value(raw_value)
            old = self._logged_params.get(key)
            if old is None:
                self._logged_params[key] = value
                new.append(Param(key, value))
            elif old != value:
                changed[f"posecore.param_changed.{key}"] = f"{old} -> {value}"
        for chunk in chunks(new, BATCH_PARAMS_TAGS):
            self.client.log_batch(self.run_id, params=chunk)
        if changed:
            _log.warning(
                "MLflow run %s keeps the first value of %d changed param(s) (recorded as posecore.param_changed.* tags)",
                self.run_id,
                len(changed),
            )
            self.set_tags(changed)


def _system_metrics_available() -> bool:
    if importlib.util.find_spec("psutil") is None:
        warnings.warn("system metrics are not logged: install psutil", RuntimeWarning, stacklevel=3)
        return False
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and importlib.util.find_spec("pynvml") is None:
        warnings.warn(
            "GPU system metrics are not logged: install nvidia-ml-py (CPU, memory, disk, network still are)",
            RuntimeWarning,
            stacklevel=3,
        )
    return True
