"""The 3D stage group as ``dvc repro`` runs it: data3d -> train3d / baseline3d -> evaluate3d, logged to MLflow."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import tiny_model as tiny  # tests/_helpers (put on sys.path by tests/conftest.py)
from mlflow import MlflowClient

from posecore.config import parse_params
from posecore.data.lifting import encode_sequences
from posecore.datasets.pose3d.format import load_sequences
from posecore.engine.lifting import load_trained_lifter
from posecore.evaluation.lifting import predict_sequences
from posecore.export.lift_bundle import LiftBundleInfo, LiftRuntime
from posecore.registry.pull import pull
from stages import data3d, evaluate3d, export3d, register3d, train3d

H36M = "mmpose_samples/h36m"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with tiny.one_thread():
        yield


def _params(base: Path, **lift):  # noqa: ANN202
    root = base
    raw = {
        "lift": {
            "data": str(root / "motion3d"),
            "out": str(root / "reports"),
            "baseline_dir": str(root / "baseline"),
            "synth": {
                "n_subjects_train": 1, "n_subjects_val": 1, "sequences_per_subject": 3, "frames_min": 30,
                "frames_max": 40, "cameras_per_sequence": 2, "n_cameras_train": 2, "n_cameras_val": 2,
            },
            "model": {"channels": 16, "receptive_field": 9},
            "baseline": {"channels": 16},
            "baseline_epochs": 1,
            "train": {
                "epochs": 2, "global_batch_size": 32, "batch_size_per_device": 32, "warmup_iters": 1,
                "checkpoint_dir": str(root / "lift"), "val_interval": 1, "progress": False,
            },
            **lift,
        },
        "tracking": {"tracking_uri": f"sqlite:///{root}/mlflow.db", "system_metrics": False},
    }  # fmt: skip
    return parse_params(raw)


@pytest.fixture(scope="module")
def lifted(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    root = tmp_path_factory.mktemp("lift3d")
    params = _params(root)
    report = data3d.run(params.lift)
    trained = train3d.run(params)
    baseline = train3d.run(params, baseline=True)
    metrics = evaluate3d.run(params)
    return root, params, report, trained, baseline, metrics


def test_data3d_writes_both_splits_and_a_report(lifted) -> None:
    root, _, report, *_ = lifted
    assert report["source"] == "synthetic"
    for split in ("train", "val"):
        sequences = load_sequences(root / "motion3d" / split)
        assert len(sequences) == report["splits"][split]["sequences"] == 6
    assert json.loads((root / "motion3d" / "report.json").read_text()) == report


def test_train3d_and_baseline3d_write_their_folders(lifted) -> None:
    root, _, _, trained, baseline, _ = lifted
    for folder, outputs, lifter in (
        (root / "lift", trained, "videopose3d"),
        (root / "baseline", baseline, "simplebaseline3d"),
    ):
        names = {p.name for p in folder.iterdir()}
        assert {
            "best.pt",
            "latest.pt",
            "model.json",
            "train_metrics.json",
            "train_history.csv",
            "mlflow_run_id",
        } <= names
        assert json.loads((folder / "model.json").read_text())["lifter"]["name"] == lifter
        assert json.loads((folder / "train_metrics.json").read_text())["best_MPJPE"] == outputs.result.best_metric
    assert json.loads((root / "baseline" / "train_metrics.json").read_text())["epochs"] == 1  # lift.baseline_epochs


def test_evaluate3d_reports_both_lifters_and_logs_to_the_run(lifted) -> None:
    root, params, _, trained, baseline, metrics = lifted
    assert json.loads((root / "reports" / "metrics.json").read_text()) == metrics
    # best.pt is re-scored on the same val sequences: the training run's best value comes back
    assert metrics["MPJPE"] == pytest.approx(trained.result.best_metric, rel=1e-5)
    assert metrics["baseline/MPJPE"] == pytest.approx(baseline.result.best_metric, rel=1e-5)
    assert metrics["eval_data"].startswith("md5:") and metrics["sequences"] == 6
    with (root / "reports" / "per_joint.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 17 and {"lifter", "joint", "MPJPE", "P-MPJPE", "count"} <= set(rows[0])
    with (root / "reports" / "per_action.csv").open() as fh:
        actions = {r["action"] for r in csv.DictReader(fh)}
    assert actions and actions <= {"walk", "arm", "squat", "turn", "walk+arm", "squat+arm", "turn+arm"}

    client = MlflowClient(params.tracking.tracking_uri)
    run = client.get_run(trained.run_id)
    assert run.data.tags["posecore.task"] == "lifting"
    assert run.data.metrics["eval/MPJPE"] == pytest.approx(metrics["MPJPE"])
    assert run.data.metrics["eval/baseline/P-MPJPE"] == pytest.approx(metrics["baseline/P-MPJPE"])
    mlflow.set_tracking_uri("")  # leave no global state behind


def test_data3d_converts_human36m_files(shared_data: Path, tmp_path: Path) -> None:
    sample = shared_data / H36M
    if not sample.is_dir():
        pytest.skip(f"{sample} is absent (the MMPose H36M sample)")
    lift = {"source": "h36m", "root": str(sample), "cameras": "cameras.json"}
    params = _params(tmp_path, **lift, annotations={"train": "test_h36m_body3d.npz", "val": "test_h36m_body3d.npz"})
    report = data3d.run(params.lift)
    assert report["source"] == "h36m" and report["splits"]["val"]["frames"] == 4
    assert len(load_sequences(tmp_path / "motion3d" / "train")) == report["splits"]["train"]["sequences"]

    bad = _params(tmp_path / "bad", **lift, annotations={"train": "test_h36m_body3d.npz", "test": "x.npz"})
    with pytest.raises(ValueError, match="must name exactly the splits"):
        data3d.run(bad.lift)
    assert not (tmp_path / "bad" / "motion3d").exists()


def test_export3d_and_register3d_ship_a_lifter_users_can_pull_and_run(lifted, tmp_path: Path) -> None:
    root, *_ = lifted
    raw_lift = {
        "bundle": str(root / "bundle"),
        "export_metrics": str(root / "export.json"),
        "register_out": str(root / "register.json"),
    }
    params = _params(root, **raw_lift)
    report = export3d.run(params)
    assert report["parity_max_abs_mm"] <= params.lift.parity_atol_mm and report["parity_frames"] > 0
    info = LiftBundleInfo.read(root / "bundle")
    assert info.temporal and info.receptive_field == 9 and info.provenance["metrics"]["MPJPE"] > 0

    first = register3d.run(params)
    assert first["model_name"] == "posecore-pose-lifting" and first["decision"] == "promoted"
    second = register3d.run(params)  # the same model again: not better, not promoted
    assert second["decision"] == "rejected" and second["champion_version"] == first["version"]

    client = MlflowClient(params.tracking.tracking_uri)
    pulled = tmp_path / "pulled"
    pull("posecore-pose-lifting@champion", pulled, client=client)
    seq = load_sequences(root / "motion3d" / "val")[0]
    joints = LiftRuntime(pulled).lift(seq.keypoints_2d, seq.scores_2d, (seq.camera.width, seq.camera.height))
    lifter, described = load_trained_lifter(root / "lift")
    expected = predict_sequences(lifter, encode_sequences(lifter.codec, [seq]), described["flip_indices"])
    np.testing.assert_allclose(joints, expected.numpy(), atol=params.lift.parity_atol_mm)

    mlflow.set_tracking_uri(params.tracking.tracking_uri)
    served = mlflow.pyfunc.load_model("models:/posecore-pose-lifting@champion")
    frame = pd.DataFrame(
        {
            "keypoints": [seq.keypoints_2d.tolist()],
            "image_width": [float(seq.camera.width)],
            "image_height": [float(seq.camera.height)],
        }
    )
    out = np.asarray(served.predict(frame)["joints_3d"][0])
    no_scores = LiftRuntime(pulled).lift(seq.keypoints_2d, None, (seq.camera.width, seq.camera.height))
    np.testing.assert_allclose(out, no_scores, atol=1e-3)
    mlflow.set_tracking_uri("")
