"""posecore.registry.lock: the promotion lock file of a store on this machine."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from registry_store import Store  # tests/_helpers (put on sys.path by tests/conftest.py)

from posecore.registry import RegistryError
from posecore.registry.lock import file_lock, lock_file


def test_lock_file_sits_next_to_the_sqlite_database(store: Store) -> None:
    assert lock_file(store.client) == store.root / "mlflow.db.posecore-promote.lock"
    from mlflow import MlflowClient

    assert lock_file(MlflowClient("http://127.0.0.1:1")) is None


def test_lock_times_out_with_a_clear_message(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    with file_lock(lock, 1.0), pytest.raises(RegistryError, match="could not lock"):
        with file_lock(lock, 0.2):
            pass


def test_a_file_store_locks_inside_its_folder(tmp_path: Path) -> None:
    client = SimpleNamespace(tracking_uri=(tmp_path / "mlruns").as_uri())  # MLflow refuses file stores now
    assert lock_file(client) == tmp_path / "mlruns" / ".posecore-promote.lock"  # type: ignore[arg-type]
