"""MLflow logging overhead per training epoch: unbuffered calls vs posecore's buffered ``MlflowRun``.

    python benchmarks/bench_tracking.py [--epochs 5] [--steps 100] [--uri URI | --server]

One "epoch" is what the engine logs with ``train.log_interval: 1``: ``--steps`` calls of
``log_metrics`` with 3 metrics (loss, lr, grad_norm), then 5 validation metrics, the end-of-epoch
``epoch``/``time/epoch_s`` record, and one small artifact (a 16 KB JSON report). Each way of
logging runs in its own run of a fresh store; the table gives the median time per epoch spent
inside logging calls (the training loop's overhead), the mean cost of a step log (flushes
included), and the
one-off cost of ending the run (final flush, plus the curves PNG for ``MlflowRun``).

- ``mlflow.log_metrics``: the fluent API, one synchronous ``log_batch`` per call.
- ``mlflow async``: the same with ``synchronous=False`` (MLflow's background queue).
- ``MlflowRun``: posecore.experiment, buffered, flushed every 5 s, at epoch ends and at close.

Default store: a new SQLite file in a temporary folder (its one-off creation is not timed).
``--server`` starts ``mlflow server`` on a free loopback port over such a file, to measure the
HTTP path; ``--uri`` uses a store or server you already run.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import requests
from mlflow import MlflowClient

from posecore.experiment import MlflowRun, check_reachable

VAL_KEYS = ("AP", "AP50", "AP75", "AR", "PCK")


def _metrics(step: int) -> dict[str, float]:
    return {"train/loss": 1.0 / (step + 1), "train/lr": 1e-3, "train/grad_norm": 0.5 + step % 7}


class Timer:
    def __init__(self) -> None:
        self.epochs: list[float] = []
        self.steps: list[float] = []
        self.close_s = 0.0

    def epoch(self, body: Callable[[], None]) -> None:
        start = time.perf_counter()
        body()
        self.epochs.append(time.perf_counter() - start)


def run_fluent(uri: str, experiment_id: str, args: argparse.Namespace, report: Path, synchronous: bool) -> Timer:
    timer = Timer()
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(experiment_id=experiment_id, log_system_metrics=False):
        step = 0
        for epoch in range(args.epochs):

            def body(epoch: int = epoch) -> None:
                nonlocal step
                for _ in range(args.steps):
                    step += 1
                    t = time.perf_counter()
                    mlflow.log_metrics(_metrics(step), step=step, synchronous=synchronous)
                    timer.steps.append(time.perf_counter() - t)
                mlflow.log_metrics({f"val/{k}": 0.5 for k in VAL_KEYS}, step=step, synchronous=synchronous)
                mlflow.log_metrics({"epoch": epoch + 1.0, "time/epoch_s": 1.0}, step=step, synchronous=synchronous)
                mlflow.log_artifact(str(report), "reports")

            timer.epoch(body)
        t = time.perf_counter()
    timer.close_s = time.perf_counter() - t
    if not synchronous:
        mlflow.flush_async_logging()
    return timer


def run_posecore(uri: str, args: argparse.Namespace, report: Path) -> Timer:
    timer = Timer()
    run = MlflowRun(uri, experiment="bench", system_metrics=False).start()
    step = 0
    for epoch in range(args.epochs):

        def body(epoch: int = epoch) -> None:
            nonlocal step
            for _ in range(args.steps):
                step += 1
                t = time.perf_counter()
                run.log_metrics(_metrics(step), step=step)
                timer.steps.append(time.perf_counter() - t)
            run.log_metrics({f"val/{k}": 0.5 for k in VAL_KEYS}, step=step)
            run.log_metrics({"epoch": epoch + 1.0, "time/epoch_s": 1.0}, step=step)
            run.log_artifact(report, "reports")

        timer.epoch(body)
    t = time.perf_counter()
    run.close()
    timer.close_s = time.perf_counter() - t
    return timer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def mlflow_server(folder: Path) -> Iterator[str]:
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{folder}/server.db", "--artifacts-destination", str(folder / "server-artifacts"),
    ]  # fmt: skip
    log = open(folder / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if requests.get(f"{uri}/health", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start; see {folder / 'server.log'}")
            time.sleep(0.5)
        yield uri
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def bench(uri: str, args: argparse.Namespace, folder: Path) -> None:
    check_reachable(uri, 10)
    report = folder / "report.json"
    report.write_text(json.dumps({f"k{i}": [i] * 100 for i in range(40)}))
    client = MlflowClient(uri)
    client.search_experiments()  # creates and migrates a new SQLite store outside the timings
    location = None if uri.startswith("http") else (folder / "artifacts").as_uri()
    fluent_exp = client.create_experiment(f"bench-fluent-{os.getpid()}-{time.time_ns()}", artifact_location=location)
    async_exp = client.create_experiment(f"bench-async-{os.getpid()}-{time.time_ns()}", artifact_location=location)

    results = [
        ("mlflow.log_metrics", run_fluent(uri, fluent_exp, args, report, synchronous=True)),
        ("mlflow async", run_fluent(uri, async_exp, args, report, synchronous=False)),
        ("MlflowRun (buffered)", run_posecore(uri, args, report)),
    ]
    print(f"store: {uri}")
    print(
        f"one epoch = {args.steps} steps x 3 metrics + 5 val metrics + epoch record + 1 artifact; {args.epochs} epochs"
    )
    print(f"{'logging':<22} {'per epoch (median)':>19} {'mean step call':>14} {'end of run':>11}")
    base = statistics.median(results[0][1].epochs)
    for name, timer in results:
        per_epoch = statistics.median(timer.epochs)
        per_step = statistics.fmean(timer.steps)
        print(
            f"{name:<22} {per_epoch * 1e3:>15.1f} ms {per_step * 1e6:>11.0f} us {timer.close_s * 1e3:>8.0f} ms"
            f"   ({base / per_epoch:.1f}x)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--uri", help="an existing tracking URI (default: a new SQLite store)")
    where.add_argument("--server", action="store_true", help="start a local mlflow server and log over HTTP")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp:
        folder = Path(tmp)
        if args.server:
            with mlflow_server(folder) as uri:
                bench(uri, args, folder)
        else:
            bench(args.uri or f"sqlite:///{folder}/mlflow.db", args, folder)


if __name__ == "__main__":
    main()
