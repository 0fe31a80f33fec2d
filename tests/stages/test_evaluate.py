"""Stage ``evaluate``: a trained model and the cache in, metrics/tables/plots/results out, logged to the training run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import pytest
import tiny_model as tiny  # tests/_helpers (put on sys.path by tests/conftest.py)

from posecore.evaluation import STATS_NAMES
from posecore.evaluation.outputs import REPORT_FILES, EvaluateOutputs
from posecore.evaluation.topdown import metric_names
from posecore.metainfo import load_meta
from stages.evaluate import main, run


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with tiny.one_thread():
        yield


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    return tiny.build(tmp_path_factory.mktemp("evaluate"))


@pytest.fixture(scope="module")
def evaluated(trained, tmp_path_factory: pytest.TempPathFactory) -> tuple[EvaluateOutputs, str]:
    uri = tiny.start_mlflow_run(trained.train_dir, tmp_path_factory.mktemp("mlflow"))
    return run(trained.params, trained.root / "reports" / "eval"), uri


def test_writes_every_output(evaluated: tuple[EvaluateOutputs, str]) -> None:
    outputs, _ = evaluated
    assert sorted(p.name for p in outputs.out_dir.iterdir()) == sorted(REPORT_FILES)
    metrics = json.loads((outputs.out_dir / "metrics.json").read_text())
    assert metrics == outputs.metrics
    for name in [*metric_names(dict.fromkeys(STATS_NAMES, 0.0)), "PCK", "PCK_0.2", "AUC", "EPE"]:
        assert name in metrics, name
    assert set(metric_names(dict.fromkeys(STATS_NAMES, 0.0))) == {
        "AP", "AP_.5", "AP_.75", "AP_M", "AP_L", "AR", "AR_.5", "AR_.75", "AR_M", "AR_L"
    }  # fmt: skip
    assert 0.0 <= metrics["PCK"] <= 1.0 and metrics["EPE"] > 0 and metrics["instances"] == len(outputs.result.errors)

    with (outputs.out_dir / "per_keypoint.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["keypoint"] for r in rows] == load_meta("coco").keypoint_names
    assert {"OKS", "PCK@0.2", "AUC", "EPE", "count"} <= set(rows[0])

    with (outputs.out_dir / "pck_curve.csv").open() as fh:
        curve = list(csv.DictReader(fh))
    assert list(curve[0]) == ["threshold", "pck"] and len(curve) == 51
    values = [float(r["pck"]) for r in curve]
    assert values == sorted(values) and values[0] == 0.0

    for png in ("per_keypoint.png", "pck_curve.png", "worst.png"):
        image = cv2.imread(str(outputs.out_dir / png))
        assert image is not None and image.shape[0] > 100 and image.shape[1] > 100, png

    results = json.loads((outputs.out_dir / "results.json").read_text())
    assert results and all(len(r["keypoints"]) == 3 * 17 and {"image_id", "score", "bbox"} <= set(r) for r in results)


def test_metrics_and_files_go_to_the_training_run(evaluated: tuple[EvaluateOutputs, str], trained) -> None:
    from mlflow import MlflowClient

    outputs, uri = evaluated
    run_id = json.loads((trained.train_dir / "mlflow_run_id").read_text())["run_id"]
    client = MlflowClient(uri)
    logged = client.get_run(run_id).data.metrics
    assert logged["eval/AP"] == pytest.approx(outputs.metrics["AP"])
    assert logged["eval/PCK"] == pytest.approx(outputs.metrics["PCK"])
    assert {f"eval/{name}" for name in REPORT_FILES} <= {a.path for a in client.list_artifacts(run_id, "eval")}


def test_main_without_mlflow_run_warns_and_writes(trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    for name in ("best.pt", "model.json", "meta.yaml"):
        (train_dir / name).write_bytes((trained.train_dir / name).read_bytes())
    params = trained.write_params(tmp_path / "params.yaml", train={"checkpoint_dir": str(train_dir)})
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning, match="not logged to MLflow"):
        assert main(["--params", str(params)]) == 0
    assert sorted(p.name for p in (tmp_path / "reports" / "eval").iterdir()) == sorted(REPORT_FILES)


def test_main_without_a_model_exits_2(trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = trained.write_params(tmp_path / "params.yaml", train={"checkpoint_dir": str(tmp_path / "nothing")})
    with pytest.warns(UserWarning, match="not logged"):
        assert main(["--params", str(params)]) == 2
    assert "dvc repro train" in capsys.readouterr().err


def test_a_cache_for_another_codec_is_refused(trained, tmp_path: Path) -> None:
    raw = dict(trained.raw_params)
    params = tiny.parse_params(raw)
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    for name in ("best.pt", "meta.yaml"):
        (train_dir / name).write_bytes((trained.train_dir / name).read_bytes())
    described = json.loads((trained.train_dir / "model.json").read_text())
    described["model"]["codec"]["sigma"] = [3.0, 3.0]
    (train_dir / "model.json").write_text(json.dumps(described))
    from dataclasses import replace

    params = replace(params, train=replace(params.train, checkpoint_dir=str(train_dir)))
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="rebuild it with `dvc repro encode`"):
        run(params, tmp_path / "eval")
    assert not (tmp_path / "eval").exists()
