"""What every service of the local stack is: a :class:`Service`, registered in ``STACK_SERVICES``.

A service is a detached process (see :mod:`posecore.stack._process`) that
:mod:`posecore.stack._stack` starts, awaits, checks and stops without knowing which one it
is: ``up`` spawns each start wave together and then waits for each service's
:meth:`Service.ready`, ``status`` asks :meth:`Service.healthy`, ``down`` stops one
``stop_wave`` at a time. This module also holds what the services share: the
:class:`StackConfig` they read their ports from, :class:`StackError`, and the HTTP,
readiness and environment helpers.

To add a service:

1. write ``posecore/stack/<name>.py`` with a ``Service`` subclass decorated with
   :func:`register`; give it ``name``, ``component`` (the ``--only`` word that starts it)
   and, when it serves on a configured port, ``port_setting`` (a :class:`StackConfig`
   field); implement ``url``, ``launch`` (the command line, environment and ports) and
   ``healthy``; override ``prepare``, ``ready``, ``after_ready`` or ``cleanup`` if it
   needs to;
2. import the module in ``_stack.py`` and add its name to ``SERVICES`` after the services
   it needs (``tests/stack/test_service.py`` then checks it like every other one).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, TypeVar

from posecore._registry import Registry
from posecore.errors import UserError
from posecore.stack import _process
from posecore.stack._process import HOST, ProcessRecord

_POLL_S = 0.25


class StackError(UserError, RuntimeError):
    """The stack cannot start or stop as asked; the message says why and what to do."""

    exit_code = 2


@dataclass(frozen=True)
class StackConfig:
    """Where the stack keeps its state and which loopback ports it serves on.

    ``bucket`` is created at start-up; MLflow stores artifacts in it under
    ``artifacts_prefix`` (DVC data can share it: ``StorageConfig.bucket``).
    ``backend_store_uri`` is MLflow's database, by default SQLite in the state folder
    (``postgresql://...`` works when psycopg2 is installed).
    """

    state_dir: str = ".stack"
    s3_port: int = field(default=8333, metadata={"range": (1, 65535)})
    mlflow_port: int = field(default=5000, metadata={"range": (1, 65535)})
    prefect_port: int = field(default=4200, metadata={"range": (1, 65535)})
    bucket: str = "posecore"
    artifacts_prefix: str = "mlartifacts"
    backend_store_uri: str | None = None
    work_pool: str = "posecore"
    startup_timeout_s: float = field(default=180.0, metadata={"range": (1.0, 3600.0)})
    stop_timeout_s: float = field(default=15.0, metadata={"range": (0.5, 600.0)})


def state_dir(config: StackConfig) -> Path:
    """``config.state_dir``, relative paths taken from the enclosing git/DVC repository (else cwd)."""
    path = Path(config.state_dir).expanduser()
    if not path.is_absolute():
        cwd = Path.cwd()
        root = next((d for d in (cwd, *cwd.parents) if (d / ".git").exists() or (d / ".dvc").is_dir()), cwd)
        path = root / path
    return path.resolve()


@dataclass(frozen=True)
class Launch:
    """How to start one service: what :func:`posecore.stack._process.spawn` needs but the log path.

    ``env`` is the whole environment of the process; ``url`` is where clients reach it;
    ``ports`` are those ``down`` waits to see free; ``meta`` is kept in the pid file for
    the health check (the worker's pool and name).
    """

    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: Path
    url: str
    stop_signal: str = "SIGTERM"
    ports: Mapping[str, int] = field(default_factory=dict)
    meta: Mapping[str, str] = field(default_factory=dict)


class Service(ABC):
    """One process of the stack.

    ``start_wave``: ``up`` spawns the services of a wave together (start-up dominates, and
    the servers do not need each other to boot), then waits for each in ``SERVICES`` order;
    a later wave starts once the earlier ones are ready. ``stop_wave``: ``down`` stops the
    lowest wave first, the services within one in parallel, so dependants go first.
    ``requires`` maps a service this one cannot run without to why, for the error when
    neither runs nor is asked for.
    """

    name: ClassVar[str]
    component: ClassVar[str]
    port_setting: ClassVar[str | None] = None
    start_wave: ClassVar[int] = 0
    stop_wave: ClassVar[int] = 0
    requires: ClassVar[Mapping[str, str]] = {}

    @abstractmethod
    def url(self, config: StackConfig) -> str:
        """Where clients reach the service when it runs on the configured port."""

    def running_url(self, state: Path, config: StackConfig) -> str:
        """The URL of the running service from its pid file, else the configured one."""
        record = _process.read_record(state, self.name)
        return record.url if record is not None and record.url else self.url(config)

    def prepare(self, state: Path, config: StackConfig) -> None:  # noqa: B027 - an optional hook
        """Side effects the launch relies on (files, a work pool); nothing by default."""

    @abstractmethod
    def launch(self, state: Path, config: StackConfig, client_env: Mapping[str, str]) -> Launch:
        """The command line and environment; ``client_env`` is what :func:`posecore.stack.env` gives clients."""

    def spawn(self, state: Path, config: StackConfig, client_env: Mapping[str, str]) -> ProcessRecord:
        """Prepare, then start the process detached, logging to ``<state>/logs/<name>.log``."""
        self.prepare(state, config)
        launch = self.launch(state, config, client_env)
        return _process.spawn(
            self.name,
            launch.argv,
            env=launch.env,
            cwd=launch.cwd,
            log_path=state / "logs" / f"{self.name}.log",
            url=launch.url,
            stop_signal=launch.stop_signal,
            ports=launch.ports,
            meta=launch.meta,
        )

    @abstractmethod
    def healthy(self, record: ProcessRecord, config: StackConfig) -> bool:
        """Whether the running process serves; never raises for one that does not."""

    def ready(self, record: ProcessRecord, config: StackConfig) -> bool:
        """Whether a process just spawned is ready; :meth:`healthy` by default."""
        return self.healthy(record, config)

    def after_ready(self, record: ProcessRecord, config: StackConfig) -> None:  # noqa: B027 - an optional hook
        """Set-up that needs the service up (the bucket); nothing by default."""

    def cleanup(self, record: ProcessRecord) -> None:  # noqa: B027 - an optional hook
        """Remove what the stopped process leaves behind outside the state folder; nothing by default."""


STACK_SERVICES: Registry[Service] = Registry("stack service")
S = TypeVar("S", bound=type[Service])


def register(cls: S) -> S:
    """Register a service class under its ``name`` (so the name is written once)."""
    STACK_SERVICES.register(cls.name)(cls)
    return cls


# --- helpers shared by the services ------------------------------------------------------


def write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback never goes via a proxy


def http(url: str, method: str = "GET", body: object | None = None, timeout_s: float = 3.0) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with _opener.open(req, timeout=timeout_s) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        return exc.code, None
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def http_ok(url: str) -> bool:
    try:
        return http(url)[0] == 200
    except (OSError, urllib.error.URLError):
        return False


def wait_ready(record: ProcessRecord, ready: Callable[[], bool], timeout_s: float) -> float:
    """Poll ``ready`` until it holds; returns seconds since the process started."""
    deadline = time.monotonic() + timeout_s
    while True:
        if not _process.is_running(record):
            raise StackError(
                f"{record.service} exited during start-up; last lines of {record.log}:\n{_process.log_tail(record.log)}"
            )
        if ready():
            return time.time() - record.started_at
        if time.monotonic() > deadline:
            raise StackError(
                f"{record.service} did not become ready within {timeout_s:.0f} s; "
                f"last lines of {record.log}:\n{_process.log_tail(record.log)}"
            )
        time.sleep(_POLL_S)


def executable(name: str) -> str:
    """A console script of this virtual environment (beside its python), else from PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise StackError(f"`{name}` is not installed (pip install -e '.[dev]' provides it)")
    return found


def base_env() -> dict[str, str]:
    """This process's environment with loopback exempt from any proxy."""
    out = dict(os.environ)
    no_proxy = ",".join(filter(None, [HOST, "localhost", out.get("NO_PROXY") or out.get("no_proxy")]))
    out["NO_PROXY"] = out["no_proxy"] = no_proxy
    return out
