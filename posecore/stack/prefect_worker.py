"""One Prefect process worker serving the ``work_pool`` (created if missing) of the stack's server.

Its flow runs see :func:`posecore.stack.env`, the S3 key pair included, so they log to
the stack's MLflow and reach its S3.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.error
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from posecore.stack._process import HOST, ProcessRecord
from posecore.stack.prefect_server import PrefectServer, prefect_env
from posecore.stack.service import Launch, Service, StackConfig, StackError, http, register


def _worker_online(api_url: str, pool: str, name: str, since: float = 0.0) -> bool:
    """Whether worker ``name`` has sent a heartbeat to ``pool`` after ``since`` (epoch seconds)."""
    try:
        status, workers = http(f"{api_url}/work_pools/{pool}/workers/filter", "POST", {})
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


def _ensure_work_pool(state: Path, config: StackConfig, api_url: str) -> None:
    """Create the process work pool unless it exists (idempotent)."""
    status, _ = http(f"{api_url}/work_pools/{config.work_pool}")
    if status == 200:
        return
    cmd = [sys.executable, "-m", "prefect", "--no-prompt", "work-pool", "create", config.work_pool, "--type", "process"]
    proc = subprocess.run(
        cmd, env=prefect_env(state, api_url), cwd=state, capture_output=True, text=True, timeout=300, check=False
    )
    if proc.returncode != 0 and "already exists" not in proc.stdout + proc.stderr:
        raise StackError(f"could not create work pool {config.work_pool!r}:\n{proc.stdout}{proc.stderr}")


@register
class PrefectWorker(Service):
    """Started once the server is ready (it needs the pool); stopped first (it runs the flows)."""

    name = "prefect-worker"
    component = "prefect"
    start_wave = 1
    stop_wave = 0

    def url(self, config: StackConfig) -> str:
        return f"http://{HOST}:{config.prefect_port}/api"

    def prepare(self, state: Path, config: StackConfig) -> None:
        _ensure_work_pool(state, config, PrefectServer().running_url(state, config))

    def launch(self, state: Path, config: StackConfig, client_env: Mapping[str, str]) -> Launch:
        api_url = PrefectServer().running_url(state, config)
        environ = prefect_env(state, api_url)
        environ.update(client_env)  # flow runs log to the stack's MLflow and reach its S3
        argv = [
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
        return Launch(
            argv,
            environ,
            cwd=Path.cwd(),
            url=api_url,
            stop_signal="SIGINT",  # a worker may sit out SIGTERM for seconds; SIGINT stops it at once
            meta={"work_pool": config.work_pool, "worker": _worker_name(config)},
        )

    def healthy(self, record: ProcessRecord, config: StackConfig) -> bool:
        pool = record.meta.get("work_pool", config.work_pool)
        return _worker_online(record.url, pool, record.meta.get("worker", _worker_name(config)))

    def ready(self, record: ProcessRecord, config: StackConfig) -> bool:
        """Online with a heartbeat from this process, not one left on the server by an earlier worker."""
        pool = record.meta.get("work_pool", config.work_pool)
        return _worker_online(record.url, pool, record.meta.get("worker", _worker_name(config)), record.started_at)
