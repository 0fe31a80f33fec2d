"""posecore.experiment._batching: when buffered step metrics are due, and what a failed write keeps."""

from __future__ import annotations

from typing import Any

import pytest

from posecore.experiment._batching import BATCH_METRICS, MetricBuffer, chunks


class _Client:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.batches: list[list[Any]] = []

    def log_batch(self, run_id: str, metrics: Any) -> None:
        if self.fail:
            raise ConnectionError("store went away")
        self.batches.append(list(metrics))


def test_metrics_are_due_at_epoch_ends_full_batches_and_after_the_interval() -> None:
    buffer = MetricBuffer(flush_interval_s=3600.0, flush_on=("epoch",))
    assert not buffer.add({"train/loss": 1.0}, step=1)
    assert buffer.add({"epoch": 1.0}, step=2)
    assert buffer.add({f"m{i}": 0.0 for i in range(BATCH_METRICS)}, step=3)
    assert MetricBuffer(flush_interval_s=0.0, flush_on=()).add({"train/loss": 1.0}, step=1)
    assert buffer.keys >= {"train/loss", "epoch", "m0"}


def test_a_failed_write_keeps_the_metrics_and_the_final_one_warns() -> None:
    buffer = MetricBuffer(flush_interval_s=3600.0, flush_on=())
    buffer.add({"train/loss": 1.0, "train/lr": 0.1}, step=1)
    with pytest.warns(RuntimeWarning, match="2 metrics kept to retry"):
        buffer.write(_Client(fail=True), "run")
    client = _Client()
    buffer.write(client, "run")
    assert [(m.key, m.step) for m in client.batches[0]] == [("train/loss", 1), ("train/lr", 1)]
    buffer.add({"train/loss": 0.5}, step=2)
    with pytest.warns(RuntimeWarning, match="1 metrics could not be written"):
        buffer.write(_Client(fail=True), "run", final=True)
    later = _Client()
    buffer.write(later, "run")
    assert later.batches == []


def test_chunks() -> None:
    assert [list(c) for c in chunks([1, 2, 3, 4, 5], 2)] == [[1, 2], [3, 4], [5]]
