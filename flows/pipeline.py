"""The training pipeline as a Prefect flow: the stages of ``dvc.yaml``, run by DVC, one task each.

Design: every stage task runs ``dvc repro --single-item <stage>`` in the repository (a
subprocess whose output streams, line by line, to the task's Prefect logger), in the order in
which ``dvc.yaml`` lists its stages (read from the file at run time; that order must be a
topological order of the DAG, which ``tests/flows/test_pipeline.py`` checks against DVC's own
graph). So the flow runs exactly the code ``dvc repro`` runs and DVC alone decides what is up
to date: a stage whose deps and params did not change costs only DVC's check (about a second)
and is reported ``skipped``, one restored from DVC's run cache ``restored``; ``dvc.lock`` is
written stage by stage, and ``dvc status`` is clean after a successful run. No Prefect task
caching is involved (``NO_CACHE``): two sources of truth about staleness would drift apart.

Stage tasks never retry (a failed stage fails the same way again, and retrying a training run
costs its whole runtime); only I/O that can fail transiently does: ``dvc pull``/``dvc push``
here, MLflow calls in :mod:`flows.reevaluate`. Registration and promotion happen inside the
``register`` stage (:mod:`stages.register`).

Parameters: ``repo`` (default: the working directory when it holds a ``dvc.yaml``, as in a
deployment, else the checkout holding this file); ``params``, dotted overrides written into
``params.yaml`` before anything runs, like ``dvc exp run -S`` (validated by the typed loader
first; the change stays in the workspace and in ``dvc.lock``); ``pull``/``push``: ``dvc pull
--allow-missing`` before and ``dvc push`` after, against the repository's default DVC remote.

At the end the run gets three Prefect artifacts: ``training-metrics`` (a table of the evaluate,
export and register stages' metrics files, and of their 3D lifting counterparts), ``training-summary`` (markdown: stages, promotion
decision, MLflow run) and ``mlflow-run`` (a link, when the tracking store is an HTTP server).

    python -m flows.pipeline                 # run once, here (ephemeral Prefect API unless PREFECT_API_URL)
    prefect deploy --all                     # the deployments in prefect.yaml
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError

from flows.report import (  # noqa: F401  (re-exported: the flow's report API)
    PipelineReport,
    StageResult,
    StageStatus,
    metrics_table,
    read_report,
    summary_markdown,
)

IO_RETRIES = 2
IO_RETRY_DELAYS_S = [5.0, 30.0]
_TAIL_LINES = 40


class StageFailed(RuntimeError):
    """A ``dvc repro`` stage exited non-zero; the message holds the last lines of its output."""


class DvcCommandError(RuntimeError):
    """A DVC command other than a stage (pull, push) failed; the message holds its output."""


@dataclass(frozen=True)
class PipelineResult:
    stages: list[StageResult]
    report: PipelineReport


# --------------------------------------------------------------------------- repository and DVC


def find_repo(repo: str | Path | None = None) -> Path:
    """``repo``; else the working directory when it has a ``dvc.yaml`` (a deployment's pull step
    changes into the checkout); else the checkout holding this file."""
    if repo is not None:
        root = Path(repo).expanduser().resolve()
    else:
        cwd = Path.cwd().resolve()
        root = cwd if (cwd / "dvc.yaml").is_file() else Path(__file__).resolve().parents[1]
    if not (root / "dvc.yaml").is_file():
        raise FileNotFoundError(
            f"{root} has no dvc.yaml: pass repo=<the posecore checkout> or run from inside it "
            "(a deployment changes into it with its set_working_directory pull step)"
        )
    return root


def stage_order(repo: Path) -> list[str]:
    """The stage names of ``repo/dvc.yaml`` in the order the file lists them."""
    path = repo / "dvc.yaml"
    try:
        stages = (yaml.safe_load(path.read_text()) or {}).get("stages")
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(stages, Mapping) or not stages:
        raise ValueError(f"{path} defines no stages (expected a 'stages:' mapping)")
    return [str(name) for name in stages]


def dvc_env() -> dict[str, str]:
    """The environment for DVC subprocesses: this interpreter's ``bin`` first on PATH (stage commands
    say ``python``), unbuffered output (so it streams), no analytics."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join(filter(None, [str(Path(sys.executable).parent), env.get("PATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def has_default_remote(repo: Path) -> bool:
    """Whether the DVC repository at ``repo`` has a default remote (``dvc remote default``)."""
    from dvc.config import Config

    if not (repo / ".dvc").is_dir():
        return False
    return bool(Config(dvc_dir=str(repo / ".dvc"), validate=False)["core"].get("remote"))


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except MissingContextError:  # called as a plain function (task.fn), outside any run
        return logging.getLogger("flows.pipeline")


def _stream(args: Sequence[str], repo: Path, on_line: Callable[[str], None]) -> tuple[int, list[str]]:
    """Run ``python -m dvc *args`` in ``repo``; each output line goes to the logger and ``on_line``.
    Returns the exit status and the last lines."""
    log = _logger()
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    with subprocess.Popen(
        [sys.executable, "-m", "dvc", *args],
        cwd=repo,
        env=dvc_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        try:
            for raw in proc.stdout:
                for line in raw.rstrip("\n").split("\r"):  # progress bars redraw with \r
                    if line.strip():
                        log.info(line)
                        tail.append(line)
                        on_line(line)
            rc = proc.wait()
        except BaseException:  # cancelled or crashed: the stage must not run on unobserved
            _stop_tree(proc.pid)
            raise
    return rc, list(tail)


def _stop_tree(pid: int, timeout_s: float = 10.0) -> None:
    """Terminate ``pid`` and every process below it (DVC runs the stage command as its child), then kill
    what is still there after ``timeout_s``."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=timeout_s)


# --------------------------------------------------------------------------- tasks


@task(name="dvc-repro", task_run_name="dvc-repro-{stage}", cache_policy=NO_CACHE, persist_result=False)
def run_stage(stage: str, repo: Path) -> StageResult:
    """``dvc repro --single-item <stage>`` in ``repo``: runs the stage unless DVC finds it up to date."""
    seen: set[StageStatus] = set()

    def classify(line: str) -> None:
        if line.startswith(f"Running stage '{stage}'"):
            seen.add("ran")
        elif line.startswith(f"Stage '{stage}' is cached"):
            seen.add("restored")

    start = time.perf_counter()
    rc, tail = _stream(["repro", "--single-item", stage], Path(repo), classify)
    seconds = time.perf_counter() - start
    if rc != 0:
        raise StageFailed(
            f"stage {stage!r} failed (dvc exit status {rc}) after {seconds:.1f} s in {repo}; last lines:\n"
            + "\n".join(tail)
            + f"\nReproduce it there with `dvc repro --single-item {stage}`."
        )
    status: StageStatus = "ran" if "ran" in seen else "restored" if "restored" in seen else "skipped"
    return StageResult(stage, status, seconds)


@task(name="dvc-pull", retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAYS_S, cache_policy=NO_CACHE)
def dvc_pull(repo: Path) -> None:
    """Fetch the outputs recorded in ``dvc.lock`` from the default remote; those it lacks are left
    for ``dvc repro`` to rebuild (``--allow-missing``)."""
    rc, tail = _stream(["pull", "--allow-missing"], Path(repo), lambda _: None)
    if rc != 0:
        raise DvcCommandError(
            f"`dvc pull` failed in {repo} (exit status {rc}); last lines:\n" + "\n".join(tail) + "\n"
            "Check the remote (`dvc remote list`) and its credentials "
            '(for the local stack: eval "$(posecore stack env --credentials)").'
        )


@task(name="dvc-push", retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAYS_S, cache_policy=NO_CACHE)
def dvc_push(repo: Path) -> None:
    """Upload the cached outputs of every stage to the default remote."""
    rc, tail = _stream(["push"], Path(repo), lambda _: None)
    if rc != 0:
        raise DvcCommandError(
            f"`dvc push` failed in {repo} (exit status {rc}); last lines:\n" + "\n".join(tail) + "\n"
            "Check the remote (`dvc remote list`), that its bucket exists, and the credentials "
            '(for the local stack: eval "$(posecore stack env --credentials)").'
        )


@task(name="apply-params", cache_policy=NO_CACHE)
def apply_params(repo: Path, overrides: dict[str, Any]) -> None:
    """Write dotted overrides into ``repo/params.yaml`` (validated first; see :mod:`flows._params`)."""
    from flows._params import write_overrides

    write_overrides(Path(repo) / "params.yaml", overrides)
    _logger().info("params.yaml: %s", ", ".join(f"{k}={v!r}" for k, v in overrides.items()))


# --------------------------------------------------------------------------- report and artifacts


@task(name="publish-artifacts", cache_policy=NO_CACHE)
def publish_artifacts(repo: Path, stages: list[StageResult]) -> PipelineReport:
    """The ``training-metrics`` table, ``training-summary`` markdown and ``mlflow-run`` link artifacts
    of the pipeline's outputs in ``repo``; returns what they show."""
    report = read_report(Path(repo))
    create_table_artifact(
        metrics_table(report), key="training-metrics", description="evaluate / export / register outputs"
    )
    create_markdown_artifact(summary_markdown(report, stages), key="training-summary")
    if report.run_url:
        create_link_artifact(report.run_url, link_text=f"MLflow run {report.run_id}", key="mlflow-run")
    return report


# --------------------------------------------------------------------------- flow


@flow(name="training-pipeline")
def training_pipeline(
    repo: str | None = None,
    params: dict[str, Any] | None = None,
    pull: bool = False,
    push: bool = False,
) -> PipelineResult:
    """Run the stages of dvc.yaml in order through DVC (see the module docstring)."""
    root = find_repo(repo)
    if params:
        apply_params(root, params)
    if pull:
        dvc_pull(root)
    results = [run_stage(stage, root) for stage in stage_order(root)]
    if push:
        dvc_push(root)
    report = publish_artifacts(root, results)
    return PipelineResult(results, report)


if __name__ == "__main__":
    training_pipeline()
