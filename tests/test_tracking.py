"""posecore.tracking against a throw-away SQLite store in tmp_path (never the repo's mlflow.db)."""

from __future__ import annotations

import dataclasses
import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow import MlflowClient
from PIL import Image

from posecore.config import Params
from posecore.tracking import (
    MAX_PARAM_LENGTH,
    MlflowRun,
    NullLogger,
    TrackingConfig,
    TrackingUnavailable,
    check_reachable,
    lineage_tags,
    make_logger,
    open_existing_run,
    plot_curves,
    resolve_tracking_uri,
)

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_train_run_params_tags_metrics_artifacts(cfg: TrackingConfig, uri: str, repo, tmp_path: Path) -> None:
    root, commit = repo
    run_file = tmp_path / "models" / "mlflow_run.json"
    params = Params()
    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    (folder / "b.json").write_text("{}")
    single = tmp_path / "metrics.json"
    single.write_text('{"AP": 0.5}')

    logger = make_logger(cfg, params, root, rank=0, run_id_file=run_file)
    assert isinstance(logger, MlflowRun)
    with logger:
        logger.log_params({"epochs": params.train.epochs, "milestones": (170, 200)})  # as the engine does
        for step in range(1, 21):
            logger.log_metrics({"train/loss": 1.0 / step, "train/lr": 0.001}, step=step * 10)
            if step % 10 == 0:
                logger.log_metrics({"val/AP": step / 100}, step=step * 10)
                logger.log_metrics({"epoch": step / 10, "time/epoch_s": 1.0}, step=step * 10)
        logger.log_artifact(single)
        logger.log_artifact(folder, artifact_path="eval")
        run_id = logger.run_id

    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "unit"
    p = run.data.params
    assert p["model.preset"] == params.model.preset
    assert p["train.lr"] == str(params.train.lr)
    assert p["train.epochs"] == str(params.train.epochs)
    assert p["train.milestones"] == "[170, 200]"
    assert "epochs" not in p  # the engine's unprefixed keys land on train.* and are not duplicated
    t = run.data.tags
    assert t["git.commit"] == commit
    assert t["mlflow.source.git.commit"] == commit
    assert t["git.dirty"] == "false"
    assert t["dvc.convert.md5"] == CONVERT_MD5
    assert t["dvc.encode.md5"] == ENCODE_MD5
    assert t["data.version"] == CONVERT_MD5
    assert "dvc.synth.md5" not in t
    assert t["posecore.stage"] == "train"
    for key in ("torch.version", "cuda.available", "python.version", "host", "world_size", "device.name"):
        assert t[key]

    history = client.get_metric_history(run_id, "train/loss")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [s * 10 for s in range(1, 21)]
    assert sorted(history, key=lambda m: m.step)[-1].value == pytest.approx(1 / 20)
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "val/AP")] == [(100, 0.1), (200, 0.2)]

    top = {a.path for a in client.list_artifacts(run_id)}
    assert {"params.json", "metrics.json", "eval", "plots"} <= top
    assert {a.path for a in client.list_artifacts(run_id, "eval/report")} == {"eval/report/a.txt", "eval/report/b.json"}
    assert [a.path for a in client.list_artifacts(run_id, "plots")] == ["plots/curves.png"]
    assert str(tmp_path / "artifacts") in run.info.artifact_uri
    full = json.loads(Path(client.download_artifacts(run_id, "params.json", str(tmp_path / "dl"))).read_text())
    assert full["train"]["epochs"] == params.train.epochs

    info = json.loads(run_file.read_text())
    assert info == {"run_id": run_id, "tracking_uri": uri, "experiment_id": run.info.experiment_id}


def test_later_stage_reopens_the_same_run(cfg: TrackingConfig, uri: str, tmp_path: Path) -> None:
    run_file = tmp_path / "run.json"
    with make_logger(cfg, {"a": 1}, tmp_path, rank=0, run_id_file=run_file) as train:
        train.log_metrics({"train/loss": 1.0}, step=1)
        run_id = train.run_id

    with open_existing_run(run_file, tags={"posecore.evaluated": "yes"}) as evaluate:
        assert evaluate.run_id == run_id
        assert mlflow.active_run().info.run_id == run_id  # flavors' log_model attach to it
        evaluate.log_metrics({"test/AP": 0.71}, step=0)

    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.data.metrics == {"train/loss": 1.0, "test/AP": 0.71}
    assert run.data.tags["posecore.evaluated"] == "yes"
    assert run.info.status == "FINISHED"
    assert len(client.search_runs([run.info.experiment_id])) == 1
    assert mlflow.active_run() is None


def test_tracking_uri_of_the_process_is_restored(cfg: TrackingConfig, tmp_path: Path) -> None:
    before = mlflow.get_tracking_uri()
    with make_logger(cfg, None, tmp_path, rank=0, run_id_file=None):
        assert mlflow.get_tracking_uri() == cfg.tracking_uri
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert mlflow.get_tracking_uri() == before


def test_long_param_is_truncated_with_a_note(cfg: TrackingConfig, uri: str, tmp_path: Path) -> None:
    with make_logger(cfg, {"data": {"classes": "x" * 7000, "n": 3}}, tmp_path, 0, None) as run:
        run_id = run.run_id
    value = MlflowClient(uri).get_run(run_id).data.params["data.classes"]
    assert len(value) == MAX_PARAM_LENGTH
    assert value.startswith("xxx") and value.endswith("[truncated from 7000 chars; see params.json]")


def test_resumed_run_keeps_params_and_records_changes(cfg: TrackingConfig, uri: str, tmp_path: Path) -> None:
    with make_logger(cfg, {"train": {"epochs": 10, "nproc": 1}}, tmp_path, 0, None) as first:
        first.log_metrics({"train/loss": 2.0}, step=5)
        run_id = first.run_id
    resumed = make_logger(cfg, {"train": {"epochs": 10, "nproc": 2}}, tmp_path, 0, None, run_id=run_id)
    with resumed:
        resumed.log_metrics({"train/loss": 1.0}, step=10)
    run = MlflowClient(uri).get_run(run_id)
    assert run.data.params["train.nproc"] == "1"
    assert run.data.tags["posecore.param_changed.train.nproc"] == "1 -> 2"
    assert [m.step for m in MlflowClient(uri).get_metric_history(run_id, "train/loss")] == [5, 10]


def test_exception_marks_run_failed_and_keeps_metrics(cfg: TrackingConfig, uri: str, tmp_path: Path) -> None:
    logger = make_logger(cfg, None, tmp_path, 0, None)
    with pytest.raises(ZeroDivisionError), logger:
        logger.log_metrics({"train/loss": 3.0}, step=1)
        _ = 1 / 0
    run = MlflowClient(uri).get_run(logger.run_id)
    assert run.info.status == "FAILED"
    assert run.data.metrics["train/loss"] == 3.0


def test_bad_metric_name_fails_at_the_call(cfg: TrackingConfig, tmp_path: Path) -> None:
    with make_logger(cfg, None, tmp_path, 0, None) as run, pytest.raises(ValueError, match="metric name"):
        run.log_metrics({"loss{head}": 1.0}, step=0)


def test_logging_outside_the_block_is_an_error(cfg: TrackingConfig, tmp_path: Path) -> None:
    logger = make_logger(cfg, None, tmp_path, 0, None)
    with pytest.raises(RuntimeError, match="not open"):
        logger.log_metrics({"train/loss": 1.0}, step=0)


def test_log_figure(cfg: TrackingConfig, uri: str, tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    with make_logger(cfg, None, tmp_path, 0, None) as run:
        run.log_figure(fig, "plots/pck.png")
        run_id = run.run_id
    assert [a.path for a in MlflowClient(uri).list_artifacts(run_id, "plots")] == ["plots/pck.png"]


def test_system_metrics_are_logged(
    cfg: TrackingConfig, uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.1")
    import time

    with make_logger(dataclasses.replace(cfg, system_metrics=True), None, tmp_path, 0, None) as run:
        time.sleep(1.0)  # several samples; the monitor writes them when the run ends
        run_id = run.run_id
    keys = MlflowClient(uri).get_run(run_id).data.metrics
    assert any(k.startswith("system/cpu_utilization") for k in keys), sorted(keys)


def test_other_ranks_log_nothing(cfg: TrackingConfig, tmp_path: Path) -> None:
    run_file = tmp_path / "run.json"
    logger = make_logger(cfg, Params(), tmp_path, rank=1, run_id_file=run_file)
    assert isinstance(logger, NullLogger)
    with logger as log:
        log.log_params({"a": 1})
        log.log_metrics({"train/loss": 1.0}, step=1)
        log.log_artifact(tmp_path / "missing.txt")
        log.set_tags({"x": "y"})
        log.flush()
    assert log.run_id is None
    assert not run_file.exists()
    assert MlflowClient(cfg.tracking_uri).search_runs(["0"]) == []
    assert MlflowClient(cfg.tracking_uri).get_experiment_by_name("test") is None


@pytest.mark.timeout(20)  # a guard against MLflow's minutes of retries, not a speed test
def test_unreachable_server_fails_fast_with_the_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)
    with pytest.raises(TrackingUnavailable, match="not reachable") as err:
        make_logger(TrackingConfig(connect_timeout_s=2), None, tmp_path, 0, tmp_path / "run.json")
    assert dead in str(err.value)
    assert "connection refused" in str(err.value)
    assert "MLFLOW_TRACKING_URI" in str(err.value)
    assert not (tmp_path / "run.json").exists()
    assert isinstance(err.value, RuntimeError)


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_healthy_server_passes_unhealthy_fails(http_server: tuple[str, type[_Handler]]) -> None:
    url, handler = http_server
    check_reachable(url, timeout=2)
    handler.status = 503
    with pytest.raises(TrackingUnavailable, match="HTTP 503"):
        check_reachable(url, timeout=2)
    handler.status = 401
    with pytest.raises(TrackingUnavailable, match="MLFLOW_TRACKING_TOKEN"):
        check_reachable(url, timeout=2)


def test_local_stores_are_not_checked() -> None:
    check_reachable("sqlite:////nonexistent/dir/mlflow.db", timeout=0.1)


def test_resolve_tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    repo_root = tmp_path / "repo"
    assert resolve_tracking_uri(TrackingConfig(), "repo") == f"sqlite:///{repo_root}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert resolve_tracking_uri(TrackingConfig(), repo_root) == "http://mlflow:5000"
    assert resolve_tracking_uri(TrackingConfig(tracking_uri="sqlite:////x.db"), repo_root) == "sqlite:////x.db"


def test_lineage_without_git_or_dvc_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.setenv("WORLD_SIZE", "4")
    tags = lineage_tags(tmp_path)
    assert "git.commit" not in tags and "data.version" not in tags
    assert tags["world_size"] == "4"
    assert tags["python.version"].count(".") == 2


def test_lineage_dirty_tree(repo) -> None:
    root, commit = repo
    (root / "README.md").write_text("changed\n")
    tags = lineage_tags(root)
    assert tags["git.commit"] == commit
    assert tags["git.dirty"] == "true"


def test_plot_curves_writes_a_png(tmp_path: Path) -> None:
    history = {
        "train/loss": [(s, 1 / s) for s in range(1, 101)],
        "train/lr": [(s, 0.001) for s in range(1, 101)],
        "val/AP": [(50, 0.3), (100, 0.5)],
        "val/AR": [],
    }
    out = plot_curves(history, tmp_path / "plots" / "curves.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as img:
        img.verify()
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width > 400 and img.height > 200
    empty = plot_curves({}, tmp_path / "empty.png")
    assert empty.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class _LineData:
    """16 samples of y = x0 + x1; ``inputs`` (B, 2), ``target`` (B, 1)."""

    num_samples = 16

    def batch(self, indices: list[int], epoch: int) -> dict[str, torch.Tensor]:
        x = torch.tensor([[i / 16, 1 - i / 16] for i in indices], dtype=torch.float32)
        return {"inputs": x, "target": x.sum(1, keepdim=True)}


def test_engine_fit_logs_through_the_run(cfg: TrackingConfig, uri: str, tmp_path: Path) -> None:
    from posecore.engine import TrainConfig, fit
    from posecore.engine.seed import capture_rng_state, restore_rng_state

    train = TrainConfig(
        epochs=2, global_batch_size=4, batch_size_per_device=4, warmup_iters=0, log_interval=2, val_interval=1,
        checkpoint_dir=str(tmp_path / "ckpt"), progress=False,
    )  # fmt: skip
    params = dataclasses.replace(Params(), train=train)
    rng = capture_rng_state()
    try:
        with make_logger(cfg, params, tmp_path, 0, tmp_path / "run.json") as logger:
            fit(
                torch.nn.Linear(2, 1),
                lambda out, batch: {"mse": torch.nn.functional.mse_loss(out, batch["target"])},
                _LineData(),
                train,
                validate=lambda model, epoch: {"AP": float(epoch)},
                logger=logger,
            )
            run_id = logger.run_id
    finally:
        restore_rng_state(rng)

    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "2"
    assert not any(k.startswith("posecore.param_changed") for k in run.data.tags)
    assert "epochs" not in run.data.params
    steps_per_epoch = 16 // 4
    assert [m.step for m in client.get_metric_history(run_id, "train/mse")] == [2, 4, 6, 8]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "val/AP")] == [
        (steps_per_epoch, 1.0),
        (2 * steps_per_epoch, 2.0),
    ]
    assert [a.path for a in client.list_artifacts(run_id, "plots")] == ["plots/curves.png"]
