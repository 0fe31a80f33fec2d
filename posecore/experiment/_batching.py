"""Batched writes to MLflow: step metrics kept in memory and sent with ``MlflowClient.log_batch``.

A training loop logs a few metrics every step; one HTTP request (or SQLite transaction) per
call would cost it more than the step. :class:`MetricBuffer` keeps them and says when they are
due: every ``flush_interval_s`` seconds, when one of ``flush_on`` (the engine's end-of-epoch
``epoch`` metric) arrives, or when a batch is full (``benchmarks/bench_tracking.py``).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from posecore.experiment.keys import check_metric_key

if TYPE_CHECKING:
    from mlflow import MlflowClient

BATCH_METRICS = 1000  # MAX_METRICS_PER_BATCH
BATCH_PARAMS_TAGS = 100  # MAX_PARAMS_TAGS_PER_BATCH
_MAX_BUFFERED = 200_000  # metrics kept while the store is unreachable; older ones are dropped beyond this


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """``items`` in slices of at most ``size`` (MLflow's per-batch limits)."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


class MetricBuffer:
    """Step metrics waiting to be written; ``keys`` holds every metric name seen (checked once each)."""

    def __init__(self, flush_interval_s: float, flush_on: Sequence[str]) -> None:
        self.flush_interval_s = flush_interval_s
        self.keys: set[str] = set()
        self._flush_on = frozenset(flush_on)
        self._pending: list[Any] = []
        self._last_flush = time.monotonic()

    def add(self, metrics: Mapping[str, float], step: int) -> bool:
        """Keep ``metrics`` at ``step``; returns whether they are due to be written now."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        for key, value in metrics.items():
            if key not in self.keys:
                check_metric_key(key)
                self.keys.add(key)
            self._pending.append(Metric(key, float(value), now, int(step)))
        return (
            len(self._pending) >= BATCH_METRICS
            or not self._flush_on.isdisjoint(metrics)
            or time.monotonic() - self._last_flush >= self.flush_interval_s
        )

    def write(self, client: MlflowClient | None, run_id: str | None, final: bool = False) -> None:
        """Send what is kept. A failure keeps the metrics to retry (the newest ``_MAX_BUFFERED``) and
        warns; at the ``final`` write it only warns that they are lost."""
        self._last_flush = time.monotonic()
        if not self._pending or client is None:
            return
        pending, self._pending = self._pending, []
        try:
            for chunk in chunks(pending, BATCH_METRICS):
                client.log_batch(run_id, metrics=chunk)
                pending = pending[len(chunk) :]
        except Exception as exc:
            if final:
                warnings.warn(
                    f"{len(pending)} metrics could not be written to MLflow run {run_id}: {exc}",
                    RuntimeWarning,
                    stacklevel=3,
                )
                return
            self._pending = pending[-_MAX_BUFFERED:] + self._pending
            warnings.warn(
                f"MLflow logging failed ({exc}); {len(self._pending)} metrics kept to retry",
                RuntimeWarning,
                stacklevel=3,
            )
