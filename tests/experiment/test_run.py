"""posecore.experiment.run: the training's MLflow run, reopened by later stages, and the other ranks' logger."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow import MlflowClient

from posecore.config import Params
from posecore.experiment import (
    MAX_PARAM_LENGTH,
    MlflowRun,
    NullLogger,
    TrackingConfig,
    make_logger,
    open_existing_run,
    open_run_if_recorded,
)
from posecore.experiment.run_file import read_run_id_file


def test_train_run_params_tags_metrics_artifacts(
    cfg: TrackingConfig, uri: str, repo, dvc_hashes: dict[str, str], tmp_path: Path
) -> None:
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
    assert t["dvc.convert.md5"] == dvc_hashes["convert"]
    assert t["dvc.encode.md5"] == dvc_hashes["encode"]
    assert t["data.version"] == dvc_hashes["convert"]
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


def test_a_run_is_opened_only_when_training_recorded_one(cfg: TrackingConfig, uri: str, tmp_path: Path) -> None:
    run_file = tmp_path / "mlflow_run_id"

    def stage_run() -> MlflowRun | None:
        return open_run_if_recorded(run_file, "results are not logged")

    with pytest.warns(UserWarning, match=r"mlflow_run_id does not exist: results are not logged") as caught:
        assert stage_run() is None
    assert caught[0].filename == __file__, "the warning points at whoever called the stage's run"
    with make_logger(cfg, {"a": 1}, tmp_path, rank=0, run_id_file=run_file) as train:
        run_id = train.run_id
    reopened = open_run_if_recorded(run_file, "results are not logged")
    assert isinstance(reopened, MlflowRun) and reopened.run_id == run_id


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


def test_run_id_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run the train stage first"):
        read_run_id_file(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not an MLflow run id file"):
        read_run_id_file(tmp_path / "bad.json")
    (tmp_path / "empty.json").write_text("{}")
    with pytest.raises(ValueError, match="has no run_id"):
        read_run_id_file(tmp_path / "empty.json")


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
