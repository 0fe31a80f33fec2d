"""posecore.registry.bundle: logging a real bundle into a run and registering it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from registry_store import (  # tests/_helpers (on sys.path by tests/conftest.py)
    H,
    Store,
    W,
    champion_of,
    champions,
    tiny_bundle,
)

from posecore import registry
from posecore.registry import CHALLENGER, RegisterConfig, log_bundle, read_bundle
from posecore.registry.bundle import _stage_code


def test_log_bundle_registers_the_pyfunc_with_tags_and_the_onnx_flavour(store: Store, logged: dict[str, Any]) -> None:
    import mlflow

    mv = logged["version"]
    tags = mv.tags
    assert CHALLENGER in mv.aliases and logged["decision"].promoted
    assert tags[registry.TAG_METRIC] == "AP" and float(tags[registry.TAG_VALUE]) == 0.61
    assert tags[registry.TAG_EVAL_DATA] == "md5:val" and tags[registry.TAG_RUN] == logged["run_id"]
    assert tags[registry.TAG_GIT] == "deadbeef"
    assert mv.run_id == logged["run_id"]
    onnx_model = mlflow.models.get_model_info(tags[registry.TAG_ONNX_URI])
    assert "onnx" in onnx_model.flavors
    sig = onnx_model.signature
    assert sig.inputs.input_dict()["inputs"].shape == (-1, 3, H, W)
    assert [o.name for o in sig.outputs.inputs] == ["simcc_x", "simcc_y"]
    pose = mlflow.models.get_model_info(f"models:/{logged['name']}/{mv.version}")
    assert "python_function" in pose.flavors and pose.signature.inputs.input_names() == ["image"]
    assert store.client.get_run(logged["run_id"]).info.status == "RUNNING"  # untouched by registration


def test_failed_registration_keeps_the_champion(
    store: Store, bundle: Path, logged: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    name = logged["name"]
    before = champion_of(store, name)

    def broken(self: Any, model: str, alias: str, version: str) -> None:
        raise ConnectionError(f"lost the registry while setting {alias}")

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", broken)
    run_id = store.new_run()
    with pytest.raises(ConnectionError):
        log_bundle(bundle, run_id, RegisterConfig(model_name=name), metric_value=0.99, eval_data="md5:val")
    monkeypatch.undo()
    assert champions(store, name) == [before]
    assert store.client.get_run(run_id).info.status == "RUNNING"  # the run keeps its own status


def test_each_task_registers_under_its_own_name_with_the_task_tagged(store: Store, tmp_path: Path) -> None:
    base = store.model_name("keyed")
    for task, name in (("onestage", f"{base}-onestage"), ("topdown", base)):
        run_id = store.new_run()
        bundle = tiny_bundle(tmp_path / task, task=task)
        mv = log_bundle(bundle, run_id, RegisterConfig(model_name=base), metric_value=0.5, eval_data="md5:val")
        assert mv is not None and mv.name == name == registry.registered_model_name(base, task)
        assert mv.tags[registry.TAG_TASK] == task and CHALLENGER in mv.aliases
        run_tags = store.client.get_run(run_id).data.tags
        assert run_tags[registry.TAG_TASK] == task and run_tags["posecore.registry.version"] == f"{name}/{mv.version}"


def test_an_old_bundle_without_a_task_reads_and_registers_as_top_down(store: Store, tmp_path: Path) -> None:
    bundle = tiny_bundle(tmp_path / "old", task=None)
    assert "task" not in json.loads((bundle / "bundle.json").read_text())
    assert read_bundle(bundle).task == "topdown"
    name = store.model_name("old")
    mv = log_bundle(bundle, store.new_run(), RegisterConfig(model_name=name), metric_value=0.5, eval_data="md5:val")
    assert mv is not None and mv.name == name and mv.tags[registry.TAG_TASK] == "topdown"


def test_the_pose_model_ships_the_whole_posecore_package(tmp_path: Path) -> None:
    code = _stage_code(tmp_path / "code")
    assert code.name == "posecore"
    assert (code / "registry" / "pyfunc.py").is_file() and (code / "inference" / "runtime.py").is_file()
    assert not list(code.rglob("__pycache__"))
