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
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError

StageStatus = Literal["ran", "restored", "skipped"]

IO_RETRIES = 2
IO_RETRY_DELAYS_S = [5.0, 30.0]
_TAIL_LINES = 40


class StageFailed(RuntimeError):
    """A ``dvc repro`` stage exited non-zero; the message holds the last lines of its output."""


class DvcCommandError(RuntimeError):
    """A DVC command other than a stage (pull, push) failed; the message holds its output."""


@dataclass(frozen=True)
class StageResult:
    """One ``dvc repro --single-item`` call: ``ran`` (executed), ``restored`` (outputs checked out
    from DVC's run cache) or ``skipped`` (up to date), and the wall seconds it took."""

    stage: str
    status: StageStatus
    seconds: float

    @property
    def ran(self) -> bool:
        return self.status == "ran"


@dataclass(frozen=True)
class PipelineReport:
    """What the pipeline produced, read from its output files (paths from params.yaml)."""

    evaluate: dict[str, Any] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    register: dict[str, Any] = field(default_factory=dict)
    evaluate3d: dict[str, Any] = field(default_factory=dict)
    export3d: dict[str, Any] = field(default_factory=dict)
    register3d: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    tracking_uri: str | None = None
    experiment_id: str | None = None

    @property
    def run_url(self) -> str | None:
        """The MLflow UI page of the training run (only for an HTTP tracking server)."""
        base = _ui_base(self.tracking_uri)
        if base is None or not self.run_id or not self.experiment_id:
            return None
        return f"{base}/#/experiments/{self.experiment_id}/runs/{self.run_id}"

    @property
    def model_version_url(self) -> str | None:
        base = _ui_base(self.tracking_uri)
        name, version = self.register.get("model_name"), self.register.get("version")
        if base is None or not name or not version:
            return None
        return f"{base}/#/models/{name}/versions/{version}"


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


def _ui_base(tracking_uri: str | None) -> str | None:
    if not tracking_uri or not tracking_uri.startswith(("http://", "https://")):
        return None
    return tracking_uri.rstrip("/")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return data


def read_report(repo: Path) -> PipelineReport:
    """The evaluate/export/register outputs and the training run of the pipeline in ``repo``
    (files that do not exist yet are empty)."""
    from posecore.config import load_params
    from posecore.export.trained import RUN_ID_FILE

    params = load_params(repo / "params.yaml")
    eval_metrics = params.register.metrics_file(params.evaluate.metrics_file)
    run = _read_json(repo / params.train.checkpoint_dir / RUN_ID_FILE)
    return PipelineReport(
        evaluate=_read_json(repo / eval_metrics),
        export=_read_json(repo / params.export.metrics),
        register=_read_json(repo / params.register.out),
        evaluate3d=_read_json(repo / params.lift.out / "metrics.json"),
        export3d=_read_json(repo / params.lift.export_metrics),
        register3d=_read_json(repo / params.lift.register_out),
        run_id=run.get("run_id"),
        tracking_uri=run.get("tracking_uri"),
        experiment_id=None if run.get("experiment_id") is None else str(run["experiment_id"]),
    )


def metrics_table(report: PipelineReport) -> list[dict[str, Any]]:
    """Rows ``{"stage", "name", "value"}``: every scalar of the evaluate, export and register outputs
    (and of the 3D lifting group's evaluate3d, export3d and register3d)."""
    rows: list[dict[str, Any]] = []
    outputs = (
        ("evaluate", report.evaluate),
        ("export", report.export),
        ("register", report.register),
        ("evaluate3d", report.evaluate3d),
        ("export3d", report.export3d),
        ("register3d", report.register3d),
    )
    for stage, values in outputs:
        for name, value in values.items():
            if value is None or isinstance(value, bool | int | float | str):
                rows.append({"stage": stage, "name": name, "value": value})
    return rows


def summary_markdown(report: PipelineReport, stages: Sequence[StageResult]) -> str:
    """The run in a few lines: stage table, promotion decision, where the run and model are."""
    lines = ["## Training pipeline", "", "| stage | status | seconds |", "| --- | --- | --- |"]
    lines += [f"| {s.stage} | {s.status} | {s.seconds:.1f} |" for s in stages]
    reg = report.register
    lines.append("")
    if reg.get("registered"):
        version_ref = f"`{reg.get('model_name')}` version {reg.get('version')}"
        if report.model_version_url:
            version_ref = f"[{version_ref}]({report.model_version_url})"
        lines.append(
            f"**Promotion:** {reg.get('decision', 'unknown')}: {version_ref}, {reg.get('metric')} "
            f"{reg.get('challenger_metric')} vs champion {reg.get('champion_metric')} "
            f"(v{reg.get('champion_version')}); {reg.get('reason', '')}"
        )
    elif reg:
        lines.append("**Promotion:** not registered (`register.register` is false)")
    else:
        lines.append("**Promotion:** no register output")
    lift = report.register3d
    if lift.get("registered"):
        lines.append(
            f"**Lifter:** {lift.get('decision', 'unknown')}: `{lift.get('model_name')}` version {lift.get('version')}, "
            f"MPJPE {lift.get('challenger_metric')} mm vs champion {lift.get('champion_metric')}; {lift.get('reason', '')}"
        )
    if report.run_id:
        run = f"[{report.run_id}]({report.run_url})" if report.run_url else f"`{report.run_id}`"
        lines.append(f"**MLflow run:** {run} in `{report.tracking_uri}`")
    return "\n".join(lines) + "\n"


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
