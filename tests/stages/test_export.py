"""Stage ``export``: a trained model in, a checked bundle that runs without PyTorch out (or nothing at all)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import tiny_model as tiny  # tests/_helpers (put on sys.path by tests/conftest.py)
import torch

import stages.export as export_stage
from posecore.config import Params
from posecore.data.cache import open_cache
from posecore.evaluation.topdown import normalized_inputs
from posecore.export import BundleInfo, ExportConfig
from posecore.export.onnx import ort_session, read_metadata, run_onnx, tile_batch
from posecore.export.trained import load_trained
from posecore.export.verify import ExportOutputs
from stages.export import run

REPO = Path(__file__).resolve().parents[2]


FAST = {"latency_runs": 3, "latency_warmup": 1, "threads": 1}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with tiny.one_thread():
        yield


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    return tiny.build(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory: pytest.TempPathFactory) -> tuple[ExportOutputs, str]:
    """The default exporter (dynamo) with static INT8, logged to a training run, after the evaluate stage."""
    uri = tiny.start_mlflow_run(trained.train_dir, tmp_path_factory.mktemp("mlflow"))
    cfg = ExportConfig(
        out=str(trained.root / "models" / "bundle"),
        metrics=str(trained.root / "reports" / "export_metrics.json"),
        quantize="static",
        **FAST,
    )
    (trained.root / "reports" / "eval").mkdir(parents=True)
    (trained.root / "reports" / "eval" / "metrics.json").write_text(json.dumps({"AP": 0.42, "PCK": 0.9}))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(trained.root)  # where the evaluate stage's reports/eval/metrics.json lies
        return run(trained.params, cfg), uri


def _val_inputs(trained, n: int) -> torch.Tensor:  # noqa: ANN001
    split = open_cache(Path(trained.params.encode.out))["val"]
    model = load_trained(trained.train_dir).model
    real = normalized_inputs(split, np.arange(len(split)), model.mean, model.std).numpy()
    return torch.from_numpy(tile_batch(real, n))


def test_the_bundle_follows_the_contract(exported: tuple[ExportOutputs, str], trained) -> None:
    outputs, _ = exported
    bundle = outputs.bundle_dir
    assert sorted(p.name for p in bundle.iterdir()) == [
        "bundle.json",
        "model.int8.onnx",
        "model.json",
        "model.onnx",
        "weights.pt",
    ]
    info = BundleInfo.read(bundle)
    assert info == outputs.info
    assert read_metadata(bundle / "model.onnx") == info == read_metadata(bundle / "model.int8.onnx")
    assert info.outputs == ("simcc_x", "simcc_y") and info.input_name == "inputs"
    assert info.input_size == (64, 64) and info.codec["name"] == "simcc" and info.codec["input_size"] == [64, 64]
    assert info.flip_test and not info.shift_heatmap and info.bbox_padding == 1.25
    assert info.quantization == "static" and info.int8_model_file == "model.int8.onnx"
    run_id = json.loads((trained.train_dir / "mlflow_run_id").read_text())["run_id"]
    prov = info.provenance
    assert prov["mlflow_run_id"] == run_id and prov["weights"]["ema"] is True
    assert prov["exporter"] == "dynamo" and prov["dynamo_fallback_reason"] is None
    assert prov["metrics"] == {"AP": 0.42, "PCK": 0.9} and "git_commit" in prov
    val_json = Path(trained.params.data.out) / "annotations" / "val.json"
    assert prov["eval_data"] == "md5:" + hashlib.md5(val_json.read_bytes()).hexdigest()
    model = onnx.load(str(bundle / "model.onnx"))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_onnx_matches_pytorch_on_val_crops(exported: tuple[ExportOutputs, str], trained, batch: int) -> None:
    outputs, _ = exported
    model = load_trained(trained.train_dir).model
    inputs = _val_inputs(trained, batch)
    got = run_onnx(ort_session(outputs.bundle_dir / "model.onnx", threads=1), inputs.numpy())
    with torch.no_grad():
        ref = model(inputs)
    for key in ("simcc_x", "simcc_y"):
        assert got[key].shape == tuple(ref[key].shape)
        assert np.abs(got[key] - ref[key].numpy()).max() <= 1e-4
    kp_onnx, _ = model.codec.decode({k: torch.from_numpy(v) for k, v in got.items()})
    kp_torch, _ = model.codec.decode(ref)
    assert (kp_onnx - kp_torch).norm(dim=-1).max() <= 0.5


def test_metrics_file(exported: tuple[ExportOutputs, str]) -> None:
    outputs, _ = exported
    metrics = json.loads(outputs.metrics_file.read_text())
    assert metrics == pytest.approx(outputs.metrics)
    assert metrics["parity_max_abs_diff"] <= 1e-4 and metrics["parity_max_kpt_px"] <= 0.5
    assert metrics["parity_samples"] >= 5
    for name in ("ort_latency_ms_b1", "ort_latency_ms_b32", "torch_latency_ms_b1", "torch_latency_ms_b32"):
        assert metrics[name] > 0, name
    assert metrics["export_seconds"] > 0 and metrics["model_mb"] > metrics["int8_model_mb"] > 0
    assert 0.0 <= metrics["onnx_AP"] <= 1.0 and 0.0 <= metrics["int8_AP"] <= 1.0
    assert metrics["int8_AP_drop"] == pytest.approx(metrics["onnx_AP"] - metrics["int8_AP"])
    assert metrics["int8_latency_ms_b32"] > 0 and metrics["int8_parity_max_abs_diff"] > 0


def test_bundle_and_metrics_go_to_the_training_run(exported: tuple[ExportOutputs, str], trained) -> None:
    from mlflow import MlflowClient

    outputs, uri = exported
    run_id = json.loads((trained.train_dir / "mlflow_run_id").read_text())["run_id"]
    client = MlflowClient(uri)
    data = client.get_run(run_id).data
    assert data.metrics["export/parity_max_abs_diff"] == pytest.approx(outputs.metrics["parity_max_abs_diff"])
    assert data.tags["posecore.export.exporter"] == "dynamo"
    assert {a.path for a in client.list_artifacts(run_id, "bundle")} == {
        "bundle/bundle.json",
        "bundle/model.onnx",
        "bundle/model.int8.onnx",
        "bundle/weights.pt",
        "bundle/model.json",
    }
    assert [a.path for a in client.list_artifacts(run_id, "export")] == ["export/export_metrics.json"]


NO_TORCH_RUNTIME = r"""
import json, sys
sys.modules["torch"] = None  # any `import torch` below now raises ImportError
import numpy as np
import onnxruntime as ort
from posecore.export import BundleInfo

bundle = sys.argv[1]
raw = json.load(open(f"{bundle}/bundle.json"))
info = BundleInfo.from_dict(raw)
w, h = info.input_size
for name in (info.model_file, info.int8_model_file):
    session = ort.InferenceSession(f"{bundle}/{name}", providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [info.input_name]
    pixels = np.random.default_rng(0).integers(0, 256, (3, h, w, 3)).astype(np.float32)
    x = ((pixels - np.array(info.mean, np.float32)) / np.array(info.std, np.float32)).transpose(0, 3, 1, 2)
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {info.input_name: x})))
    mirrored = session.run(None, {info.input_name: np.ascontiguousarray(x[..., ::-1])})
    print(json.dumps({k: list(v.shape) for k, v in outputs.items()}), len(mirrored))
assert "torch" not in sys.modules or sys.modules["torch"] is None
"""


def test_the_bundle_runs_without_pytorch(exported: tuple[ExportOutputs, str]) -> None:
    outputs, _ = exported
    proc = subprocess.run(
        [sys.executable, "-c", NO_TORCH_RUNTIME, str(outputs.bundle_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        shapes, n = line.rsplit(" ", 1)
        assert json.loads(shapes) == {"simcc_x": [3, 17, 128], "simcc_y": [3, 17, 128]} and n == "2"


def _without_run_id(trained, tmp_path: Path) -> Params:  # noqa: ANN001
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    for name in ("best.pt", "model.json", "meta.yaml"):
        (train_dir / name).write_bytes((trained.train_dir / name).read_bytes())
    params = trained.params
    return dataclasses.replace(params, train=dataclasses.replace(params.train, checkpoint_dir=str(train_dir)))


HAS_EXPORT_PARAMS = "export" in {f.name for f in dataclasses.fields(Params)}


@pytest.mark.skipif(not HAS_EXPORT_PARAMS, reason="posecore.config.Params has no `export` section yet")
def test_main_exits_2_with_the_reason_and_0_when_fine(
    trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    params = _without_run_id(trained, tmp_path)
    fast = {**FAST, "dynamo": False, "out": str(tmp_path / "bundle"), "metrics": str(tmp_path / "m.json")}
    raw = {**trained.raw_params, "train": {"checkpoint_dir": params.train.checkpoint_dir}}
    path = tmp_path / "params.yaml"
    path.write_text(json.dumps({**raw, "export": {**fast, "atol": 0.0}}))
    with pytest.warns(UserWarning, match="mlflow_run_id does not exist: the bundle is not logged to MLflow"):
        assert export_stage.main(["--params", str(path)]) == 2
    assert "does not match PyTorch" in capsys.readouterr().err
    assert not (tmp_path / "bundle").exists()
    path.write_text(json.dumps({**raw, "export": fast}))
    with pytest.warns(UserWarning):
        assert export_stage.main(["--params", str(path)]) == 0
    assert BundleInfo.read(tmp_path / "bundle").outputs == ("simcc_x", "simcc_y")


def test_a_one_stage_preset_exports_through_the_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """yoloxpose-lite0 at 64x64 on its whole-image cache: the same stage, a bundle that says ``onestage``."""
    import tiny_onestage

    from posecore.inference import BundleModel

    one = tiny_onestage.build(tmp_path / "run")
    path = tmp_path / "params.yaml"
    export = {**FAST, "dynamo": False, "out": str(tmp_path / "bundle"), "metrics": str(tmp_path / "m.json")}
    path.write_text(json.dumps({**one.raw_params, "export": export}))
    monkeypatch.chdir(tmp_path)  # no reports/eval/metrics.json here: the checkpoint's metric is recorded
    with pytest.warns(UserWarning, match="the bundle is not logged to MLflow"):
        assert export_stage.main(["--params", str(path)]) == 0
    info = BundleInfo.read(tmp_path / "bundle")
    assert info.task == "onestage" and info.outputs == ("obj_logits", "boxes", "keypoints", "vis_logits", "heatmaps")
    assert info.provenance["metrics"] == {"AP": 0.1} and info.flip_test  # its heatmaps
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["parity_count_mismatches"] == 0 and 0.0 <= metrics["onnx_AP"] <= 1.0
    (poses,) = BundleModel(tmp_path / "bundle").predict_images([np.zeros((90, 120, 3), np.uint8)])
    assert poses.keypoints.shape[1:] == (17, 2)
