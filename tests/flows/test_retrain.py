"""flows.retrain (and the training_pipeline subflow it wraps) run in-process against Prefect's test
harness on a tiny DVC repository: params overrides reach the stage, and with a default DVC remote
the outputs are pushed and can be pulled back into a fresh copy."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from flows.pipeline import dvc_env
from flows.retrain import retrain


def _dvc(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=repo, env=dvc_env(), capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, f"dvc {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module", autouse=True)
def prefect_api() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture()
def repo(repo_root: Path, tmp_path: Path) -> Path:
    """One stage that writes ``synth.seed`` (a real posecore param) into ``seed.txt``."""
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    _dvc(root, "init", "-q")
    shutil.copy(repo_root / "params.yaml", root / "params.yaml")
    stage = {
        "cmd": "python -c \"import yaml; open('seed.txt', 'w').write(str(yaml.safe_load(open('params.yaml'))['synth']['seed']))\"",
        "params": ["synth.seed"],
        "outs": ["seed.txt"],
    }
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"seed": stage}}))
    return root


def test_without_a_remote_it_only_reproduces(repo: Path) -> None:
    result = retrain(repo=str(repo), params={"synth.seed": 7})
    assert [(s.stage, s.status) for s in result.stages] == [("seed", "ran")]
    assert (repo / "seed.txt").read_text() == "7"
    text = (repo / "params.yaml").read_text()
    assert "  seed: 7\n" in text and text.startswith("# Pipeline parameters")  # comments kept
    assert [(s.stage, s.status) for s in retrain(repo=str(repo)).stages] == [("seed", "skipped")]


def test_with_a_remote_it_pushes_and_a_fresh_copy_pulls(repo: Path, tmp_path: Path) -> None:
    storage = tmp_path / "remote"
    _dvc(repo, "remote", "add", "-d", "store", str(storage))
    assert retrain(repo=str(repo), params={"synth.seed": 11}).stages[0].status == "ran"
    assert any(p.is_file() for p in storage.rglob("*")), "dvc push stored nothing"

    clone = tmp_path / "clone"  # a new working copy: same files, no outputs, empty DVC cache
    shutil.copytree(repo, clone, ignore=shutil.ignore_patterns("seed.txt", "cache", "tmp"))
    result = retrain(repo=str(clone))
    assert [(s.stage, s.status) for s in result.stages] == [("seed", "skipped")]  # pulled, so up to date
    assert (clone / "seed.txt").read_text() == "11"
