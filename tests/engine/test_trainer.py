"""fit(): DDP equivalence, exact resumption after SIGKILL, gradient accumulation, best
checkpoint selection, logging, AMP and freezing, on the toy run of ``_ddp_script.py``."""

from __future__ import annotations

import io
import logging
import signal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from posecore.engine import fit
from posecore.engine.checkpoint import load_checkpoint

TIMEOUT = 180


def _finish(proc: Any) -> str:
    out, _ = proc.communicate(timeout=TIMEOUT)
    return out


def _fit(toy: ModuleType, tmp: Path, dropout: float = 0.0, **cfg: Any):
    model = toy.make_model(0, dropout)
    cfg.setdefault("checkpoint_dir", str(tmp))
    result = fit(model, toy.loss_fn, toy.ToyData(), toy.make_cfg(**cfg), validate=toy.validate, metric_name="neg_mse")
    return model, result


def _assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=lambda m, k=k: f"{k}: {m}")


def test_two_processes_equal_one_process(tmp_path: Path, toy: ModuleType, run_toy) -> None:
    # 2 ranks x micro 2 x 2 accumulation steps, against 1 process x micro 4 x 2 accumulation steps
    proc = run_toy(["--out", str(tmp_path / "ddp"), "--micro", "2"], torchrun_nproc=2)
    single, result = _fit(toy, tmp_path / "single", batch_size_per_device=4)
    out = _finish(proc)
    assert proc.returncode == 0, out
    assert result.global_step == 20
    ranks = [torch.load(tmp_path / "ddp" / f"rank{r}.pt") for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["global_step"] for r in ranks] == [20, 20]
    for k, v in ranks[0]["model"].items():
        assert torch.equal(v, ranks[1]["model"][k]), f"{k} differs between ranks"
    _assert_close(ranks[0]["model"], single.state_dict(), atol=1e-4)
    # only rank 0 wrote checkpoints; they hold the same weights
    ckpt = load_checkpoint(tmp_path / "ddp" / "ckpt" / "latest.pt")
    assert ckpt["epoch"] == 2 and ckpt["ema"]["updates"] == 20
    _assert_close(ckpt["model"], single.state_dict(), atol=1e-4)


def test_sigkill_mid_epoch_then_resume_is_exact(tmp_path: Path, toy: ModuleType, run_toy) -> None:
    # dropout makes the result depend on the restored RNG state too
    args = ["--epochs", "3", "--deterministic", "--dropout", "0.2", "--out", str(tmp_path / "run")]
    killed = run_toy(args, POSECORE_TEST_KILL_AT="1,7")  # SIGKILL at the 7th batch of epoch 1 (0-based)
    # meanwhile the uninterrupted reference, here, with the subprocess's thread count
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference, _ = _fit(toy, tmp_path / "ref", dropout=0.2, epochs=3, deterministic=True)
    finally:
        torch.set_num_threads(threads)
    killed_out = _finish(killed)
    assert killed.returncode == -signal.SIGKILL, killed_out
    latest = tmp_path / "run" / "ckpt" / "latest.pt"
    assert load_checkpoint(latest)["epoch"] == 1  # the last complete epoch, intact
    assert not (tmp_path / "run" / "rank0.pt").exists()

    resumed = run_toy([*args, "--resume", str(latest)])
    out = _finish(resumed)
    assert resumed.returncode == 0, out

    final = torch.load(tmp_path / "run" / "rank0.pt")
    assert final["global_step"] == 30
    for k, v in reference.state_dict().items():
        assert torch.equal(v, final["model"][k]), f"{k} differs after resume"
    ca = load_checkpoint(tmp_path / "ref" / "latest.pt")
    cb = load_checkpoint(latest)
    for k, v in ca["ema"]["module"].items():
        assert torch.equal(v, cb["ema"]["module"][k]), f"EMA {k} differs after resume"
    for pid, st in ca["optimizer"]["state"].items():
        assert all(torch.equal(v, cb["optimizer"]["state"][pid][n]) for n, v in st.items())
    assert ca["val_history"] == cb["val_history"] and len(ca["val_history"]) == 3
    assert ca["best_epoch"] == cb["best_epoch"]
    assert ca["rng"]["python"] == cb["rng"]["python"]
    assert torch.equal(ca["rng"]["torch"], cb["rng"]["torch"])
    assert torch.equal(ca["rng"]["numpy"]["keys"], cb["rng"]["numpy"]["keys"])


def test_gradient_accumulation_equals_one_big_micro_batch(tmp_path: Path, toy: ModuleType) -> None:
    accumulated, _ = _fit(toy, tmp_path / "a", epochs=1, batch_size_per_device=4, global_batch_size=8)
    direct, _ = _fit(toy, tmp_path / "b", epochs=1, batch_size_per_device=8, global_batch_size=8)
    _assert_close(accumulated.state_dict(), direct.state_dict(), atol=1e-5)


def test_dataloader_workers_do_not_change_the_result(tmp_path: Path, toy: ModuleType) -> None:
    inline, _ = _fit(toy, tmp_path / "a", epochs=1)
    workers, _ = _fit(toy, tmp_path / "b", epochs=1, num_workers=1)
    for k, v in inline.state_dict().items():
        assert torch.equal(v, workers.state_dict()[k])


def test_preprocess_runs_on_every_micro_batch_before_the_forward(tmp_path: Path, toy: ModuleType) -> None:
    class Halved(toy.ToyData):
        def batch(self, indices: list[int], epoch: int) -> dict[str, torch.Tensor]:
            out = super().batch(indices, epoch)
            return {**out, "inputs": out["inputs"] / 2}

    seen: list[torch.device] = []

    def double(batch: dict[str, Any]) -> dict[str, Any]:
        seen.append(batch["inputs"].device)
        return {**batch, "inputs": batch["inputs"] * 2}

    cfg = toy.make_cfg(epochs=1, batch_size_per_device=4, global_batch_size=8, checkpoint_dir=str(tmp_path / "a"))
    model = toy.make_model(0)
    fit(model, toy.loss_fn, Halved(), cfg, preprocess=double)
    reference, _ = _fit(toy, tmp_path / "b", epochs=1, batch_size_per_device=4, global_batch_size=8)
    _assert_close(model.state_dict(), reference.state_dict(), atol=1e-6)
    assert len(seen) == 2 * (toy.ToyData().num_samples // 8) and set(seen) == {torch.device("cpu")}


@pytest.mark.parametrize(
    ("higher_is_better", "val_interval", "best_epoch", "validated"),
    [(True, 1, 4, [1, 2, 3, 4, 5]), (False, 1, 1, [1, 2, 3, 4, 5]), (True, 2, 4, [2, 4, 5])],
)
def test_best_checkpoint_follows_the_metric(
    tmp_path: Path, toy: ModuleType, higher_is_better: bool, val_interval: int, best_epoch: int, validated: list[int]
) -> None:
    script = {1: 0.1, 2: 0.5, 3: 0.3, 4: 0.7, 5: 0.6}
    weights: dict[int, dict[str, torch.Tensor]] = {}

    def validate(model: torch.nn.Module, epoch: int) -> dict[str, float]:
        weights[epoch] = {k: v.clone() for k, v in model.state_dict().items()}
        return {"AP": script[epoch], "AR": 0.0}

    model = toy.make_model(0)
    cfg = toy.make_cfg(epochs=5, ema=False, val_interval=val_interval, checkpoint_dir=str(tmp_path))
    result = fit(model, toy.loss_fn, toy.ToyData(16), cfg, validate=validate, higher_is_better=higher_is_better)
    assert sorted(weights) == validated
    assert [h["epoch"] for h in result.val_history] == validated
    assert result.best_epoch == best_epoch and result.best_metric == script[best_epoch]
    assert result.best == tmp_path / "best.pt" and result.latest == tmp_path / "latest.pt"
    best = load_checkpoint(result.best)
    assert best["epoch"] == best_epoch and best["best_metric"] == script[best_epoch]
    for k, v in best["model"].items():
        assert torch.equal(v, weights[best_epoch][k])
    assert load_checkpoint(result.latest)["epoch"] == 5


class RecordingLogger:
    def __init__(self) -> None:
        self.params: list[dict[str, Any]] = []
        self.metrics: list[tuple[int, dict[str, float]]] = []

    def log_params(self, params: dict[str, Any]) -> None:
        self.params.append(dict(params))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.metrics.append((step, dict(metrics)))

    def log_artifact(self, path: Path) -> None:
        raise AssertionError("fit logs no artifacts")


def test_logger_gets_config_and_periodic_metrics(tmp_path: Path, toy: ModuleType) -> None:
    logger = RecordingLogger()
    cfg = toy.make_cfg(checkpoint_dir=str(tmp_path))
    fit(toy.make_model(0), toy.loss_fn, toy.ToyData(), cfg, validate=toy.validate, metric_name="neg_mse", logger=logger)
    assert len(logger.params) == 1 and logger.params[0]["global_batch_size"] == 8
    train = [(s, m) for s, m in logger.metrics if "train/loss" in m]
    assert [s for s, _ in train] == [5, 10, 15, 20]  # every log_interval optimizer steps
    assert set(train[0][1]) == {"train/loss", "train/mse", "train/lr", "train/grad_norm"}
    assert train[0][1]["train/loss"] == pytest.approx(train[0][1]["train/mse"])
    # the LR of step 4 (0-based): warm-up 0.1 -> 1 over 5 steps
    assert train[0][1]["train/lr"] == pytest.approx(0.02 * (0.1 + 0.9 * 4 / 5))
    assert [s for s, m in logger.metrics if "val/neg_mse" in m] == [10, 20]


@pytest.mark.parametrize("progress", [True, False])
def test_progress_lines_and_epoch_results_reach_the_log(
    tmp_path: Path, toy: ModuleType, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, progress: bool
) -> None:
    monkeypatch.setenv("POSECORE_PROGRESS_S", "0")
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal: lines, not a bar
    caplog.set_level(logging.INFO, logger="posecore")
    _fit(toy, tmp_path, progress=progress)
    lines = [r.getMessage() for r in caplog.records if r.name == "posecore.progress"]
    if progress:
        assert len(lines) == 21  # one per step (interval 0) and the final one
        assert lines[0].startswith("train: epoch 1/2 | 1/20 step (5.0%) | ") and "ETA" in lines[0]
        assert "loss=" not in lines[3] and "loss=" in lines[4] and "lr=" in lines[4]  # from step 5 (log_interval)
        assert lines[-1].startswith("train: epoch 2/2 | 20/20 step (100.0%)") and "done in" in lines[-1]
    else:
        assert lines == []
    engine = [r.getMessage() for r in caplog.records if r.name == "posecore.engine"]
    assert [m.split(" done in ")[0] for m in engine if " done in " in m] == ["epoch 1/2", "epoch 2/2"]
    assert "(step 10, loss=" in engine[0]
    if progress:  # the line of an epoch's last step shows the loss the epoch ended with
        assert f"(step 10, {lines[9].split(' | ')[-1].replace(' ', ', ')})" in engine[0]
    assert sum(m.startswith(("epoch 1 validation", "epoch 2 validation")) for m in engine) == 2


def test_amp_bf16_runs_on_cpu_and_fp16_is_refused(tmp_path: Path, toy: ModuleType) -> None:
    model, result = _fit(toy, tmp_path / "bf16", epochs=1, amp="bf16")
    assert result.global_step == 10
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())
    with pytest.raises(ValueError, match="'fp16' needs a CUDA device.*'bf16'"):
        _fit(toy, tmp_path / "fp16", epochs=1, amp="fp16")


def test_frozen_layer_is_unchanged_and_bad_batch_geometry_is_refused(tmp_path: Path, toy: ModuleType) -> None:
    initial = toy.make_model(0).state_dict()
    model, _ = _fit(toy, tmp_path / "a", epochs=1, freeze=("0",))
    after = model.state_dict()
    assert torch.equal(after["0.weight"], initial["0.weight"]) and torch.equal(after["0.bias"], initial["0.bias"])
    assert not torch.equal(after["3.weight"], initial["3.weight"])
    with pytest.raises(ValueError, match="train.global_batch_size"):
        _fit(toy, tmp_path / "b", global_batch_size=10, batch_size_per_device=4)
