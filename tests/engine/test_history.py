"""posecore.engine.history: what the trainer logged, passed on and kept for train_history.csv / train_metrics.json."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from posecore.engine import FitResult
from posecore.engine.history import History, write_history


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.calls.append(("metrics", (metrics, step)))

    def log_params(self, params: Any) -> None:
        self.calls.append(("params", params))

    def log_artifact(self, path: Path) -> None:
        self.calls.append(("artifact", path))


def _history(inner: _Recorder | None) -> History:
    history = History(inner)
    history.log_params({"lr": 0.1})
    history.log_metrics({"train/loss": 2.0, "train/lr": 0.1, "time/step_s": 0.5}, step=1)
    history.log_metrics({"train/loss": 1.0, "train/lr": 0.05}, step=2)
    history.log_metrics({"val/AP": 0.25, "epoch": 1.0}, step=2)
    return history


def test_every_call_is_passed_on_and_the_curves_kept() -> None:
    inner = _Recorder()
    history = _history(inner)
    history.log_artifact(Path("best.pt"))
    assert [kind for kind, _ in inner.calls] == ["params", "metrics", "metrics", "metrics", "artifact"]
    rows = list(csv.reader(io.StringIO(history.csv())))
    assert rows == [
        ["step", "train_loss", "train_lr", "val_AP"],
        ["1", "2.0", "0.1", ""],
        ["2", "1.0", "0.05", ""],
        ["2", "", "", "0.25"],
    ]
    assert _history(None).csv() == history.csv(), "without an inner logger the rows are still kept"


def test_write_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "4")
    result = FitResult(
        epochs=3, global_step=30, best_metric=0.5, best_epoch=2, val_history=[], latest=tmp_path, best=None
    )
    history_csv, metrics_json = write_history(tmp_path, _history(None), result, "AP")
    assert (history_csv.name, metrics_json.name) == ("train_history.csv", "train_metrics.json")
    assert history_csv.read_text().startswith("step,train_loss,train_lr,val_AP")
    summary = json.loads(metrics_json.read_text())
    assert summary == {"best_AP": 0.5, "best_epoch": 2, "epochs": 3, "steps": 30, "world_size": 4}
