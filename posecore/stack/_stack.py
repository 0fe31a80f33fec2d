"""The local stack: SeaweedFS (S3), an MLflow server and a Prefect server plus worker, on loopback."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Literal

from posecore.stack import _process
from posecore.stack._process import HOST, ProcessRecord
from posecore.storage import S3Credentials, StorageError, check_connection, ensure_bucket, s3_client

COMPONENTS: dict[str, tuple[str, ...]] = {
    "seaweedfs": ("seaweedfs",),
    "mlflow": ("mlflow",),
    "prefect": ("prefect-server", "prefect-worker"),
}
SERVICES: tuple[str, ...] = ("seaweedfs", "mlflow", "prefect-server", "prefect-worker")
# weed mini serves master, volume, filer, S3 and admin, each on an HTTP and a gRPC port; all
# but the S3 HTTP port are picked free at start so that nothing collides with them. Its
# plugin worker dials the admin gRPC port as admin HTTP port + 10000 whatever the flags
# say, so every internal service keeps that offset.
_WEED_INTERNAL = ("master", "volume", "filer", "admin")
_GRPC_OFFSET = 10000
_S3_CONFIG = "s3.json"
_POLL_S = 0.25
# down stops a wave at a time, the services within one wave in parallel
_STOP_WAVES = (("prefect-worker",), ("prefect-server", "mlflow"), ("seaweedfs",))

ServiceState = Literal["running", "unhealthy", "stale", "stopped"]


class StackError(RuntimeError):
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


# --- paths, credentials, URLs -------------------------------------------------------------


def state_dir(config: StackConfig) -> Path:
    """``config.state_dir``, relative paths taken from the enclosing git/DVC repository (else cwd)."""
    path = Path(config.state_dir).expanduser()
    if not path.is_absolute():
        cwd = Path.cwd()
        root = next((d for d in (cwd, *cwd.parents) if (d / ".git").exists() or (d / ".dvc").is_dir()), cwd)
        path = root / path
    return path.resolve()


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def credentials(config: StackConfig) -> S3Credentials | None:
    """The key pair the stack's S3 server accepts (from its ``s3.json``), if it was ever started."""
    try:
        raw = json.loads((state_dir(config) / _S3_CONFIG).read_text())
        cred = raw["identities"][0]["credentials"][0]
        return S3Credentials(cred["accessKey"], cred["secretKey"])
    except (FileNotFoundError, KeyError, IndexError, ValueError):
        return None


def _ensure_s3_config(state: Path, config: StackConfig) -> S3Credentials:
    """Identities for weed: the environment's key pair, else the one kept from an earlier start,
    else a new random one. The file is 0600 inside the git-ignored state folder."""
    creds = S3Credentials.from_env() or credentials(config)
    if creds is None:
        creds = S3Credentials("posecore-" + secrets.token_hex(6), secrets.token_urlsafe(30))
    identities = {
        "identities": [
            {
                "name": "posecore",
                "credentials": [{"accessKey": creds.access_key_id, "secretKey": creds.secret_access_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    _write_private(state / _S3_CONFIG, json.dumps(identities, indent=2))
    return creds


def _url(service: str, config: StackConfig) -> str:
    port = {
        "seaweedfs": config.s3_port,
        "mlflow": config.mlflow_port,
        "prefect-server": config.prefect_port,
        "prefect-worker": config.prefect_port,
    }[service]
    suffix = "/api" if service.startswith("prefect") else ""
    return f"http://{HOST}:{port}{suffix}"


def _service_url(state: Path, service: str, config: StackConfig) -> str:
    """The URL of a running service from its pid file, else the configured one."""
    record = _process.read_record(state, service)
    return record.url if record is not None and record.url else _url(service, config)


def env(config: StackConfig = StackConfig(), include_credentials: bool = False) -> dict[str, str]:
    """Environment variables that point MLflow, Prefect, boto3 and DVC clients at the stack.

    The S3 key pair is included only when asked for (it is a secret).
    """
    state = state_dir(config)
    s3 = _service_url(state, "seaweedfs", config)
    out = {
        "MLFLOW_TRACKING_URI": _service_url(state, "mlflow", config),
        "PREFECT_API_URL": _service_url(state, "prefect-server", config),
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


# --- health -----------------------------------------------------------------------------


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback never goes via a proxy


def _http(url: str, method: str = "GET", body: object | None = None, timeout_s: float = 3.0) -> tuple[int, object]:
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


def _http_ok(url: str) -> bool:
    try:
        return _http(url)[0] == 200
    except (OSError, urllib.error.URLError):
        return False


def _s3_healthy(url: str, creds: S3Credentials | None) -> bool:
    if creds is None:
        return False
    try:
        check_connection(s3_client(url, credentials=creds, retries=1, timeout_s=2.0))
        return True
    except StorageError:
        return False


def _worker_online(api_url: str, pool: str, name: str, since: float = 0.0) -> bool:
    """Whether worker ``name`` has sent a heartbeat to ``pool`` after ``since`` (epoch seconds)."""
    try:
        status, workers = _http(f"{api_url}/work_pools/{pool}/workers/filter", "POST", {})
    except (OSError, urllib.error.URLError):
        return False
    if status != 200 or not isinstance(workers, list):
        return False
    for worker in workers:
        if worker.get("name") != name or worker.get("status") != "ONLINE":
            continue
        beat = worker.get("last_heartbeat_time")
        if beat and datetime.fromisoformat(beat.replace("Z", "+00:00")).timestamp() >= since - 1.0:
            return True
    return False


def _worker_name(config: StackConfig) -> str:
    return f"{config.work_pool}-worker"


def _healthy(service: str, record: ProcessRecord, config: StackConfig) -> bool:
    if service == "seaweedfs":
        return _s3_healthy(record.url, credentials(config))
    if service == "mlflow":
        return _http_ok(f"{record.url}/health")
    if service == "prefect-server":
        return _http_ok(f"{record.url}/health")
    pool = record.meta.get("work_pool", config.work_pool)
    return _worker_online(record.url, pool, record.meta.get("worker", _worker_name(config)))


def _wait_ready(record: ProcessRecord, ready: Callable[[], bool], timeout_s: float) -> float:
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


# --- commands and environments of the services --------------------------------------------


def _executable(name: str) -> str:
    """A console script of this virtual environment (beside its python), else from PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise StackError(f"`{name}` is not installed (pip install -e '.[dev]' provides it)")
    return found


def _base_env() -> dict[str, str]:
    out = dict(os.environ)
    no_proxy = ",".join(filter(None, [HOST, "localhost", out.get("NO_PROXY") or out.get("no_proxy")]))
    out["NO_PROXY"] = out["no_proxy"] = no_proxy
    return out


def _prefect_env(state: Path, api_url: str) -> dict[str, str]:
    out = _base_env()
    out.update(
        PREFECT_HOME=str(state / "prefect"),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_CLI_PROMPT="false",
    )
    return out


def _weed_ports(s3_port: int) -> dict[str, int]:
    """Free ports for weed's internal services: ``NAME.port`` and ``NAME.port.grpc`` = port + 10000."""
    taken = {s3_port}
    ports: dict[str, int] = {}
    for name in _WEED_INTERNAL:
        for _ in range(200):
            port = secrets.randbelow(65535 - _GRPC_OFFSET - 10000) + 10000
            pair = (port, port + _GRPC_OFFSET)
            if taken.isdisjoint(pair) and not any(_process.port_in_use(p) for p in pair):
                break
        else:
            raise StackError("found no free pair of loopback ports for SeaweedFS")
        taken.update(pair)
        ports[f"{name}.port"], ports[f"{name}.port.grpc"] = pair
    grpc = s3_port + _GRPC_OFFSET
    if grpc > 65535 or grpc in taken or _process.port_in_use(grpc):
        grpc = _process.free_ports(1, exclude=frozenset(taken))[0]
    ports["s3.port.grpc"] = grpc
    return ports


def _remove_weed_sockets(ports: Iterable[int]) -> None:
    """weed leaves ``/tmp/seaweedfs-<service>-<port>.sock`` behind for each port; it has flags
    to move only two of them, so they are removed after it stopped."""
    for port in ports:
        for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
            if sock.is_socket():
                sock.unlink(missing_ok=True)


def _spawn_seaweedfs(state: Path, config: StackConfig) -> ProcessRecord:
    _ensure_s3_config(state, config)
    data = state / "seaweedfs"
    data.mkdir(parents=True, exist_ok=True)
    ports = _weed_ports(config.s3_port)
    cmd = [
        _executable("weed"),
        "mini",
        f"-dir={data}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        f"-s3.config={state / _S3_CONFIG}",
        f"-s3.port={config.s3_port}",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        "-volume.id=posecore",  # stable across restarts on different ports
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    return _process.spawn(
        "seaweedfs",
        cmd,
        env=_base_env(),
        cwd=state,
        log_path=state / "logs" / "seaweedfs.log",
        url=_url("seaweedfs", config),
        ports={"s3": config.s3_port, **ports},
    )


def _spawn_mlflow(state: Path, config: StackConfig) -> ProcessRecord:
    creds = credentials(config)
    if creds is None:
        raise StackError(f"no S3 credentials in {state}: start seaweedfs first")
    backend = config.backend_store_uri or f"sqlite:///{state / 'mlflow.db'}"
    prefix = config.artifacts_prefix.strip("/")
    destination = f"s3://{config.bucket}/{prefix}" if prefix else f"s3://{config.bucket}"
    environ = _base_env()
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        environ.pop(var, None)
    environ.update(
        MLFLOW_S3_ENDPOINT_URL=_service_url(state, "seaweedfs", config),
        AWS_ACCESS_KEY_ID=creds.access_key_id,
        AWS_SECRET_ACCESS_KEY=creds.secret_access_key,
        AWS_DEFAULT_REGION=environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        # the job runner (GenAI scorers, trace roll-ups) adds 8 processes that double start-up
        # time on a small machine and outlive SIGTERM for 15 s; model tracking needs none of it
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        # in the environment, not argv: a postgresql:// URI may hold a password that ps would show
        MLFLOW_BACKEND_STORE_URI=backend,
    )
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        HOST,
        "--port",
        str(config.mlflow_port),
        "--artifacts-destination",
        destination,
        "--workers",
        "1",
    ]
    return _process.spawn(
        "mlflow",
        cmd,
        env=environ,
        cwd=state,
        log_path=state / "logs" / "mlflow.log",
        url=_url("mlflow", config),
        ports={"http": config.mlflow_port},
    )


def _spawn_prefect_server(state: Path, config: StackConfig) -> ProcessRecord:
    url = _url("prefect-server", config)
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(config.prefect_port)]
    return _process.spawn(
        "prefect-server",
        cmd,
        env=_prefect_env(state, url),
        cwd=state,
        log_path=state / "logs" / "prefect-server.log",
        url=url,
        stop_signal="SIGINT",
        ports={"http": config.prefect_port},
    )


def _ensure_work_pool(state: Path, config: StackConfig, api_url: str) -> None:
    """Create the process work pool unless it exists (idempotent)."""
    status, _ = _http(f"{api_url}/work_pools/{config.work_pool}")
    if status == 200:
        return
    cmd = [sys.executable, "-m", "prefect", "--no-prompt", "work-pool", "create", config.work_pool, "--type", "process"]
    proc = subprocess.run(
        cmd, env=_prefect_env(state, api_url), cwd=state, capture_output=True, text=True, timeout=300, check=False
    )
    if proc.returncode != 0 and "already exists" not in proc.stdout + proc.stderr:
        raise StackError(f"could not create work pool {config.work_pool!r}:\n{proc.stdout}{proc.stderr}")


def _spawn_prefect_worker(state: Path, config: StackConfig, client_env: Mapping[str, str]) -> ProcessRecord:
    api_url = _service_url(state, "prefect-server", config)
    environ = _prefect_env(state, api_url)
    environ.update(client_env)  # flow runs log to the stack's MLflow and reach its S3
    cmd = [
        sys.executable,
        "-m",
        "prefect",
        "worker",
        "start",
        "--pool",
        config.work_pool,
        "--name",
        _worker_name(config),
    ]
    return _process.spawn(
        "prefect-worker",
        cmd,
        env=environ,
        cwd=Path.cwd(),
        log_path=state / "logs" / "prefect-worker.log",
        url=api_url,
        stop_signal="SIGINT",  # a worker may sit out SIGTERM for seconds; SIGINT stops it at once
        meta={"work_pool": config.work_pool, "worker": _worker_name(config)},
    )


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


def _check_ports(to_start: list[str], config: StackConfig) -> None:
    settings = {"seaweedfs": "s3_port", "mlflow": "mlflow_port", "prefect-server": "prefect_port"}
    busy = []
    for service in to_start:
        if service in settings:
            port = getattr(config, settings[service])
            if _process.port_in_use(port):
                busy.append(f"{service} port {HOST}:{port} is already in use (set another with {settings[service]})")
    if busy:
        raise StackError("cannot start the stack:\n  " + "\n  ".join(busy))


def _stop(state: Path, record: ProcessRecord, timeout_s: float) -> bool:
    """Stop a service (or its orphans) and forget it; returns whether anything was running."""
    was_running = _process.stop(record, timeout_s)
    if record.service == "seaweedfs":
        _remove_weed_sockets(record.ports.values())
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


def up(config: StackConfig = StackConfig(), components: Iterable[str] | None = None) -> StackStatus:
    """Start the requested components (default: all) and wait until each is ready.

    Services already running are kept. On any failure the services this call
    started are stopped again, and the error names the log to read.
    """
    state = state_dir(config)
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    wanted = _services(components)
    running = {s for s in SERVICES if _clear_stale(state, s, config.stop_timeout_s) is not None}
    to_start = [s for s in wanted if s not in running]
    if "mlflow" in to_start and "seaweedfs" not in running and "seaweedfs" not in wanted:
        raise StackError("mlflow keeps its artifacts in SeaweedFS: start it too (--only seaweedfs,mlflow)")
    _check_ports(to_start, config)

    started: list[ProcessRecord] = []

    def launch(spawn: Callable[[], ProcessRecord]) -> ProcessRecord:
        record = spawn()
        started.append(record)
        _process.write_record(state, record)
        return record

    def ready(record: ProcessRecord, check: Callable[[], bool]) -> None:
        ready_s = _wait_ready(record, check, config.startup_timeout_s)
        _process.write_record(state, replace(record, ready_s=round(ready_s, 2)))

    try:
        # the three servers start together; each is then awaited in dependency order
        records: dict[str, ProcessRecord] = {}
        if "seaweedfs" in to_start:
            records["seaweedfs"] = launch(lambda: _spawn_seaweedfs(state, config))
        if "mlflow" in to_start:
            records["mlflow"] = launch(lambda: _spawn_mlflow(state, config))
        if "prefect-server" in to_start:
            records["prefect-server"] = launch(lambda: _spawn_prefect_server(state, config))

        if "seaweedfs" in records:
            creds = credentials(config)
            rec = records["seaweedfs"]
            ready(rec, lambda: _s3_healthy(rec.url, creds))
            ensure_bucket(config.bucket, s3_client(rec.url, credentials=creds))
        if "mlflow" in records:
            rec_m = records["mlflow"]
            ready(rec_m, lambda: _http_ok(f"{rec_m.url}/health"))
        if "prefect-server" in records:
            rec_p = records["prefect-server"]
            ready(rec_p, lambda: _http_ok(f"{rec_p.url}/health"))
        if "prefect-worker" in to_start:
            api_url = _service_url(state, "prefect-server", config)
            _ensure_work_pool(state, config, api_url)
            client_env = env(config, include_credentials=credentials(config) is not None)
            rec_w = launch(lambda: _spawn_prefect_worker(state, config, client_env))
            ready(rec_w, lambda: _worker_online(api_url, config.work_pool, _worker_name(config), rec_w.started_at))
    except BaseException:
        for record in reversed(started):
            _stop(state, record, config.stop_timeout_s)
        raise
    return status(config)


def down(config: StackConfig = StackConfig(), components: Iterable[str] | None = None) -> list[str]:
    """Stop the requested components (default: all), dependants first; returns those stopped.

    Stale pid files (a crashed service or a reboot) are removed, and orphans left in a
    crashed service's process group are stopped too. Waits until the ports are free.
    """
    state = state_dir(config)
    wanted = set(_services(components))
    stopped: list[str] = []
    ports: list[int] = []
    for wave in _STOP_WAVES:
        records = [r for s in wave if s in wanted and (r := _process.read_record(state, s)) is not None]
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


def status(config: StackConfig = StackConfig()) -> StackStatus:
    """Each service's state (running, unhealthy, stale pid file, stopped), URL and health."""
    state = state_dir(config)
    services = []
    for service in SERVICES:
        record = _process.read_record(state, service)
        if record is None:
            services.append(ServiceStatus(service, "stopped", _url(service, config)))
            continue
        if not _process.is_running(record):
            services.append(ServiceStatus(service, "stale", record.url or _url(service, config), log=record.log))
            continue
        healthy = _healthy(service, record, config)
        services.append(
            ServiceStatus(
                service,
                "running" if healthy else "unhealthy",
                record.url,
                pid=record.pid,
                healthy=healthy,
                ready_s=record.ready_s,
                log=record.log,
            )
        )
    return StackStatus(state, tuple(services))
