"""The pipeline's own overhead: DVC, Prefect and MLflow time beside the stages' work.

    python benchmarks/bench_pipeline.py [--images 64] [--repeats 3] [--default-run-s S] [--json PATH]

Everything runs on a copy of the repository in a temporary folder (the files ``dvc repro``
needs, ``git init``), with tiny params: ``--images`` + ``--val-images`` synthetic images, the
default model, 3 epochs with validation after the third, step metrics logged every step, MLflow
in a SQLite file of that folder. Measured:

0. ``dvc repro`` once: per stage the wall time DVC shows (from one "Running stage" line to the
   next), the stage's own process time (recorded by a ``sitecustomize`` put on ``PYTHONPATH`` for
   this run only), and the difference, DVC's own work (status, hashing, caching, lock file).
(a) no-op ``dvc repro`` (every stage up to date): median of ``--repeats``.
(b) Prefect per stage: ``dvc repro --single-item <stage>`` of each (up-to-date) stage run
    directly by ``subprocess`` vs. as a Prefect task inside a flow (ephemeral API, temporary
    ``PREFECT_HOME``): the task of ``flows.pipeline`` (``run_stage(stage, repo)``) when that module
    exists, and always a stand-in task of the same interface that only runs the subprocess
    (Prefect's bare cost), and a no-op task (Prefect's own cost of a task call, which the
    differences cannot resolve: ``dvc`` start-up varies by more). Medians of ``--repeats`` flow runs
    after one warm-up run; that first run also starts the ephemeral API server and is reported on
    its own. When ``flows.pipeline`` has its ``training_pipeline`` flow, that whole flow on the
    up-to-date repository is timed against a no-op ``dvc repro`` too.
(c) MLflow per epoch: the train stage's logging of a default run replayed without training,
    with the metric names the tiny run logged: ``MlflowRun`` from ``make_logger`` (params, tags,
    lineage) and the per-epoch sequence of ``fit`` (train losses and LR every ``train.log_interval``
    steps, ``val/*`` every ``train.val_interval`` epochs, ``epoch``/``time/epoch_s``), then the
    stage's end (``best/<metric>``, four small files and ``best.pt`` as artifacts, curves PNG,
    end of run; the stage logs the checkpoint once, at the end, not per epoch), vs. the same calls
    on ``NullLogger`` (not logging). System metrics (``tracking.system_metrics``) are sampled by
    MLflow's own thread and are not in these times.

Then the orchestration overhead as a share of a default pipeline run (params.yaml as it is):
``--default-run-s``, or by default estimated from the tiny run: synth/convert/encode scaled by
the number of images (the time of their ``run`` functions, timed again in-process; the rest of
the stage process as measured), train by optimizer steps (time of the warm second
epoch) and validations (third epoch minus second) beyond its fixed part, evaluate, export and
register as measured (their fixed costs dominate; this errs towards a shorter run, i.e. a larger
overhead share). The output says which.

One script of ~680 lines: the three measurements share the temporary repository, its tiny run
and the estimate of a default run, and the report compares them.

About 8 minutes on two busy CPU cores, most of it the tiny run's stages. Numbers on a shared machine
are noisy: rerun.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from posecore.config import Params, load_params
from posecore.experiment import NullLogger, make_logger, read_run_id_file

REPO = Path(__file__).resolve().parents[1]
TRACKED = [
    "dvc.yaml",
    "params.yaml",
    "pyproject.toml",
    "posecore",
    "stages",
    "flows",
    ".dvc/config",
    ".dvc/.gitignore",
    ".dvcignore",
]
STAGE_LOG_ENV = "POSECORE_BENCH_STAGE_LOG"
SITECUSTOMIZE = f"""\
import atexit, json, os, sys, time

_start = time.time()


def _record():
    path = os.environ.get({STAGE_LOG_ENV!r})
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({{"argv": sys.argv, "start": _start, "end": time.time()}}) + "\\n")


atexit.register(_record)  # forked workers leave through os._exit and record nothing
"""
TINY_EPOCHS = 3  # epoch 1 cold, epoch 2 warm (step time), epoch 3 warm + validation (validation time)


# --------------------------------------------------------------------------- the repository copy


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env | (extra or {})


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, env=env or _env(), capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return time.perf_counter() - start


def make_repo(root: Path, args: argparse.Namespace) -> Path:
    repo = root / "repo"
    repo.mkdir()
    for name in TRACKED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / name)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["synth"].update(n_train=args.images, n_val=args.val_images)
    batch = args.batch or load_params(repo / "params.yaml").train.global_batch_size  # the preset's recipe if null
    params["train"].update(epochs=TINY_EPOCHS, val_interval=TINY_EPOCHS, progress=False, log_interval=1)
    params["train"].update(global_batch_size=batch, batch_size_per_device=batch)
    params["tracking"]["tracking_uri"] = f"sqlite:///{root}/mlflow.db"
    for item in args.set:
        key, _, value = item.partition("=")
        *parents, leaf = key.split(".")
        node = params
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = yaml.safe_load(value)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(["git", "init", "-q"], repo)
    return repo


def stage_names(repo: Path) -> list[str]:
    return list(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])


# --------------------------------------------------------------------------- 0. one full run


def first_repro(repo: Path, root: Path) -> dict[str, Any]:
    """``dvc repro`` from scratch: total, per stage as DVC shows it and the stage process alone."""
    hook = root / "sitecustomize"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = root / "stage_times.jsonl"
    pythonpath = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
    env = _env({"PYTHONPATH": pythonpath, STAGE_LOG_ENV: str(log)})
    marks: list[tuple[float, str]] = []
    lines: list[str] = []
    start = time.perf_counter()
    proc = subprocess.Popen(
        ["dvc", "repro"], cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("Running stage '"):
            marks.append((time.perf_counter(), line.split("'")[1]))
    code = proc.wait()
    total = time.perf_counter() - start
    if code:
        raise RuntimeError("dvc repro failed:\n" + "".join(lines[-60:]))
    in_dvc = {name: end - t for (t, name), end in zip(marks, [t for t, _ in marks[1:]] + [start + total], strict=True)}
    process: dict[str, float] = {}
    for raw in log.read_text().splitlines():
        entry = json.loads(raw)
        argv0 = Path(entry["argv"][0]) if entry["argv"] else Path()
        if argv0.parent.name == "stages" and argv0.stem in in_dvc:
            process[argv0.stem] = process.get(argv0.stem, 0.0) + entry["end"] - entry["start"]
    return {"total_s": total, "in_dvc_s": in_dvc, "process_s": process}


def noop_repro(repo: Path, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        proc = subprocess.run(["dvc", "repro"], cwd=repo, env=_env(), capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - start)
        if proc.returncode or "Running stage" in proc.stdout:
            raise RuntimeError(f"a no-op dvc repro ran something or failed:\n{proc.stdout}\n{proc.stderr}")
    return times


# --------------------------------------------------------------------------- (b) Prefect


def _prefect_env(home: Path) -> None:
    """Ephemeral Prefect (a temporary API server in this process) with its state in ``home``; before importing prefect."""
    os.environ.pop("PREFECT_API_URL", None)
    os.environ["PREFECT_HOME"] = str(home)
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ["PATH"] = _env()["PATH"]  # the tasks' `dvc` is this environment's
    os.environ["DVC_NO_ANALYTICS"] = "1"


def _direct(stage: str, repo: Path) -> None:
    _run(["dvc", "repro", "--single-item", stage], repo)


def _flows_module(name: str) -> tuple[Any | None, str]:
    """The flows module (``run_stage``: a Prefect task ``(stage, repo)``), or None and why not."""
    try:
        module = importlib.import_module(name)
        module.run_stage  # noqa: B018 - the interface this benchmark needs
    except (ImportError, AttributeError) as exc:
        return None, f"{name} not available ({type(exc).__name__}: {exc})"
    return module, ""


def prefect_overhead(repo: Path, stages: list[str], repeats: int, flows_module: str) -> dict[str, Any]:
    """Direct ``dvc repro --single-item`` rounds interleaved with flow runs (machine load drifts)."""
    from prefect import flow, task

    @task(name="run_stage (stand-in)")
    def stand_in(stage: str, repo: Path) -> None:
        _direct(stage, repo)

    def over_stages(run_stage: Any) -> Callable[[], tuple[float, list[float]]]:
        """A flow calling ``run_stage`` for every stage; calling the result times one flow run and each task call."""

        @flow(name="bench-pipeline-overhead")
        def stages_flow(stages: list[str], repo: str) -> list[float]:
            times = []
            for stage in stages:
                start = time.perf_counter()
                run_stage(stage, Path(repo))
                times.append(time.perf_counter() - start)
            return times

        def timed() -> tuple[float, list[float]]:
            start = time.perf_counter()
            per_task = stages_flow(stages, str(repo))
            return time.perf_counter() - start, per_task

        return timed

    module, why = _flows_module(flows_module)
    candidates = {"stand-in": over_stages(stand_in)}
    if module is not None:
        candidates["flows.pipeline"] = over_stages(module.run_stage)
    whole_flow = getattr(module, "training_pipeline", None)
    first_s, first_tasks = candidates["stand-in"]()  # starts the ephemeral API server

    @task(name="no-op")
    def no_op() -> None:
        return None

    @flow(name="bench-prefect-no-op-tasks")
    def no_op_flow(n: int) -> list[float]:
        times = []
        for _ in range(n):
            start = time.perf_counter()
            no_op()
            times.append(time.perf_counter() - start)
        return times

    bare_task_s = statistics.median(no_op_flow(10 * len(stages)))  # Prefect's own cost of a task call
    direct: dict[str, list[float]] = {s: [] for s in stages}
    samples: dict[str, list[tuple[float, list[float]]]] = {name: [] for name in candidates}
    whole: list[float] = []
    for _ in range(repeats):
        for s in stages:
            start = time.perf_counter()
            _direct(s, repo)
            direct[s].append(time.perf_counter() - start)
        for name, timed in list(candidates.items()):
            try:
                samples[name].append(timed())
            except Exception as exc:  # someone else's module: report it, measure the rest
                why = f"{flows_module}.run_stage failed: {type(exc).__name__}: {exc}"
                del candidates[name], samples[name]
        if whole_flow is not None:
            try:
                start = time.perf_counter()
                whole_flow(repo=str(repo))
                whole.append(time.perf_counter() - start)
            except Exception as exc:
                print(f"  {flows_module}.training_pipeline failed: {type(exc).__name__}: {exc}", flush=True)
                whole_flow = None
    runs = {
        name: {
            "task_s": {s: statistics.median(t[i] for _, t in taken) for i, s in enumerate(stages)},
            "flow_extra_s": statistics.median(f - sum(t) for f, t in taken),
        }
        for name, taken in samples.items()
    }
    return {
        "direct_s": {s: statistics.median(v) for s, v in direct.items()},
        "first_flow_s": first_s,
        "first_flow_extra_s": first_s - sum(first_tasks),
        "bare_task_s": bare_task_s,
        "runs": runs,
        "whole_flow_s": statistics.median(whole) if whole else None,
        "flows_pipeline": "" if "flows.pipeline" in runs else why,
    }


# --------------------------------------------------------------------------- (c) MLflow


@dataclasses.dataclass(frozen=True)
class _EpochPlan:
    epochs: int
    steps_per_epoch: int
    log_interval: int
    val_interval: int
    train_keys: list[str]
    val_keys: list[str]
    best_key: str


def _logged_keys(run_id_file: Path) -> tuple[list[str], list[str]]:
    from mlflow import MlflowClient

    info = read_run_id_file(run_id_file)
    metrics = MlflowClient(info["tracking_uri"]).get_run(info["run_id"]).data.metrics
    return sorted(k for k in metrics if k.startswith("train/")), sorted(k for k in metrics if k.startswith("val/"))


def replay_logging(logger: Any, plan: _EpochPlan, params: Params, artifacts: list[Path]) -> dict[str, Any]:
    """What the train stage logs in a default run, without the training: start, per epoch, end (seconds)."""
    start = time.perf_counter()
    logger.start()
    logger.log_params(dataclasses.asdict(params.train))  # what fit logs first
    start_s = time.perf_counter() - start
    step, epochs = 0, []
    for epoch in range(1, plan.epochs + 1):
        t0 = time.perf_counter()
        for _ in range(plan.steps_per_epoch):
            step += 1
            if step % plan.log_interval == 0:
                logger.log_metrics({k: 1.0 / step for k in plan.train_keys}, step=step)
        if epoch % plan.val_interval == 0 or epoch == plan.epochs:
            logger.log_metrics({k: 0.5 for k in plan.val_keys}, step=step)
        logger.log_metrics({"epoch": float(epoch), "time/epoch_s": 1.0}, step=step)
        epochs.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    logger.log_metrics({plan.best_key: 0.5}, step)
    for path in artifacts:
        logger.log_artifact(path)
    logger.close()
    return {"start_s": start_s, "epoch_s": epochs, "end_s": time.perf_counter() - t0}


def mlflow_overhead(repo: Path, root: Path, plan: _EpochPlan) -> dict[str, Any]:
    params = load_params(repo / "params.yaml")
    train_dir = repo / params.train.checkpoint_dir
    artifacts = [train_dir / n for n in ("model.json", "train_history.csv", "train_metrics.json", "meta.yaml")]
    artifacts.append(train_dir / "best.pt")
    start = time.perf_counter()
    logger = make_logger(params.tracking, params, repo, 0, root / "replay_run_id")
    make_s = time.perf_counter() - start
    logged = replay_logging(logger, plan, params, artifacts)
    logged["start_s"] += make_s  # lineage tags (git, dvc.lock) and the reachability check
    null = replay_logging(NullLogger(), plan, params, artifacts)
    return {
        "store": logger.tracking_uri,
        "checkpoint_mb": (train_dir / "best.pt").stat().st_size / 1e6,
        "logging": logged,
        "not_logging": null,
    }


# --------------------------------------------------------------------------- the default run


def data_work_s(repo: Path, scratch: Path) -> dict[str, float]:
    """Seconds of the ``run`` of synth, convert and encode at the tiny size, in this process, writing to ``scratch``.

    What the tiny run's stage processes spent beyond that (start-up, imports) does not grow with the data.
    """
    from stages import convert, encode, synth

    params = load_params(repo / "params.yaml")
    data = dataclasses.replace(params.data, root=str(scratch / "synthetic"), out=str(scratch / "converted"))
    steps: dict[str, Callable[[], object]] = {
        "synth": lambda: synth.run(dataclasses.replace(params.synth, out=data.root)),
        "convert": lambda: convert.run(data),
        "encode": lambda: encode.run(
            dataclasses.replace(
                params, data=data, encode=dataclasses.replace(params.encode, out=str(scratch / "cache"))
            )
        ),
    }
    took = {}
    for name, step in steps.items():
        start = time.perf_counter()
        step()
        took[name] = time.perf_counter() - start
    return took


def _tiny_facts(repo: Path) -> dict[str, Any]:
    params = load_params(repo / "params.yaml")
    counts = json.loads((repo / params.encode.out / "key.json").read_text())["counts"]
    info = read_run_id_file(repo / params.train.checkpoint_dir / "mlflow_run_id")
    from mlflow import MlflowClient

    history = MlflowClient(info["tracking_uri"]).get_metric_history(info["run_id"], "time/epoch_s")
    return {
        "train_images": params.synth.n_train,
        "val_images": params.synth.n_val,
        "train_instances": counts["train"],
        "val_instances": counts["val"],
        "steps_per_epoch": counts["train"] // params.train.global_batch_size,
        "epoch_s": [m.value for m in sorted(history, key=lambda m: m.step)],
    }


def default_plan(tiny: dict[str, Any], default: Params, train_keys: list[str], val_keys: list[str]) -> _EpochPlan:
    """The default run's epochs and steps; its number of people per image taken from the tiny run."""
    per_image = tiny["train_instances"] / tiny["train_images"]
    steps = int(per_image * default.synth.n_train) // default.train.global_batch_size
    return _EpochPlan(
        epochs=default.train.epochs,
        steps_per_epoch=max(1, steps),
        log_interval=default.train.log_interval,
        val_interval=default.train.val_interval,
        train_keys=train_keys,
        val_keys=val_keys,
        best_key=f"best/{default.evaluate.metric}",
    )


def estimate_default_run(
    stages: list[str],
    first: dict[str, Any],
    work: dict[str, float],
    tiny: dict[str, Any],
    default: Params,
    plan: _EpochPlan,
) -> dict[str, float]:
    """Seconds per stage of a default run, scaled from the tiny run (see the module docstring)."""
    image_ratio = (default.synth.n_train + default.synth.n_val) / (tiny["train_images"] + tiny["val_images"])
    val_ratio = default.synth.n_val / tiny["val_images"]  # validation work grows with the val instances
    estimate: dict[str, float] = {}
    for stage in stages:
        took = first["process_s"].get(stage, first["in_dvc_s"].get(stage, 0.0))
        if stage in work:
            estimate[stage] = max(0.0, took - work[stage]) + work[stage] * image_ratio
        elif stage == "train" and len(tiny["epoch_s"]) == TINY_EPOCHS:
            _, warm, with_val = tiny["epoch_s"]
            step_s = min(warm, with_val) / max(1, tiny["steps_per_epoch"])  # the lower: noise only adds
            val_s = max(0.0, with_val - warm) * val_ratio
            vals = sum(1 for e in range(1, plan.epochs + 1) if e % plan.val_interval == 0 or e == plan.epochs)
            fixed = max(0.0, took - 2 * warm - with_val)  # start-up, cold first epoch, checkpoints, MLflow
            estimate[stage] = fixed + plan.epochs * plan.steps_per_epoch * step_s + vals * val_s
        else:
            estimate[stage] = took
    return estimate


# --------------------------------------------------------------------------- report


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.2f}%"


def report(res: dict[str, Any], args: argparse.Namespace) -> None:
    first, stages, est, tiny = res["first_repro"], res["stages"], res["default_run"], res["tiny"]
    print(
        f"\ntiny run: {tiny['train_images']} + {tiny['val_images']} synthetic images, {tiny['train_instances']} train "
        f"instances, batch {res['tiny_batch']}, {TINY_EPOCHS} epochs; dvc repro from scratch {first['total_s']:.1f} s"
    )
    head = f"{'stage':<10}{'in dvc repro s':>16}{'stage process s':>17}{'DVC s':>8}{'default run est. s':>20}"
    print(head)
    print("-" * len(head))
    for s in stages:
        wall, proc = first["in_dvc_s"].get(s, float("nan")), first["process_s"].get(s, float("nan"))
        print(f"{s:<10}{wall:>16.1f}{proc:>17.1f}{wall - proc:>8.1f}{est['per_stage_s'].get(s, float('nan')):>20.0f}")
    print(
        f"{'total':<10}{first['total_s']:>16.1f}{sum(first['process_s'].values()):>17.1f}"
        f"{res['dvc_overhead_s']:>8.1f}{sum(est['per_stage_s'].values()):>20.0f}"
    )

    noop = res["noop_repro_s"]
    times = ", ".join(f"{t:.2f}" for t in noop)
    print(
        f"\n(a) no-op dvc repro (all {len(stages)} stages up to date): median {statistics.median(noop):.2f} s ({times})"
    )

    pf = res["prefect"]
    runs = pf["runs"]
    print(
        f"\n(b) Prefect, per stage: `dvc repro --single-item` of an up-to-date stage, direct vs. as a task "
        f"(medians of {args.repeats})"
    )
    head = f"{'stage':<10}{'direct s':>10}{'stand-in task s':>17}{'+ s':>8}{'flows.pipeline s':>18}{'+ s':>8}"
    print(head)
    print("-" * len(head))
    for s in stages:
        d = pf["direct_s"][s]
        row = f"{s:<10}{d:>10.2f}"
        for name in ("stand-in", "flows.pipeline"):
            if name in runs:
                t = runs[name]["task_s"][s]
                row += f"{t:>{17 if name == 'stand-in' else 18}.2f}{t - d:>+8.2f}"
            else:
                row += f"{'n/a':>{17 if name == 'stand-in' else 18}}{'':>8}"
        print(row)
    for name, r in runs.items():
        print(
            f"  {name}: mean overhead per task {r['per_task_overhead_s']:+.3f} s; flow run start/finish beyond its "
            f"tasks {r['flow_extra_s']:.2f} s"
        )
    print(
        f"  Prefect's own cost of a task call (a no-op task, median of {10 * len(stages)}): "
        f"{1e3 * pf['bare_task_s']:.1f} ms; the differences above are within the spread of DVC's start-up"
    )
    if pf["flows_pipeline"]:
        print(f"  flows.pipeline column: {pf['flows_pipeline']}")
    print(
        f"  first flow call in a process (starts the ephemeral API server): {pf['first_flow_extra_s']:.1f} s "
        "beyond its tasks"
    )
    if pf["whole_flow_s"] is not None:
        noop_s = statistics.median(res["noop_repro_s"])
        print(
            f"  whole flow, flows.pipeline.training_pipeline on the up-to-date repo: {pf['whole_flow_s']:.2f} s vs. "
            f"no-op dvc repro {noop_s:.2f} s ({pf['whole_flow_s'] - noop_s:+.2f} s: {len(stages)} DVC start-ups "
            "instead of one, tasks, flow run, artifacts)"
        )

    ml = res["mlflow"]
    plan = res["plan"]
    print(
        f"\n(c) MLflow, the train stage's logging in a default run ({plan['epochs']} epochs x {plan['steps_per_epoch']} "
        f"steps, train metrics every {plan['log_interval']} steps, validation every {plan['val_interval']} epochs; "
        f"{ml['checkpoint_mb']:.0f} MB best.pt; store {ml['store']})"
    )
    head = f"{'':<26}{'per epoch ms':>13}{'start ms':>10}{'end ms':>9}"
    print(head)
    print("-" * len(head))
    for label, key in (("not logging (NullLogger)", "not_logging"), ("MlflowRun (train stage)", "logging")):
        r = ml[key]
        print(
            f"{label:<26}{1e3 * statistics.median(r['epoch_s']):>13.2f}{1e3 * r['start_s']:>10.0f}"
            f"{1e3 * r['end_s']:>9.0f}"
        )
    print(f"  overhead per epoch (median): {1e3 * res['mlflow_per_epoch_s']:.2f} ms")

    ov = res["overhead"]
    whole = est["total_s"]
    source = (
        "given with --default-run-s"
        if args.default_run_s
        else "estimated from the tiny run: synth/convert/encode scaled by images, train by steps and "
        "validations, evaluate/export/register as measured"
    )
    print(f"\nOrchestration overhead in a default pipeline run of {whole:.0f} s ({source}):")
    head = f"{'':<52}{'s':>9}{'of run':>9}"
    print(head)
    print("-" * len(head))
    for label, value in ov["parts"].items():
        print(f"{label:<52}{value:>9.2f}{_pct(value, whole):>9}")
    print(f"{'total':<52}{ov['total_s']:>9.2f}{_pct(ov['total_s'], whole):>9}   (goal < 5%)")
    if ov.get("whole_flow_total_s") is not None:
        print(
            f"{'  with Prefect as whole flow minus dvc repro (no-op)':<52}{ov['whole_flow_total_s']:>9.2f}"
            f"{_pct(ov['whole_flow_total_s'], whole):>9}"
        )
    print(
        f"{'  + ephemeral Prefect API start (no running server)':<52}{pf['first_flow_extra_s']:>9.2f}"
        f"{_pct(ov['total_s'] + pf['first_flow_extra_s'], whole):>9}   (total with it)"
    )


def main(argv: Sequence[str] | None = None) -> None:
    default = load_params(REPO / "params.yaml")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64, help="synthetic train images of the tiny run")
    parser.add_argument("--val-images", type=int, default=8, help="synthetic val images of the tiny run")
    parser.add_argument("--batch", type=int, default=0, help="tiny run batch (default: train.global_batch_size)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a param of the tiny run (dotted key, YAML value), e.g. export.dynamo=false",
    )
    parser.add_argument("--default-run-s", type=float, default=0.0, help="a default run's time (default: estimate)")
    parser.add_argument("--flows-module", default="flows.pipeline", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if default.data.source != "synthetic" and not args.default_run_s:
        parser.error(
            f"params.yaml trains on data.source {default.data.source!r}: give --default-run-s "
            "(the estimate scales the synthetic source)"
        )
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; temporary repository copy", flush=True)
    with tempfile.TemporaryDirectory(prefix="posecore-bench-pipeline-") as tmp:
        root = Path(tmp)
        _prefect_env(root / "prefect")
        repo = make_repo(root, args)
        stages = stage_names(repo)
        first = first_repro(repo, root)
        print(f"  dvc repro: {first['total_s']:.0f} s", flush=True)
        work = data_work_s(repo, root / "scratch")
        noop = noop_repro(repo, args.repeats)
        print(f"  no-op dvc repro: {statistics.median(noop):.1f} s", flush=True)
        prefect = prefect_overhead(repo, stages, args.repeats, args.flows_module)
        print("  Prefect: done", flush=True)
        tiny = _tiny_facts(repo)
        train_keys, val_keys = _logged_keys(repo / default.train.checkpoint_dir / "mlflow_run_id")
        plan = default_plan(tiny, default, train_keys, val_keys)
        ml = mlflow_overhead(repo, root, plan)
        print("  MLflow: done", flush=True)
        per_stage = estimate_default_run(stages, first, work, tiny, default, plan)
    total_default = args.default_run_s or sum(per_stage.values())
    dvc_overhead = first["total_s"] - sum(first["process_s"].values())
    for r in prefect["runs"].values():
        r["per_task_overhead_s"] = statistics.fmean(r["task_s"][s] - prefect["direct_s"][s] for s in stages)
    mlflow_epoch = statistics.median(ml["logging"]["epoch_s"]) - statistics.median(ml["not_logging"]["epoch_s"])
    mlflow_once = sum(ml["logging"][k] - ml["not_logging"][k] for k in ("start_s", "end_s"))
    pf_name = "flows.pipeline" if "flows.pipeline" in prefect["runs"] else "stand-in"
    parts: dict[str, float] = {"DVC: its own work in a run (tiny run, all stages)": dvc_overhead}
    if pf_name in prefect["runs"]:
        r = prefect["runs"][pf_name]
        per_task = max(r["per_task_overhead_s"], prefect["bare_task_s"])  # a negative difference is noise
        parts[f"Prefect ({pf_name}): {len(stages)} tasks + flow run"] = len(stages) * per_task + r["flow_extra_s"]
    parts[f"MLflow: {plan.epochs} epochs + start/end of the run"] = plan.epochs * mlflow_epoch + mlflow_once
    whole_flow_total = None
    if prefect["whole_flow_s"] is not None:
        prefect_part = next((v for k, v in parts.items() if k.startswith("Prefect")), 0.0)
        whole_flow_extra = prefect["whole_flow_s"] - statistics.median(noop)
        whole_flow_total = sum(parts.values()) - prefect_part + whole_flow_extra
    results = {
        "benchmark": "pipeline",
        "stages": stages,
        "tiny_batch": args.batch or default.train.global_batch_size,
        "tiny": tiny,
        "first_repro": first,
        "data_work_s": work,
        "dvc_overhead_s": dvc_overhead,
        "noop_repro_s": noop,
        "prefect": prefect,
        "plan": dataclasses.asdict(plan),
        "mlflow": ml,
        "mlflow_per_epoch_s": mlflow_epoch,
        "default_run": {
            "source": "argument" if args.default_run_s else "estimate",
            "per_stage_s": per_stage,
            "total_s": total_default,
        },
        "overhead": {
            "parts": parts,
            "total_s": sum(parts.values()),
            "share": sum(parts.values()) / total_default,
            "whole_flow_total_s": whole_flow_total,
        },
    }
    report(results, args)
    print(
        "\nDVC: status/hash/cache work inside `dvc repro` (stage processes excluded); Prefect: task time minus the "
        "same subprocess run directly; MLflow: time inside logging calls minus NullLogger. Shared machine: noisy."
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
