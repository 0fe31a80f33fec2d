"""The file lock that serialises promotions of one model on one machine (SQLite and file stores).

An exclusive ``flock`` on ``<db>.posecore-promote.lock`` next to the SQLite database (or
``.posecore-promote.lock`` in a file store) around read-compare-move; this holds for threads and
processes on that machine, whatever their timing. Any other store has no lock file and
:func:`posecore.registry.promotion.promote` runs its compare-and-set loop instead.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from posecore.registry.config import RegistryError

if TYPE_CHECKING:
    from mlflow import MlflowClient


def lock_file(client: MlflowClient) -> Path | None:
    """The lock file of a registry on this machine (SQLite or file store); None for anything else."""
    uri = str(getattr(client, "_registry_uri", None) or client.tracking_uri)
    if uri.startswith("sqlite:///"):
        db = Path(unquote(uri[len("sqlite:///") :].split("?", 1)[0])).absolute()
        if str(db) in ("/:memory:", ":memory:"):
            return None
        return db.with_name(f"{db.name}.posecore-promote.lock")
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        root = Path(unquote(parsed.path) if parsed.scheme == "file" else uri).absolute()
        return root / ".posecore-promote.lock"
    return None


@contextlib.contextmanager
def file_lock(path: Path, timeout_s: float) -> Iterator[None]:
    """An exclusive ``flock`` on ``path``: excludes other processes and other threads alike
    (each holder opens its own file description)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                if time.monotonic() >= deadline:
                    raise RegistryError(
                        f"could not lock {path} within {timeout_s:g} s: another promotion holds it"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
