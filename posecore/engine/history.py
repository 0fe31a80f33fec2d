"""What a training logged, kept beside its checkpoints: the curves as a DVC plot and the outcome as DVC metrics.

:class:`History` sits between :func:`~posecore.engine.trainer.fit` and the experiment logger
(MLflow), keeping every row it passes on; :func:`write_history` then writes, in the training folder::

    train_history.csv   step,train_loss...,train_lr...,val_<metric>... (one row per logged step)
    train_metrics.json  best_<metric>, best_epoch, epochs, steps, world_size
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from posecore.engine.step import TrainLogger
from posecore.engine.trainer import FitResult
from posecore.io import atomic_write_json, atomic_write_text

HISTORY_FILE = "train_history.csv"
SUMMARY_FILE = "train_metrics.json"


class History:
    """Keeps what the trainer logs, for the DVC plot and the stage's metrics file.

    A :class:`~posecore.engine.step.TrainLogger` that passes every call on to ``inner`` (None:
    keep the rows only).
    """

    def __init__(self, inner: TrainLogger | None) -> None:
        self.inner = inner
        self.rows: list[dict[str, float]] = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.rows.append({"step": float(step), **metrics})
        if self.inner is not None:
            self.inner.log_metrics(metrics, step)

    def log_params(self, params: Mapping[str, Any]) -> None:
        if self.inner is not None:
            self.inner.log_params(params)

    def log_artifact(self, path: Path) -> None:
        if self.inner is not None:
            self.inner.log_artifact(path)

    def csv(self) -> str:
        """Losses, learning rates and validation metrics by step; ``/`` in names becomes ``_`` (DVC plot columns)."""
        keys = sorted({k for row in self.rows for k in row if k.startswith(("train/loss", "train/lr", "val/"))})
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["step", *[k.replace("/", "_") for k in keys]])
        for row in self.rows:
            writer.writerow([int(row["step"]), *[row.get(k, "") for k in keys]])
        return buf.getvalue()


def write_history(out: Path, history: History, result: FitResult, metric_name: str) -> tuple[Path, Path]:
    """Write ``train_history.csv`` and ``train_metrics.json`` into ``out``; returns their paths.

    ``world_size``: the processes that trained (``WORLD_SIZE`` under torchrun, else 1).
    """
    history_file = atomic_write_text(out / HISTORY_FILE, history.csv())
    summary = {
        f"best_{metric_name}": result.best_metric,
        "best_epoch": result.best_epoch,
        "epochs": result.epochs,
        "steps": result.global_step,
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
    }
    return history_file, atomic_write_json(out / SUMMARY_FILE, summary, indent=2)


def finish_training_run(
    logger: TrainLogger, out: Path, history: History, result: FitResult, metric_name: str, files: Sequence[Path] = ()
) -> None:
    """Write the history files (:func:`write_history`) and log them, ``files`` (the model's description),
    best.pt and ``best/<metric_name>`` to the training run."""
    history_csv, metrics_json = write_history(out, history, result, metric_name)
    logger.log_metrics({f"best/{metric_name}": float(result.best_metric or 0.0)}, result.global_step)
    for path in (*files, history_csv, metrics_json):
        logger.log_artifact(path)
    if result.best is not None:
        logger.log_artifact(result.best)
