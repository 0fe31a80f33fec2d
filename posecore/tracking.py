"""MLflow tracking: one run per training, which later stages (evaluate, export, register) reopen.

The train stage builds its logger with :func:`make_logger`; rank 0 gets an :class:`MlflowRun`,
every other rank a :class:`NullLogger` with the same methods (both satisfy the engine's
:class:`~posecore.engine.trainer.TrainLogger`)::

    with make_logger(tracking_cfg, params, repo_root, rank, run_id_file=Path("models/mlflow_run.json")) as logger:
        fit(..., logger=logger)

:func:`make_logger` checks that a tracking server answers *before* training starts and raises
:class:`TrackingUnavailable` otherwise. The run id goes to ``run_id_file`` (JSON with the run id
and the tracking URI), and a later stage logs into the same run with::

    with open_existing_run(Path("models/mlflow_run.json")) as run:
        run.log_metrics({"test/AP": 0.71}, step=0)

Inside the ``with`` block the run is MLflow's active run and the process's tracking URI is the
run's, so ``mlflow.<flavor>.log_model(...)`` attaches to it; both are restored on exit.

Tracking URI: ``TrackingConfig.tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else the SQLite store
``<repo>/mlflow.db`` with artifacts in ``<repo>/mlartifacts``.

Step metrics are buffered and written with ``MlflowClient.log_batch`` at most every
``flush_interval_s`` seconds, when the engine logs its end-of-epoch ``epoch`` metric, and at
close, so logging costs the training loop next to nothing (``benchmarks/bench_tracking.py``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import logging
import math
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import yaml

from posecore._flatten import flatten, to_dict
from posecore.io import atomic_write_bytes, atomic_write_json

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from mlflow import MlflowClient

_log = logging.getLogger("posecore.tracking")

DATA_STAGES = ("convert", "encode")
"""dvc.lock stages whose outputs' hashes identify the data version of a run."""

MAX_PARAM_LENGTH = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH
MAX_TAG_LENGTH = 8000  # MAX_TAG_VAL_LENGTH
MAX_KEY_LENGTH = 250  # MAX_ENTITY_KEY_LENGTH
_BATCH_METRICS = 1000  # MAX_METRICS_PER_BATCH
_BATCH_PARAMS_TAGS = 100  # MAX_PARAMS_TAGS_PER_BATCH
_MAX_BUFFERED = 200_000  # metrics kept while the store is unreachable; older ones are dropped beyond this
_KEY_RE = re.compile(r"^[\w./\- :]+$")  # the characters MLflow accepts in metric, param and tag keys
_CURVE_SKIP = ("epoch",)
_CURVE_SKIP_PREFIXES = ("system/",)


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking server cannot be reached (or refuses us); raised before training starts."""


@dataclass(frozen=True)
class TrackingConfig:
    """Where and how runs are tracked (a ``tracking:`` section of params.yaml).

    ``tracking_uri``: empty means ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<repo>/mlflow.db``.
    ``artifact_location``: where a *new* experiment keeps artifacts; empty means
    ``<folder of the SQLite file>/mlartifacts`` for a SQLite store and the server's choice otherwise.
    ``system_metrics``: CPU, memory, disk, network (and GPU with ``nvidia-ml-py``) as ``system/*``.
    """

    tracking_uri: str = ""
    experiment: str = "posecore"
    run_name: str = ""
    system_metrics: bool = True
    connect_timeout_s: float = field(default=10.0, metadata={"range": (0.1, 600.0)})
    artifact_location: str = ""


# --------------------------------------------------------------------------- where runs go


def resolve_tracking_uri(cfg: TrackingConfig, repo_root: str | Path) -> str:
    """``cfg.tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<repo_root>/mlflow.db`` (absolute)."""
    if cfg.tracking_uri:
        return cfg.tracking_uri
    if env := os.environ.get("MLFLOW_TRACKING_URI"):
        return env
    return f"sqlite:///{Path(repo_root).resolve() / 'mlflow.db'}"


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(unquote(uri[len("sqlite:///") :].split("?", 1)[0])).absolute()


def default_artifact_location(uri: str) -> str | None:
    """``<folder of the db>/mlartifacts`` for a SQLite store; None (the server decides) otherwise."""
    db = _sqlite_path(uri)
    return (db.parent / "mlartifacts").as_uri() if db is not None else None


def _is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def check_reachable(uri: str, timeout: float = 10.0) -> None:
    """Raise :class:`TrackingUnavailable` unless the tracking server at ``uri`` answers within ``timeout`` s.

    Only ``http(s)://`` URIs are checked (a SQLite store is a local file). One plain GET on
    ``/health`` (then the REST API, for servers without it) and no retries: MLflow's own client
    retries for minutes before it gives up.
    """
    if not _is_http(uri):
        return
    import requests

    hint = (
        "start it with `posecore stack up`, or unset MLFLOW_TRACKING_URI (and tracking.tracking_uri) "
        "to use the local SQLite store"
    )
    base = uri.rstrip("/")
    try:
        resp = requests.get(f"{base}/health", timeout=(timeout, timeout))
        if resp.status_code == 404:  # a proxy or a server without /health: ask the REST API itself
            resp = requests.get(
                f"{base}/api/2.0/mlflow/experiments/search",
                params={"max_results": 1},
                headers=_auth_headers(),
                timeout=(timeout, timeout),
            )
    except requests.exceptions.Timeout:
        raise TrackingUnavailable(
            f"MLflow tracking server {uri} is not reachable (no answer within {timeout:g} s); {hint}"
        ) from None
    except requests.exceptions.ConnectionError as exc:
        if _refused(exc):
            reason = "connection refused"
        elif "NameResolutionError" in str(exc) or "Name or service not known" in str(exc):
            reason = f"host name {urlparse(uri).hostname!r} not found"
        else:
            reason = f"connection failed: {exc}"
        raise TrackingUnavailable(f"MLflow tracking server {uri} is not reachable ({reason}); {hint}") from None
    except requests.exceptions.RequestException as exc:
        raise TrackingUnavailable(f"MLflow tracking server {uri} is not reachable ({exc}); {hint}") from None
    if resp.status_code in (401, 403):
        raise TrackingUnavailable(
            f"MLflow tracking server {uri} refused us (HTTP {resp.status_code}); set MLFLOW_TRACKING_TOKEN or "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
    if resp.status_code == 404:
        raise TrackingUnavailable(
            f"{uri} does not look like an MLflow tracking server (HTTP 404 from {resp.url}); {hint}"
        )
    if resp.status_code >= 400:
        raise TrackingUnavailable(
            f"MLflow tracking server {uri} is not healthy (HTTP {resp.status_code} from {resp.url}); {hint}"
        )


def _auth_headers() -> dict[str, str]:
    if token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return {"Authorization": f"Bearer {token}"}
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        import base64

        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    return {}


def _refused(exc: BaseException) -> bool:
    """Whether a connection error was a refused connection (nothing listens on the port)."""
    e: BaseException | None = exc
    for _ in range(10):  # requests wraps urllib3 errors, which wrap the OSError
        if e is None:
            break
        if isinstance(e, ConnectionRefusedError) or "refused" in str(e).lower():
            return True
        e = e.__cause__ or e.__context__
    return False


# --------------------------------------------------------------------------- lineage


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


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _git_tags(root: Path) -> dict[str, str]:
    commit = _git(root, "rev-parse", "--verify", "HEAD")
    if not commit:
        return {}
    tags = {"git.commit": commit, "mlflow.source.git.commit": commit}
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    if status is not None:
        tags["git.dirty"] = str(bool(status)).lower()
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
            tags[_safe_key(f"dvc.{stage}.{path}.md5")] = digest
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


# --------------------------------------------------------------------------- values


def _safe_key(key: str) -> str:
    """A key MLflow accepts: unsupported characters become ``_``, at most 250 characters."""
    if _KEY_RE.match(key) and len(key) <= MAX_KEY_LENGTH:
        return key
    safe = re.sub(r"[^\w./\- :]", "_", key) or "_"
    if len(safe) > MAX_KEY_LENGTH:
        digest = hashlib.sha1(key.encode()).hexdigest()[:8]
        safe = f"{safe[: MAX_KEY_LENGTH - 9]}~{digest}"
    return safe


def param_value(value: Any, limit: int = MAX_PARAM_LENGTH) -> str:
    """A param as MLflow stores it: lists and tuples as JSON, the rest as ``str``; longer values are
    cut to ``limit`` characters ending in a note (the full params are in the ``params.json`` artifact)."""
    if isinstance(value, list | tuple | dict):
        text = json.dumps(value, default=str)
    else:
        text = str(value)
    if len(text) <= limit:
        return text
    note = f"... [truncated from {len(text)} chars; see params.json]"
    return text[: limit - len(note)] + note


def _check_metric_key(key: str) -> None:
    if not _KEY_RE.match(key) or len(key) > MAX_KEY_LENGTH:
        raise ValueError(
            f"metric name {key!r} is not accepted by MLflow: use at most {MAX_KEY_LENGTH} letters, digits, "
            "and _ - . / : or spaces"
        )


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# --------------------------------------------------------------------------- curves


def plot_curves(history: Mapping[str, Sequence[tuple[int, float]]], path: str | Path) -> Path:
    """Draw one panel per metric (``{name: [(step, value), ...]}``) into a PNG at ``path`` (atomic write).

    Uses the Agg canvas directly (no pyplot, no display needed).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [k for k in sorted(history) if history[k]]
    ncols = max(1, min(3, len(names)))
    nrows = max(1, math.ceil(len(names) / ncols))
    fig = Figure(figsize=(4.2 * ncols, 3.0 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    if not names:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no metrics logged", ha="center", va="center")
        ax.set_axis_off()
    for i, name in enumerate(names, start=1):
        ax = fig.add_subplot(nrows, ncols, i)
        points = sorted(history[name])
        steps = [s for s, _ in points]
        values = [v for _, v in points]
        ax.plot(steps, values, marker="o" if len(points) <= 30 else None, markersize=3, linewidth=1.2)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return atomic_write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------- loggers


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
        self.flush_interval_s = flush_interval_s
        self._resume = run_id is not None
        self._init_params = params
        self._init_tags = dict(tags or {})
        self._params_prefix = params_prefix
        self._system_metrics = system_metrics
        self._artifact_location = artifact_location
        self._flush_on = frozenset(flush_on)
        self._curves_artifact = curves_artifact
        self._client: MlflowClient | None = None
        self._logged_params: dict[str, str] = {}
        self._buffer: list[Any] = []
        self._metric_keys: set[str] = set()
        self._last_flush = time.monotonic()
        self._saved_uri: tuple[Any, str | None] | None = None
        self._active = False

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
        self._use_global_uri()
        try:
            system = self._system_metrics and _system_metrics_available()
            tags = dict(self._init_tags)
            if self._resume:
                run = mlflow.start_run(run_id=self.run_id, log_system_metrics=system)
                self._logged_params = dict(run.data.params)
            else:
                experiment_id = self._experiment_id()
                str_tags = {_safe_key(k): param_value(v, MAX_TAG_LENGTH) for k, v in tags.items()}
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
            self._flush(final=True)
            if self._curves_artifact and self._metric_keys:
                self._log_curves()
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

    def _require_open(self) -> None:
        if not self._active:
            raise RuntimeError("the MLflow run is not open: use `with MlflowRun(...)` or call start() first")

    # ------------------------------------------------------------------ TrainLogger

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Buffer ``metrics`` at ``step``; written every ``flush_interval_s`` seconds, at epoch ends and at close."""
        from mlflow.entities import Metric

        self._require_open()
        now = int(time.time() * 1000)
        for key, value in metrics.items():
            if key not in self._metric_keys:
                _check_metric_key(key)
                self._metric_keys.add(key)
            self._buffer.append(Metric(key, float(value), now, int(step)))
        if (
            len(self._buffer) >= _BATCH_METRICS
            or not self._flush_on.isdisjoint(metrics)
            or time.monotonic() - self._last_flush >= self.flush_interval_s
        ):
            self._flush()

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

        entities = [RunTag(_safe_key(k), param_value(v, MAX_TAG_LENGTH)) for k, v in tags.items()]
        for chunk in _chunks(entities, _BATCH_PARAMS_TAGS):
            self.client.log_batch(self.run_id, tags=chunk)

    def flush(self) -> None:
        """Write buffered metrics now."""
        self._require_open()
        self._flush()

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
            key, value = _safe_key(raw_key), param_value(raw_value)
            old = self._logged_params.get(key)
            if old is None:
                self._logged_params[key] = value
                new.append(Param(key, value))
            elif old != value:
                changed[f"posecore.param_changed.{key}"] = f"{old} -> {value}"
        for chunk in _chunks(new, _BATCH_PARAMS_TAGS):
            self.client.log_batch(self.run_id, params=chunk)
        if changed:
            _log.warning(
                "MLflow run %s keeps the first value of %d changed param(s) (recorded as posecore.param_changed.* tags)",
                self.run_id,
                len(changed),
            )
            self.set_tags(changed)

    def _flush(self, final: bool = False) -> None:
        self._last_flush = time.monotonic()
        if not self._buffer or self._client is None:
            return
        pending, self._buffer = self._buffer, []
        try:
            for chunk in _chunks(pending, _BATCH_METRICS):
                self._client.log_batch(self.run_id, metrics=chunk)
                pending = pending[len(chunk) :]
        except Exception as exc:
            if final:
                warnings.warn(
                    f"{len(pending)} metrics could not be written to MLflow run {self.run_id}: {exc}",
                    RuntimeWarning,
                    stacklevel=3,
                )
                return
            self._buffer = pending[-_MAX_BUFFERED:] + self._buffer
            warnings.warn(
                f"MLflow logging failed ({exc}); {len(self._buffer)} metrics kept to retry",
                RuntimeWarning,
                stacklevel=3,
            )

    def _log_curves(self) -> None:
        assert self._client is not None and self._curves_artifact is not None
        keys = [k for k in sorted(self._metric_keys) if k not in _CURVE_SKIP and not k.startswith(_CURVE_SKIP_PREFIXES)]
        if not keys:
            return
        try:
            history = {k: [(m.step, m.value) for m in self._client.get_metric_history(self.run_id, k)] for k in keys}
            with tempfile.TemporaryDirectory(prefix="posecore-curves-") as tmp:
                local = plot_curves(history, Path(tmp) / Path(self._curves_artifact).name)
                parent = str(Path(self._curves_artifact).parent)
                self._client.log_artifact(self.run_id, str(local), None if parent == "." else parent)
        except Exception as exc:
            warnings.warn(f"could not log training curves to MLflow: {exc}", RuntimeWarning, stacklevel=3)

    def _use_global_uri(self) -> None:
        """Point the process's MLflow at this run's store (so ``mlflow.*`` calls in the block go there)."""
        import mlflow
        from mlflow.tracking._tracking_service import utils as tracking_utils

        self._saved_uri = (getattr(tracking_utils, "_tracking_uri", None), os.environ.get("MLFLOW_TRACKING_URI"))
        mlflow.set_tracking_uri(self.tracking_uri)

    def _restore_global_uri(self) -> None:
        # mlflow.set_tracking_uri also sets $MLFLOW_TRACKING_URI; put both back as they were.
        if self._saved_uri is None:
            return
        import mlflow

        previous, env = self._saved_uri
        self._saved_uri = None
        mlflow.set_tracking_uri(previous)
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env


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


# --------------------------------------------------------------------------- factories


def make_logger(
    cfg: TrackingConfig,
    params: Any,
    repo_root: str | Path,
    rank: int,
    run_id_file: str | Path | None,
    *,
    run_id: str | None = None,
    stage: str = "train",
) -> MlflowRun | NullLogger:
    """The train stage's logger: an unstarted :class:`MlflowRun` on rank 0 (use it as ``with``),
    a :class:`NullLogger` elsewhere. ``run_id`` resumes that run (training resumed from a checkpoint).

    Raises :class:`TrackingUnavailable` at once when the tracking server does not answer.
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
        tags={**lineage_tags(repo_root), "posecore.stage": stage},
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
        raise ValueError(f"{path} is not an MLflow run id file written by posecore.tracking: {exc}") from exc
    if not isinstance(info, dict) or not info.get("run_id"):
        raise ValueError(f"{path} has no run_id; it was not written by posecore.tracking")
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
