"""Fixtures of the experiment-tracking tests: throw-away SQLite stores in tmp_path (never the repo's
mlflow.db) and a tiny git repository with a dvc.lock."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient

from posecore.experiment import TrackingConfig

CONVERT_MD5 = "0123456789abcdef0123456789abcdef.dir"
ENCODE_MD5 = "fedcba9876543210fedcba9876543210.dir"
DVC_LOCK = f"""schema: '2.0'
stages:
  synth:
    cmd: python -m stages.synth
    outs:
    - path: data/synthetic
      hash: md5
      md5: 11111111111111111111111111111111.dir
  convert:
    cmd: python -m stages.convert
    outs:
    - path: data/converted
      hash: md5
      md5: {CONVERT_MD5}
      size: 1234
      nfiles: 3
  encode:
    cmd: python -m stages.encode
    outs:
    - path: data/cache
      hash: md5
      md5: {ENCODE_MD5}
"""


@pytest.fixture(autouse=True)
def _no_ambient_tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised, empty SQLite store; creating one runs MLflow's migrations (several seconds)."""
    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def uri(tmp_path: Path, empty_store: Path) -> str:
    """A store of this test's own: a copy of the empty one."""
    (tmp_path / "store").mkdir()
    shutil.copyfile(empty_store, tmp_path / "store" / "mlflow.db")
    return f"sqlite:///{tmp_path}/store/mlflow.db"


@pytest.fixture
def cfg(uri: str, tmp_path: Path) -> TrackingConfig:
    return TrackingConfig(
        tracking_uri=uri,
        experiment="test",
        run_name="unit",
        system_metrics=False,
        artifact_location=(tmp_path / "artifacts").as_uri(),
    )


@pytest.fixture
def dvc_hashes() -> dict[str, str]:
    """The output hashes of the ``repo`` fixture's dvc.lock, by stage."""
    return {"convert": CONVERT_MD5, "encode": ENCODE_MD5}


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str]:
    """A git repository with one commit and a dvc.lock; returns (root, commit)."""
    root = tmp_path / "repo"
    root.mkdir()
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_SYSTEM": os.devnull}

    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True, env=env)
        return out.stdout.strip()

    git("init", "-q")
    (root / "dvc.lock").write_text(DVC_LOCK)
    (root / "README.md").write_text("test\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    return root, git("rev-parse", "HEAD")
