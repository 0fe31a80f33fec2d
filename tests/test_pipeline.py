"""``dvc repro`` on a copy of the repository: stages run, then skip when nothing changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from workspace import copy_pipeline, tiny_params


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture()
def pipeline_repo(repo_root: Path, tmp_path: Path) -> Path:
    repo = copy_pipeline(repo_root, tmp_path / "repo")
    tiny_params(repo, tracking={"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db", "system_metrics": False})
    _run(["git", "init", "-q"], repo)
    return repo


def _ran(out: str) -> set[str]:
    return {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage '")}


@pytest.mark.slow
def test_repro_runs_then_skips(pipeline_repo: Path) -> None:
    first = _run(["dvc", "repro"], pipeline_repo)
    stages = set(yaml.safe_load((pipeline_repo / "dvc.yaml").read_text())["stages"])
    assert _ran(first.stdout) == stages, first.stdout
    assert json.loads((pipeline_repo / "models/train/train_metrics.json").read_text())["epochs"] == 1
    train = yaml.safe_load((pipeline_repo / "data/converted/annotations/train.json").read_text())
    val = yaml.safe_load((pipeline_repo / "data/converted/annotations/val.json").read_text())
    assert len(train["images"]) == 8 and len(val["images"]) == 4
    metrics = json.loads((pipeline_repo / "reports/eval/metrics.json").read_text())
    assert 0.0 <= metrics["AP"] <= 1.0
    assert (pipeline_repo / "models/bundle/model.onnx").is_file()
    registered = json.loads((pipeline_repo / "reports/register.json").read_text())
    assert registered["decision"] == "promoted", registered  # the first version becomes champion
    lifted = json.loads((pipeline_repo / "reports/lift/metrics.json").read_text())
    assert lifted["lifter"] == "videopose3d" and lifted["baseline/lifter"] == "simplebaseline3d"
    assert lifted["MPJPE"] > 0 and lifted["baseline/MPJPE"] > 0 and lifted["frames"] > 0
    assert (pipeline_repo / "models/lift_bundle/model.onnx").is_file()
    lift_registered = json.loads((pipeline_repo / "reports/lift_register.json").read_text())
    assert lift_registered["model_name"] == "posecore-pose-lifting" and lift_registered["decision"] == "promoted"

    second = _run(["dvc", "repro"], pipeline_repo)
    assert _ran(second.stdout) == set(), second.stdout

    params = yaml.safe_load((pipeline_repo / "params.yaml").read_text())
    params["synth"]["workers"] = 2  # speed only: must not invalidate anything
    (pipeline_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert _ran(_run(["dvc", "repro"], pipeline_repo).stdout) == set()

    params["data"]["split_seed"] = 1  # the synthetic source has its own split: convert re-runs, output unchanged
    (pipeline_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert _ran(_run(["dvc", "repro"], pipeline_repo).stdout) == {"convert"}

    params["evaluate"]["out"] = "reports/eval2"  # where reports go: evaluation onwards, no retraining
    (pipeline_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    moved = _ran(_run(["dvc", "repro"], pipeline_repo).stdout)
    assert "evaluate" in moved and not moved & {"synth", "convert", "encode", "train"}, moved
    assert (pipeline_repo / "reports/eval2/metrics.json").is_file()

    params["train"]["lr"] = 0.001  # train and what follows, never the data stages
    (pipeline_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    after_train = _ran(_run(["dvc", "repro"], pipeline_repo).stdout)
    assert "train" in after_train and not after_train & {"synth", "convert", "encode"}


def _walk(node: object) -> list[dict]:
    """Every mapping inside a JSON document (dvc exp show --json has no stable nesting across versions)."""
    if isinstance(node, dict):
        return [node, *(d for v in node.values() for d in _walk(v))]
    if isinstance(node, list):
        return [d for v in node for d in _walk(v)]
    return []


@pytest.mark.slow
def test_experiment_run_shows_metrics_and_plots_render(pipeline_repo: Path) -> None:
    _run(["dvc", "repro"], pipeline_repo)
    _run(["git", "add", "-A"], pipeline_repo)
    _run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "baseline"], pipeline_repo)
    # -S rewrites params.yaml; amp=off comes back unquoted (YAML false) and must still load
    exp = _run(["dvc", "exp", "run", "-n", "lower-lr", "-S", "train.lr=0.0005", "-S", "train.amp=off"], pipeline_repo)
    assert {"train", "evaluate"} <= _ran(exp.stdout) and not _ran(exp.stdout) & {"synth", "convert", "encode"}

    shown = json.loads(_run(["dvc", "exp", "show", "--json"], pipeline_repo).stdout)
    runs = [d for d in _walk(shown) if d.get("name") == "lower-lr" and "data" in d]
    assert runs, shown
    data = runs[0]["data"]
    assert data["params"]["params.yaml"]["data"]["train"]["lr"] == 0.0005
    assert "AP" in data["metrics"]["reports/eval/metrics.json"]["data"]

    plots = json.loads(_run(["dvc", "plots", "show", "--json"], pipeline_repo).stdout)
    rendered = json.dumps(plots)
    assert "train_history.csv" in rendered and "pck_curve.csv" in rendered
    html = _run(["dvc", "plots", "show", "-o", "plots_html"], pipeline_repo)
    assert (pipeline_repo / "plots_html" / "index.html").stat().st_size > 0, html.stdout


@pytest.mark.slow
def test_convert_stage_rejects_bad_params(pipeline_repo: Path) -> None:
    params = yaml.safe_load((pipeline_repo / "params.yaml").read_text())
    params["data"]["sourc"] = "coco"
    (pipeline_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = subprocess.run(
        [sys.executable, "-m", "stages.convert"], cwd=pipeline_repo, env=_env(), capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "data.sourc: unknown key" in proc.stderr
    assert not (pipeline_repo / "data/converted").exists()


@pytest.mark.slow
@pytest.mark.real_data
def test_own_data_through_the_pipeline_then_infer_on_video(pipeline_repo: Path, shared_data: Path) -> None:
    """A user's DeepLabCut project: convert, train, export, register, then run the bundle on their video."""
    mouse = shared_data / "mirror_mouse"
    params = yaml.safe_load((pipeline_repo / "params.yaml").read_text())
    params["data"].update(source="dlc", meta="mirror_mouse", root=str(mouse))
    params["train"].update(epochs=2)
    (pipeline_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ran = _ran(_run(["dvc", "repro"], pipeline_repo).stdout)
    assert {"convert", "encode", "train", "evaluate", "export", "register"} <= ran, ran

    bundle = json.loads((pipeline_repo / "models/bundle/bundle.json").read_text())
    assert bundle["meta_name"] == "mirror_mouse"
    out = pipeline_repo / "out"
    video = mouse / "videos" / "test_vid.mp4"
    _run([sys.executable, "-m", "posecore.cli", "infer", "--model", "models/bundle", "--input", str(video),
          "--out", str(out), "--max-frames", "10"], pipeline_repo)  # fmt: skip
    doc = json.loads((out / "test_vid.json").read_text())
    assert len(doc["frames"]) == 10
    assert all(len(f["instances"]) == 1 for f in doc["frames"])
    assert len(doc["frames"][0]["instances"][0]["keypoints"]) == len(bundle["keypoint_names"])
    assert (out / "test_vid.mp4").stat().st_size > 0
