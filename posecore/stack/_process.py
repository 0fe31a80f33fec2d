"""Detached background processes tracked by a JSON pid file and a log in the state folder.

Each service runs in its own session (``start_new_session``), so its process group
id is its pid and stopping it signals the whole group: children such as uvicorn
workers or flow-run subprocesses go with it. A pid file records the leader's pid and
start time; a pid reused by an unrelated process after a crash or reboot never
matches, so a stale pid file is recognised and nothing foreign is signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

HOST = "127.0.0.1"
_CREATE_TIME_TOLERANCE_S = 0.05
_children: dict[int, subprocess.Popen] = {}  # reaped on stop, so no zombie outlives its service


@dataclass(frozen=True)
class ProcessRecord:
    """What a pid file holds: the leader process, where it serves and where it logs."""

    service: str
    pid: int
    create_time: float
    url: str
    log: str
    stop_signal: str = "SIGTERM"
    ports: dict[str, int] = field(default_factory=dict)
    started_at: float = 0.0
    ready_s: float | None = None
    meta: dict[str, str] = field(default_factory=dict)


def pid_file(state_dir: Path, service: str) -> Path:
    return state_dir / f"{service}.pid"


def read_record(state_dir: Path, service: str) -> ProcessRecord | None:
    path = pid_file(state_dir, service)
    try:
        raw = json.loads(path.read_text())
        return ProcessRecord(**raw)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):  # a torn or foreign file: treat as stale, down removes it
        return ProcessRecord(service=service, pid=-1, create_time=0.0, url="", log="")


def write_record(state_dir: Path, record: ProcessRecord) -> None:
    path = pid_file(state_dir, record.service)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(asdict(record), indent=2))
    os.replace(tmp, path)


def remove_record(state_dir: Path, service: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        pid_file(state_dir, service).unlink()


def spawn(
    service: str,
    cmd: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log_path: Path,
    url: str,
    stop_signal: str = "SIGTERM",
    ports: Mapping[str, int] | None = None,
    meta: Mapping[str, str] | None = None,
) -> ProcessRecord:
    """Start ``cmd`` detached in its own session, appending its output to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started_at = time.time()
    with open(log_path, "ab") as log:
        log.write(f"\n=== {service} starting at {time.strftime('%Y-%m-%d %H:%M:%S')} ===\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    _children[proc.pid] = proc
    try:
        create_time = psutil.Process(proc.pid).create_time()
    except psutil.NoSuchProcess:  # died at once; the caller's readiness wait reports the log
        create_time = started_at
    return ProcessRecord(
        service=service,
        pid=proc.pid,
        create_time=create_time,
        url=url,
        log=str(log_path),
        stop_signal=stop_signal,
        ports=dict(ports or {}),
        started_at=started_at,
        meta=dict(meta or {}),
    )


def _reap(pid: int) -> None:
    proc = _children.get(pid)
    if proc is not None and proc.poll() is not None:
        _children.pop(pid, None)


def _leader(record: ProcessRecord) -> psutil.Process | None:
    """The recorded process if it is still the same one (pid and start time) and not a zombie."""
    if record.pid <= 0:
        return None
    _reap(record.pid)
    try:
        proc = psutil.Process(record.pid)
        if abs(proc.create_time() - record.create_time) > _CREATE_TIME_TOLERANCE_S:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def is_running(record: ProcessRecord) -> bool:
    return _leader(record) is not None


def group_members(record: ProcessRecord) -> list[psutil.Process]:
    """Live processes of the record's process group, leader first.

    When the leader died (a crash) its orphans keep the group id; the kernel does not
    hand out a pid that is still some group's id, so if the pid now names a different
    process, the old group is empty.
    """
    if record.pid <= 0:
        return []
    leader = _leader(record)
    if leader is None and psutil.pid_exists(record.pid):
        with contextlib.suppress(psutil.Error):
            if psutil.Process(record.pid).status() != psutil.STATUS_ZOMBIE:
                return []
    members: list[psutil.Process] = []
    for proc in psutil.process_iter():
        try:
            if proc.pid == record.pid or os.getpgid(proc.pid) != record.pid:
                continue
            if proc.create_time() + _CREATE_TIME_TOLERANCE_S < record.create_time:
                continue
            if proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return ([leader] if leader is not None else []) + members


def _signal_all(record: ProcessRecord, procs: list[psutil.Process], sig: signal.Signals) -> None:
    if _leader(record) is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pid, sig)
        return
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


def stop(record: ProcessRecord, timeout_s: float = 15.0) -> bool:
    """Stop the record's process group: its stop signal, then SIGTERM, then SIGKILL.

    Returns whether anything was running. Works on a stale record too (orphans only).
    """
    procs = group_members(record)
    if not procs:
        _reap(record.pid)
        return False
    first = signal.Signals[record.stop_signal]
    steps = [(first, timeout_s)]
    if first != signal.SIGTERM:
        steps.append((signal.SIGTERM, 5.0))
    steps.append((signal.SIGKILL, 5.0))
    alive = procs
    for sig, wait_s in steps:
        _signal_all(record, alive, sig)
        alive = _wait_gone(alive, wait_s)
        if not alive:
            break
    proc = _children.pop(record.pid, None)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)
    return True


def _gone(proc: psutil.Process) -> bool:
    # a zombie counts as gone: when `up` ran in another process, the services were re-parented
    # to init, which may take seconds to reap them (psutil.wait_procs would wait for that)
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(procs: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait until every process has exited; returns those still alive at the timeout."""
    deadline = time.monotonic() + timeout_s
    alive = procs
    while alive:
        for proc in alive:
            if proc.pid in _children:
                _reap(proc.pid)
        alive = [p for p in alive if not _gone(p)]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return alive


def log_tail(path: str | Path, lines: int = 30) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:])


def port_in_use(port: int, host: str = HOST) -> bool:
    """Whether binding ``host:port`` fails (as it would for the server we want to start)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_ports(n: int, host: str = HOST, exclude: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """``n`` distinct ports the kernel reports free right now."""
    socks: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < n:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind((host, 0))
            port = sock.getsockname()[1]
            if port not in exclude:
                ports.append(port)
    finally:
        for sock in socks:
            sock.close()
    return ports


def wait_ports_free(ports: Sequence[int], timeout_s: float = 10.0, host: str = HOST) -> list[int]:
    """Wait until none of ``ports`` is in use; returns those still busy at the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        busy = [p for p in ports if port_in_use(p, host)]
        if not busy or time.monotonic() > deadline:
            return busy
        time.sleep(0.1)
