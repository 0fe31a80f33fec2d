"""posecore.registry.bundle: logging a real bundle into a run and registering it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from registry_store import H, Store, W, champion_of, champions  # tests/_helpers (on sys.path by tests/conftest.py)

from posecore import registry
from posecore.registry import CHALLENGER, RegisterConfig, log_bundle
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


def test_the_pose_model_ships_the_whole_posecore_package(tmp_path: Path) -> None:
    code = _stage_code(tmp_path / "code")
    assert code.name == "posecore"
    assert (code / "registry" / "pyfunc.py").is_file() and (code / "inference" / "runtime.py").is_file()
    assert not list(code.rglob("__pycache__"))
