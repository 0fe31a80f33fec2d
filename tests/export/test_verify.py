"""posecore.export.verify: export, then parity, latency and accuracy on real val inputs, or nothing written.

The default (dynamo) exporter and the whole stage, with MLflow, are exercised by tests/stages/test_export.py;
these tests use the TorchScript exporter (about 1 s).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch

import posecore.export.verify as verify
from posecore.export import BundleInfo, ExportConfig
from posecore.export.verify import ExportCheckError, ExportOutputs, bundle_provenance, export_and_verify

if TYPE_CHECKING:
    from conftest import Exported  # tests/export/conftest.py

FAST = {"latency_runs": 3, "latency_warmup": 1, "threads": 1, "dynamo": False}


def _export(exported: Exported, tmp_path: Path, **overrides: Any) -> ExportOutputs:
    cfg = ExportConfig(out=str(tmp_path / "bundle"), metrics=str(tmp_path / "m.json"), **{**FAST, **overrides})
    params = exported.run.params
    return export_and_verify(
        exported.trained,
        exported.split,
        Path(params.data.out) / "annotations" / "val.json",
        cfg,
        params.evaluate,
        bbox_padding=params.encode.bbox_padding,
        provenance={"mlflow_run_id": "abc"},
    )


def test_a_bad_export_fails_and_writes_nothing(
    exported: Exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy of the model with one weight changed is exported: ONNX Runtime then disagrees with PyTorch."""
    real = verify.export_onnx

    def export_a_different_model(model, path, **kwargs):  # noqa: ANN001, ANN003, ANN202
        other = copy.deepcopy(model)
        with torch.no_grad():
            next(p for p in other.head.parameters() if p.ndim > 1).add_(0.5)
        return real(other, path, **kwargs)

    monkeypatch.setattr(verify, "export_onnx", export_a_different_model)
    with pytest.raises(ExportCheckError) as err:
        _export(exported, tmp_path)
    assert "does not match PyTorch" in str(err.value) and "export.atol" in str(err.value)
    assert "Nothing was written" in str(err.value)
    assert list(tmp_path.iterdir()) == [], "no bundle, no metrics, no temporary folder"


def test_a_zero_tolerance_fails_too(exported: Exported, tmp_path: Path) -> None:
    with pytest.raises(ExportCheckError, match="> export.atol = 0"):
        _export(exported, tmp_path, atol=0.0, max_kpt_px=0.0)
    assert list(tmp_path.iterdir()) == []


def test_dynamic_int8_records_its_accuracy_drop(exported: Exported, tmp_path: Path) -> None:
    outputs = _export(exported, tmp_path, quantize="dynamic")
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert outputs.metrics_file == tmp_path / "m.json" and metrics == pytest.approx(outputs.metrics)
    assert np.isfinite(metrics["int8_AP_drop"]) and outputs.info.quantization == "dynamic"
    assert outputs.info.provenance["exporter"] == "torchscript"
    assert outputs.info.provenance["mlflow_run_id"] == "abc", "the caller's provenance is kept"
    assert BundleInfo.read(outputs.bundle_dir) == outputs.info
    assert sorted(p.name for p in outputs.bundle_dir.iterdir()) == [
        "bundle.json",
        "model.int8.onnx",
        "model.json",
        "model.onnx",
        "weights.pt",
    ]


def test_the_bundle_carries_the_deployed_weights_and_the_model_description(exported: Exported, tmp_path: Path) -> None:
    """weights.pt is the deployed state dict (the EMA weights here) as plain tensors (weights_only loads it);
    model.json is the train stage's description, so the bundle rebuilds the exact PyTorch model."""
    outputs = _export(exported, tmp_path)
    info = outputs.info
    assert (info.weights_file, info.spec_file) == ("weights.pt", "model.json")
    weights = torch.load(outputs.bundle_dir / "weights.pt", map_location="cpu", weights_only=True)
    deployed = exported.trained.model.state_dict()
    assert list(weights) == list(deployed)
    assert all(torch.equal(weights[k], deployed[k].cpu()) for k in deployed)
    assert torch.equal(weights["head.cls_x.weight"], exported.run.ema["head.cls_x.weight"])
    assert not torch.equal(weights["head.cls_x.weight"], exported.run.live["head.cls_x.weight"])
    described = json.loads((outputs.bundle_dir / "model.json").read_text())
    assert described == json.loads((exported.run.train_dir / "model.json").read_text())


def test_provenance_takes_the_evaluate_metrics_else_the_checkpoint(exported: Exported, tmp_path: Path) -> None:
    eval_metrics = tmp_path / "metrics.json"
    commit = {"git_commit": "0" * 40, "git_dirty": False}

    def provenance() -> dict[str, Any]:
        return bundle_provenance(exported.trained, eval_metrics, mlflow_run_id=None, commit=commit, eval_data="md5:x")

    from_checkpoint = provenance()
    assert from_checkpoint["metrics"] == {"AP": 0.5} and from_checkpoint["metrics_source"] == "checkpoint"
    assert from_checkpoint["git_commit"] == "0" * 40 and from_checkpoint["eval_data"] == "md5:x"
    assert from_checkpoint["weights"] == exported.trained.summary() and "onnxruntime" in from_checkpoint
    eval_metrics.write_text(json.dumps({"AP": 0.42}))
    from_file = provenance()
    assert from_file["metrics"] == {"AP": 0.42} and from_file["metrics_source"] == str(eval_metrics)


def test_a_onestage_model_is_checked_and_scored_on_whole_images(onestage_exported: Exported, tmp_path: Path) -> None:
    outputs = _export(onestage_exported, tmp_path, quantize="dynamic")
    info = BundleInfo.read(outputs.bundle_dir)
    assert info == outputs.info and info.task == "onestage" and info.flip_test  # it flip-tests its heatmaps
    assert info.outputs == ("obj_logits", "boxes", "keypoints", "vis_logits", "heatmaps")  # the preset refines
    assert info.codec["name"] == "yoloxpose" and info.codec["refine"] == "heatmap" and info.input_size == (64, 64)
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["parity_count_mismatches"] == 0 and metrics["parity_max_box_px"] <= 0.05
    assert 0.0 <= metrics["onnx_AP"] <= 1.0 and np.isfinite(metrics["int8_AP_drop"])
    assert {"int8_parity_max_box_px", "int8_parity_count_mismatches"} <= set(metrics)


def test_a_onestage_export_of_another_model_fails_and_writes_nothing(
    onestage_exported: Exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = verify.export_onnx

    def export_moved_keypoints(model, path, **kwargs):  # noqa: ANN001, ANN003, ANN202
        other = copy.deepcopy(model)
        with torch.no_grad():
            for conv in other.head.kpt_preds:
                conv.bias.add_(0.5)
        return real(other, path, **kwargs)

    monkeypatch.setattr(verify, "export_onnx", export_moved_keypoints)
    with pytest.raises(ExportCheckError, match="decoded keypoints differ.*Nothing was written"):
        _export(onestage_exported, tmp_path)
    assert list(tmp_path.iterdir()) == []
