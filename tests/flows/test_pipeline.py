"""flows.pipeline without servers: stage order, the stage task on a real (tiny) DVC repository,
params overrides, and what the artifacts say. The flow on a real Prefect server and worker is in
``test_deployments.py``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from flows._params import write_overrides
from flows.pipeline import (
    PipelineReport,
    StageFailed,
    StageResult,
    dvc_env,
    find_repo,
    has_default_remote,
    metrics_table,
    read_report,
    run_stage,
    stage_order,
    summary_markdown,
)
from posecore.config import ConfigError, load_params

# DVC 3.67's own index code trips over a pygtrie deprecation; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:_NoneStep.value will soon raise:DeprecationWarning")


def _dvc(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=repo, env=dvc_env(), capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, f"dvc {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_stage_order_follows_dvc_yaml_and_is_topological(repo_root: Path, tmp_path: Path) -> None:
    order = stage_order(repo_root)
    assert order == list(yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"])
    assert order[0] == "synth" and order[-1] == "register3d" and "register" in order

    # DVC's own DAG of the real dvc.yaml: every stage must come after the stages it depends on
    shutil.copy(repo_root / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copy(repo_root / "params.yaml", tmp_path / "params.yaml")
    _dvc(tmp_path, "init", "--no-scm", "-q")
    from dvc.repo import Repo

    with Repo(str(tmp_path)) as repo:
        edges = [(u.name, v.name) for u, v in repo.index.graph.edges]  # dependent -> dependency
    assert ("convert", "synth") in edges and ("register", "export") in edges, edges
    late = [(u, v) for u, v in edges if order.index(v) > order.index(u)]
    assert not late, f"dvc.yaml lists these stages before the stages they depend on: {late}"


def test_stage_order_rejects_a_file_without_stages(tmp_path: Path) -> None:
    (tmp_path / "dvc.yaml").write_text("vars: []\n")
    with pytest.raises(ValueError, match="defines no stages"):
        stage_order(tmp_path)


def test_find_repo_prefers_the_working_directory(
    tmp_path: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(FileNotFoundError, match="has no dvc.yaml: pass repo="):
        find_repo(tmp_path)
    assert find_repo(str(repo_root)) == repo_root
    monkeypatch.chdir(tmp_path)
    assert find_repo(None) == repo_root  # no dvc.yaml here: the checkout holding flows/
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    assert find_repo(None) == tmp_path.resolve()  # a deployment's pull step changed into its checkout


@pytest.fixture()
def tiny_dvc(tmp_path: Path) -> Path:
    """A DVC repository with two stages: ``copy`` (in.txt -> out.txt) and ``double`` (out.txt -> final.txt)."""
    repo = tmp_path / "tiny"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    _dvc(repo, "init", "-q")
    (repo / "in.txt").write_text("a\n")
    stages = {
        "stages": {
            "copy": {
                "cmd": "python -c \"import shutil; shutil.copy('in.txt', 'out.txt'); print('copied')\"",
                "deps": ["in.txt"],
                "outs": ["out.txt"],
            },
            "double": {
                "cmd": "python -c \"open('final.txt', 'w').write(open('out.txt').read() * 2)\"",
                "deps": ["out.txt"],
                "outs": ["final.txt"],
            },
        }
    }
    (repo / "dvc.yaml").write_text(yaml.safe_dump(stages, sort_keys=False))
    return repo


def test_run_stage_runs_skips_and_restores_as_dvc_decides(tiny_dvc: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="flows.pipeline")
    first = [run_stage.fn(stage, tiny_dvc) for stage in stage_order(tiny_dvc)]
    assert [(r.stage, r.status) for r in first] == [("copy", "ran"), ("double", "ran")]
    assert all(r.ran and r.seconds > 0 for r in first)
    assert (tiny_dvc / "final.txt").read_text() == "a\na\n"
    assert "copied" in caplog.text  # the stage's own output reached the logger
    assert json.loads(_dvc(tiny_dvc, "status", "--json")) == {}

    again = [run_stage.fn(stage, tiny_dvc) for stage in stage_order(tiny_dvc)]
    assert [r.status for r in again] == ["skipped", "skipped"]

    (tiny_dvc / "in.txt").write_text("b\n")
    assert run_stage.fn("copy", tiny_dvc).status == "ran"
    (tiny_dvc / "in.txt").write_text("a\n")  # seen before: DVC's run cache restores the output
    assert run_stage.fn("copy", tiny_dvc).status == "restored"
    assert (tiny_dvc / "out.txt").read_text() == "a\n"


def test_failing_stage_names_itself_and_shows_its_output(tiny_dvc: Path) -> None:
    spec = yaml.safe_load((tiny_dvc / "dvc.yaml").read_text())
    spec["stages"]["copy"]["cmd"] = "python -c \"import sys; print('bad input: in.txt'); sys.exit(3)\""
    (tiny_dvc / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(StageFailed) as info:
        run_stage.fn("copy", tiny_dvc)
    message = str(info.value)
    assert "stage 'copy' failed" in message and "bad input: in.txt" in message
    assert "dvc repro --single-item copy" in message


def test_an_interrupted_stage_is_stopped_with_its_children(tiny_dvc: Path) -> None:
    import psutil

    from flows.pipeline import _stream

    marker = f"posecore-stage-{uuid.uuid4().hex}"
    spec = yaml.safe_load((tiny_dvc / "dvc.yaml").read_text())
    spec["stages"]["copy"]["cmd"] = f"python -c \"print('started', flush=True); import time; time.sleep(120)\" {marker}"
    (tiny_dvc / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))

    def cancel(line: str) -> None:  # what a flow cancellation raises in the task, here at a known point
        if line == "started":
            raise KeyboardInterrupt

    def stage_processes() -> list[psutil.Process]:
        return [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]

    with pytest.raises(KeyboardInterrupt):
        _stream(["repro", "--single-item", "copy"], tiny_dvc, cancel)
    assert not stage_processes()


def test_no_default_remote_in_a_fresh_repository(tiny_dvc: Path, tmp_path: Path) -> None:
    assert not has_default_remote(tiny_dvc)
    assert not has_default_remote(tmp_path)  # not a DVC repository at all
    _dvc(tiny_dvc, "remote", "add", "-d", "store", str(tmp_path / "remote"))
    assert has_default_remote(tiny_dvc)


# --------------------------------------------------------------------------- params overrides


def test_overrides_keep_comments_and_read_back_as_the_stages_read_them(repo_root: Path, tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    shutil.copy(repo_root / "params.yaml", params)
    overrides = {"train.lr": 0.001, "model.preset": "synthetic-lite0", "model.input_size": [64, 64]}
    overrides["model.backbone"] = {"name": "mobilenetv3_small"}
    write_overrides(params, overrides)
    text = params.read_text()
    assert "# Pipeline parameters, read once by posecore.config.load_params" in text
    assert 'amp: "off"' in text  # quoting kept: PyYAML would read a bare off as False
    loaded = load_params(params)
    assert loaded.train.lr == 0.001 and loaded.model.input_size == (64, 64)
    assert loaded.model.backbone == {"name": "mobilenetv3_small"} and loaded.train.amp == "off"


def test_override_that_yaml_1_1_would_misread_is_written_plainly(repo_root: Path, tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    shutil.copy(repo_root / "params.yaml", params)
    write_overrides(params, {"tracking.run_name": "off"})
    assert load_params(params).tracking.run_name == "off"


def test_bad_override_is_rejected_before_anything_is_written(repo_root: Path, tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    shutil.copy(repo_root / "params.yaml", params)
    before = params.read_text()
    with pytest.raises(ConfigError, match="train.lrr: unknown key"):
        write_overrides(params, {"train.lrr": 0.1})
    with pytest.raises(ConfigError, match="synth.n_train"):
        write_overrides(params, {"synth.n_train": "many"})
    with pytest.raises(ValueError, match="train.lr is a float, not a section"):
        write_overrides(params, {"train.lr.x": 1})
    assert params.read_text() == before


# --------------------------------------------------------------------------- report and artifacts


def _pipeline_outputs(repo_root: Path, root: Path, tracking_uri: str) -> None:
    shutil.copy(repo_root / "params.yaml", root / "params.yaml")
    (root / "reports/eval").mkdir(parents=True)
    (root / "reports/eval/metrics.json").write_text(json.dumps({"AP": 0.61, "PCK": 0.9, "AP_L": -1.0}))
    (root / "reports/export_metrics.json").write_text(json.dumps({"onnx_AP": 0.61, "ort_latency_ms_b1": 1.5}))
    register = {
        "model_name": "posecore-pose",
        "registered": True,
        "metric": "AP",
        "challenger_metric": 0.61,
        "version": "3",
        "decision": "rejected",
        "reason": "worse: AP 0.61 vs champion v2 0.7",
        "champion_metric": 0.7,
        "champion_version": "2",
        "promoted": False,
    }
    (root / "reports/register.json").write_text(json.dumps(register))
    (root / "reports/lift").mkdir(parents=True)
    (root / "reports/lift/metrics.json").write_text(json.dumps({"MPJPE": 51.5, "baseline/MPJPE": 76.7}))
    lift = {"registered": True, "model_name": "posecore-pose-lifting", "version": "2", "decision": "promoted",
            "challenger_metric": 51.5, "champion_metric": 60.1, "reason": "better"}  # fmt: skip
    (root / "reports/lift_register.json").write_text(json.dumps(lift))
    (root / "models/train").mkdir(parents=True)
    run = {"run_id": "abc123", "tracking_uri": tracking_uri, "experiment_id": "7"}
    (root / "models/train/mlflow_run_id").write_text(json.dumps(run))


def test_report_table_and_summary_with_an_mlflow_server(repo_root: Path, tmp_path: Path) -> None:
    _pipeline_outputs(repo_root, tmp_path, "http://127.0.0.1:5000/")
    report = read_report(tmp_path)
    assert report.run_url == "http://127.0.0.1:5000/#/experiments/7/runs/abc123"
    assert report.model_version_url == "http://127.0.0.1:5000/#/models/posecore-pose/versions/3"
    rows = metrics_table(report)
    assert {"stage": "evaluate", "name": "AP", "value": 0.61} in rows
    assert {"stage": "export", "name": "ort_latency_ms_b1", "value": 1.5} in rows
    assert {"stage": "register", "name": "decision", "value": "rejected"} in rows
    assert {"stage": "evaluate3d", "name": "baseline/MPJPE", "value": 76.7} in rows
    assert {"stage": "register3d", "name": "decision", "value": "promoted"} in rows
    stages = [StageResult("train", "ran", 12.5), StageResult("evaluate", "skipped", 0.8)]
    md = summary_markdown(report, stages)
    assert "| train | ran | 12.5 |" in md and "| evaluate | skipped | 0.8 |" in md
    assert (
        "**Promotion:** rejected: [`posecore-pose` version 3](http://127.0.0.1:5000/#/models/posecore-pose/versions/3)"
        in md
    )
    assert "AP 0.61 vs champion 0.7 (v2)" in md
    assert "**Lifter:** promoted: `posecore-pose-lifting` version 2, MPJPE 51.5 mm vs champion 60.1" in md
    assert "[abc123](http://127.0.0.1:5000/#/experiments/7/runs/abc123)" in md


def test_report_without_a_server_has_no_links(repo_root: Path, tmp_path: Path) -> None:
    _pipeline_outputs(repo_root, tmp_path, f"sqlite:///{tmp_path}/mlflow.db")
    report = read_report(tmp_path)
    assert report.run_url is None and report.model_version_url is None
    assert "**MLflow run:** `abc123` in `sqlite:///" in summary_markdown(report, [])


def test_report_before_the_pipeline_ran_is_empty(repo_root: Path, tmp_path: Path) -> None:
    shutil.copy(repo_root / "params.yaml", tmp_path / "params.yaml")
    report = read_report(tmp_path)
    assert report == PipelineReport()
    assert metrics_table(report) == []
    assert "no register output" in summary_markdown(report, [])
