"""Stage ``register``: an exported bundle + evaluate's metrics -> a registered, possibly promoted, version."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from registry_store import tiny_bundle  # tests/_helpers (put on sys.path by tests/conftest.py)

from posecore.config import Params, load_params
from posecore.io import atomic_write_json
from posecore.registry import CHAMPION, RegisterConfig
from stages.register import main, run


@pytest.fixture()
def repo(tmp_path: Path) -> dict[str, Any]:
    """What the stages before ``register`` leave: a training run, a bundle, eval metrics, val annotations."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("posecore", artifact_location=(tmp_path / "mlartifacts").as_uri())
    run_ = client.create_run(experiment, tags={"git.commit": "cafe"})
    client.set_terminated(run_.info.run_id, "FINISHED")  # training ended
    train_dir = tmp_path / "models" / "train"
    atomic_write_json(
        train_dir / "mlflow_run_id", {"run_id": run_.info.run_id, "tracking_uri": uri, "experiment_id": experiment}
    )
    tiny_bundle(tmp_path / "models" / "bundle", metrics={"AP": 0.55})
    val = tmp_path / "data" / "converted" / "annotations" / "val.json"
    val.parent.mkdir(parents=True)
    val.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    metrics = tmp_path / "reports" / "eval" / "metrics.json"
    atomic_write_json(metrics, {"AP": 0.6, "AP_.5": 0.8, "PCK": 0.9})
    raw = {
        "data": {"out": str(tmp_path / "data" / "converted")},
        "train": {"checkpoint_dir": str(train_dir)},
        "tracking": {"tracking_uri": ""},  # the run id file's URI
    }
    params = load_params(_write(tmp_path / "params.yaml", raw))
    cfg = RegisterConfig(
        model_name="tiny-pose",
        bundle=str(tmp_path / "models" / "bundle"),
        metrics=str(metrics),
        out=str(tmp_path / "reports" / "register.json"),
    )
    return {"params": params, "cfg": cfg, "client": client, "run_id": run_.info.run_id, "root": tmp_path, "raw": raw}


def _write(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


def _result(repo: dict[str, Any]) -> dict[str, Any]:
    return json.loads((repo["root"] / "reports" / "register.json").read_text())


def test_first_run_registers_and_promotes_then_a_worse_model_is_rejected(repo: dict[str, Any]) -> None:
    params, cfg, client = repo["params"], repo["cfg"], repo["client"]
    first = run(params, cfg)
    assert first is not None and first.promoted and first.version == "1"
    out = _result(repo)
    assert out["decision"] == "promoted" and out["challenger_metric"] == 0.6 and out["champion_metric"] is None
    assert out["metric"] == "AP" and out["run_id"] == repo["run_id"]
    val = repo["root"] / "data" / "converted" / "annotations" / "val.json"
    assert out["eval_data"] == "md5:" + hashlib.md5(val.read_bytes()).hexdigest()
    assert str(client.get_model_version_by_alias("tiny-pose", CHAMPION).version) == "1"
    run_ = client.get_run(repo["run_id"])
    assert run_.info.status == "FINISHED"  # registering does not reopen the training for good
    assert run_.data.tags["posecore.registry.version"] == "tiny-pose/1"

    atomic_write_json(cfg.metrics, {"AP": 0.5})
    second = run(params, cfg)
    assert second is not None and second.decision == "rejected" and second.version == "2"
    out = _result(repo)
    assert (out["champion_metric"], out["challenger_metric"], out["champion_version"]) == (0.6, 0.5, "1")
    assert str(client.get_model_version_by_alias("tiny-pose", CHAMPION).version) == "1"

    val.write_text(json.dumps({"images": [{"id": 1}], "annotations": [], "categories": []}))  # other val data
    atomic_write_json(cfg.metrics, {"AP": 0.99})
    third = run(params, cfg)
    assert third is not None and not third.promoted and "different data" in third.reason


def test_metric_and_direction_follow_evaluate(repo: dict[str, Any]) -> None:
    params = load_params(_write(repo["root"] / "p2.yaml", {**repo["raw"], "evaluate": {"metric": "PCK"}}))
    decision = run(params, repo["cfg"])
    assert decision is not None and decision.metric == "PCK" and decision.challenger_metric == 0.9


def test_bundle_metrics_are_used_without_the_evaluate_file(repo: dict[str, Any]) -> None:
    cfg = dataclasses.replace(repo["cfg"], metrics=str(repo["root"] / "nope.json"))
    decision = run(repo["params"], cfg)
    assert decision is not None and decision.challenger_metric == 0.55


def test_register_false_logs_without_registering(repo: dict[str, Any]) -> None:
    assert run(repo["params"], dataclasses.replace(repo["cfg"], register=False)) is None
    assert _result(repo)["registered"] is False
    assert repo["client"].search_registered_models() == []


def test_missing_inputs_are_user_errors(repo: dict[str, Any]) -> None:
    with pytest.raises(FileNotFoundError, match="export"):
        run(repo["params"], dataclasses.replace(repo["cfg"], bundle=str(repo["root"] / "missing")))
    with pytest.raises(ValueError, match="metric 'EPE' not found"):
        run(repo["params"], dataclasses.replace(repo["cfg"], metric="EPE"))


@pytest.mark.skipif(
    "register" not in {f.name for f in dataclasses.fields(Params)},
    reason="Params has no `register` section yet (posecore/config.py: register: RegisterConfig)",
)
def test_main_reads_the_register_section(repo: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    cfg = repo["cfg"]
    raw = {
        **repo["raw"],
        "register": {"model_name": cfg.model_name, "bundle": cfg.bundle, "metrics": cfg.metrics, "out": cfg.out},
    }
    assert main(["--params", str(_write(repo["root"] / "p3.yaml", raw))]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["decision"] == "promoted"
    raw["register"]["bundle"] = str(repo["root"] / "missing")
    assert main(["--params", str(_write(repo["root"] / "p4.yaml", raw))]) == 2
