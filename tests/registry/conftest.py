"""Fixtures of the registry tests: a temporary SQLite MLflow store (the process's tracking URI
while a test module runs), the tiny bundle, and that bundle logged, registered and promoted once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from registry_store import Store, tiny_bundle  # tests/_helpers (put on sys.path by tests/conftest.py)

from posecore.registry import RegisterConfig, log_bundle, promote


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    import mlflow

    previous, env = mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")
    s = Store(tmp_path_factory.mktemp("mlflow"))
    mlflow.set_tracking_uri(s.uri)  # also sets $MLFLOW_TRACKING_URI, so `models:/` URIs resolve here
    yield s
    mlflow.set_tracking_uri(previous)
    if env is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = env


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("bundle") / "bundle")


@pytest.fixture(scope="module")
def logged(store: Store, bundle: Path) -> dict[str, Any]:
    """A real bundle logged, registered and promoted once: the model that pull, pyfunc and serve use."""
    name = store.model_name("logged")
    run_id = store.new_run()
    mv = log_bundle(bundle, run_id, RegisterConfig(model_name=name), metric_value=0.61, eval_data="md5:val")
    assert mv is not None
    decision = promote(store.client, name, mv.version, RegisterConfig())
    return {"name": name, "version": mv, "run_id": run_id, "decision": decision}
