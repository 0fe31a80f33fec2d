"""The local stack: SeaweedFS (S3), an MLflow server and a Prefect server plus worker, on loopback.

``up``, ``down`` and ``status`` loop over the services of :mod:`posecore.stack.service`'s
registry in ``SERVICES`` order; what each one runs and how it is checked lives in its own
module.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Literal

from posecore.stack import _process
from posecore.stack._process import HOST, ProcessRecord
from posecore.stack.mlflow_server import MlflowServer
from posecore.stack.prefect_server import PrefectServer
from posecore.stack.prefect_worker import PrefectWorker
from posecore.stack.seaweedfs import SeaweedFS, credentials
from posecore.stack.service import STACK_SERVICES, Service, StackConfig, StackError, state_dir, wait_ready

# start and status order: each service after those it needs
SERVICES: tuple[str, ...] = (SeaweedFS.name, MlflowServer.name, PrefectServer.name, PrefectWorker.name)


def _components() -> dict[str, tuple[str, ...]]:
    """The ``--only`` words, each with its services in start order."""
    out: dict[str, tuple[str, ...]] = {}
    for name in SERVICES:
        component = STACK_SERVICES.get(name).component
        out[component] = (*out.get(component, ()), name)
    return out


COMPONENTS: dict[str, tuple[str, ...]] = _components()

ServiceState = Literal["running", "unhealthy", "stale", "stopped"]


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: ServiceState
    url: str
    pid: int | None = None
    healthy: bool = False
    ready_s: float | None = None
    log: str | None = None


@dataclass(frozen=True)
class StackStatus:
    state_dir: Path
    services: tuple[ServiceStatus, ...]

    def __getitem__(self, name: str) -> ServiceStatus:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)

    def running(self) -> list[str]:
        return [s.name for s in self.services if s.state in ("running", "unhealthy")]


def _service(name: str) -> Service:
    return STACK_SERVICES.build(name)


def env(config: StackConfig = StackConfig(), include_credentials: bool = False) -> dict[str, str]:  # noqa: B008 - frozen, safe as a default
    """Environment variables that point MLflow, Prefect, boto3 and DVC clients at the stack.

    The S3 key pair is included only when asked for (it is a secret).
    """
    state = state_dir(config)
    s3 = _service(SeaweedFS.name).running_url(state, config)
    out = {
        "MLFLOW_TRACKING_URI": _service(MlflowServer.name).running_url(state, config),
        "PREFECT_API_URL": _service(PrefectServer.name).running_url(state, config),
        "MLFLOW_S3_ENDPOINT_URL": s3,
        "AWS_ENDPOINT_URL": s3,
    }
    if include_credentials:
        creds = credentials(config)
        if creds is None:
            raise StackError(f"no S3 credentials in {state}: start the stack first (`posecore stack up`)")
        out["AWS_ACCESS_KEY_ID"] = creds.access_key_id
        out["AWS_SECRET_ACCESS_KEY"] = creds.secret_access_key
    return out


def format_exports(variables: Mapping[str, str]) -> str:
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in variables.items())


# --- up / down / status ----------------------------------------------------------------------


def _services(components: Iterable[str] | None) -> list[str]:
    if components is None:
        return list(SERVICES)
    wanted: set[str] = set()
    for comp in components:
        if comp not in COMPONENTS:
            raise StackError(f"unknown component {comp!r}; choose from {', '.join(COMPONENTS)}")
        wanted.update(COMPONENTS[comp])
    return [s for s in SERVICES if s in wanted]


def _check_requirements(to_start: list[Service], wanted: list[str], running: set[str]) -> None:
    for service in to_start:
        for needed, why in service.requires.items():
            if needed not in running and needed not in wanted:
                only = ",".join(dict.fromkeys([_service(needed).component, service.component]))
                raise StackError(f"{service.name} {why}: start it too (--only {only})")


def _check_ports(to_start: list[Service], config: StackConfig) -> None:
    busy = []
    for service in to_start:
        if service.port_setting is not None:
            port = getattr(config, service.port_setting)
            if _process.port_in_use(port):
                busy.append(
                    f"{service.name} port {HOST}:{port} is already in use (set another with {service.port_setting})"
                )
    if busy:
        raise StackError("cannot start the stack:\n  " + "\n  ".join(busy))


def _stop(state: Path, record: ProcessRecord, timeout_s: float) -> bool:
    """Stop a service (or its orphans) and forget it; returns whether anything was running."""
    was_running = _process.stop(record, timeout_s)
    _service(record.service).cleanup(record)
    _process.remove_record(state, record.service)
    return was_running


def _clear_stale(state: Path, service: str, timeout_s: float) -> ProcessRecord | None:
    """The running record of ``service``; a stale pid file is removed (and orphans stopped)."""
    record = _process.read_record(state, service)
    if record is None:
        return None
    if _process.is_running(record):
        return record
    _stop(state, record, timeout_s)
    return None


def up(config: StackConfig = StackConfig(), components: Iterable[str] | None = None) -> StackStatus:  # noqa: B008 - frozen, safe as a default
    """Start the requested components (default: all) and wait until each is ready.

    Services already running are kept. On any failure the services this call
    started are stopped again, and the error names the log to read.
    """
    state = state_dir(config)
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    wanted = _services(components)
    running = {s for s in SERVICES if _clear_stale(state, s, config.stop_timeout_s) is not None}
    to_start = [_service(s) for s in wanted if s not in running]
    _check_requirements(to_start, wanted, running)
    _check_ports(to_start, config)

    started: list[ProcessRecord] = []
    try:
        # the services of a wave start together; each is then awaited in dependency order
        for wave in sorted({s.start_wave for s in to_start}):
            client_env = env(config, include_credentials=credentials(config) is not None)
            launched: list[tuple[Service, ProcessRecord]] = []
            for service in (s for s in to_start if s.start_wave == wave):
                record = service.spawn(state, config, client_env)
                started.append(record)
                _process.write_record(state, record)
                launched.append((service, record))
            for service, record in launched:
                ready_s = wait_ready(record, partial(service.ready, record, config), config.startup_timeout_s)
                _process.write_record(state, replace(record, ready_s=round(ready_s, 2)))
                service.after_ready(record, config)
    except BaseException:
        for record in reversed(started):
            _stop(state, record, config.stop_timeout_s)
        raise
    return status(config)


def down(config: StackConfig = StackConfig(), components: Iterable[str] | None = None) -> list[str]:  # noqa: B008 - frozen, safe as a default
    """Stop the requested components (default: all), dependants first; returns those stopped.

    Stale pid files (a crashed service or a reboot) are removed, and orphans left in a
    crashed service's process group are stopped too. Waits until the ports are free.
    """
    state = state_dir(config)
    wanted = set(_services(components))
    stopped: list[str] = []
    ports: list[int] = []
    for wave in sorted({_service(s).stop_wave for s in SERVICES}):
        # one wave stops in parallel; within it, later services of SERVICES are listed first
        names = [s for s in reversed(SERVICES) if s in wanted and _service(s).stop_wave == wave]
        records = [r for s in names if (r := _process.read_record(state, s)) is not None]
        if not records:
            continue
        with ThreadPoolExecutor(max_workers=len(records)) as pool:
            was_running = list(pool.map(lambda r: _stop(state, r, config.stop_timeout_s), records))
        for record, running in zip(records, was_running, strict=True):
            if running:
                stopped.append(record.service)
            ports.extend(record.ports.values())
    busy = _process.wait_ports_free(ports, timeout_s=config.stop_timeout_s)
    if busy:
        raise StackError(f"stopped {', '.join(stopped) or 'nothing'}, but ports {busy} are still in use")
    return stopped


def status(config: StackConfig = StackConfig()) -> StackStatus:  # noqa: B008 - frozen, safe as a default
    """Each service's state (running, unhealthy, stale pid file, stopped), URL and health."""
    state = state_dir(config)
    services = []
    for name in SERVICES:
        service = _service(name)
        record = _process.read_record(state, name)
        if record is None:
            services.append(ServiceStatus(name, "stopped", service.url(config)))
            continue
        if not _process.is_running(record):
            services.append(ServiceStatus(name, "stale", record.url or service.url(config), log=record.log))
            continue
        healthy = service.healthy(record, config)
        services.append(
            ServiceStatus(
                name,
                "running" if healthy else "unhealthy",
                record.url,
                pid=record.pid,
                healthy=healthy,
                ready_s=record.ready_s,
                log=record.log,
            )
        )
    return StackStatus(state, tuple(services))
