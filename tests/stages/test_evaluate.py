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


# --- evaluate.boxes: COCO's detected-box protocol ----------------------------------------------------------


def _detections(trained, path: Path) -> Path:  # noqa: ANN001
    """A detection file for the val images: each labelled person's box, shifted a little (score 0.9), and a
    spurious box per image (score 0.2)."""
    doc = json.loads((Path(trained.params.data.out) / "annotations" / "val.json").read_text())
    records = [
        {"image_id": a["image_id"], "category_id": 1, "bbox": [a["bbox"][0] + 2, a["bbox"][1] - 1, *a["bbox"][2:]],
         "score": 0.9}
        for a in doc["annotations"] if a.get("num_keypoints", 0) > 0
    ] + [{"image_id": i["id"], "category_id": 1, "bbox": [0, 0, 10, 12], "score": 0.2} for i in doc["images"]]  # fmt: skip
    path.write_text(json.dumps(records))
    return path


def test_boxes_file_scores_the_detected_boxes_beside_the_ground_truth_ones(
    trained, evaluated: tuple[EvaluateOutputs, str], tmp_path: Path
) -> None:
    from dataclasses import replace

    from mlflow import MlflowClient

    from posecore.registry.fingerprint import file_fingerprint

    gt_run, _ = evaluated
    dets = _detections(trained, tmp_path / "dets.json")
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    for name in ("best.pt", "model.json", "meta.yaml"):
        (train_dir / name).write_bytes((trained.train_dir / name).read_bytes())
    uri = tiny.start_mlflow_run(train_dir, tmp_path / "mlflow")
    params = trained.params
    params = replace(
        params,
        train=replace(params.train, checkpoint_dir=str(train_dir)),
        evaluate=replace(params.evaluate, boxes="file", bbox_file=str(dets)),
    )
    outputs = run(params, tmp_path / "eval")
    metrics = json.loads((outputs.out_dir / "metrics.json").read_text())
    assert metrics == outputs.metrics
    ann_md5 = file_fingerprint(Path(params.data.out) / "annotations" / "val.json")
    assert gt_run.metrics["boxes"] == "gt" and gt_run.metrics["eval_data"] == ann_md5
    assert metrics["boxes"] == f"file:{dets}"
    assert metrics["eval_data"] == f"{ann_md5}+boxes=file:{file_fingerprint(dets)}"
    assert metrics["detected_boxes"] == len(json.loads(dets.read_text()))
    for name in ("AP", "AP_.5", "AR", "AR_L"):
        assert metrics[f"gt_boxes/{name}"] == pytest.approx(gt_run.metrics[name]), name
        assert -1.0 <= metrics[name] <= 1.0  # -1: no person of that size (pycocotools)
    for name in ("PCK", "AUC", "EPE", "instances"):  # per labelled person: the ground-truth crops
        assert metrics[name] == pytest.approx(gt_run.metrics[name]), name
    results = json.loads((outputs.out_dir / "results.json").read_text())
    posed = {tuple(round(v, 3) for v in r["bbox"]) for r in results}
    assert posed == {tuple(round(float(v), 3) for v in r["bbox"]) for r in json.loads(dets.read_text())}, (
        "results.json holds a pose for every detected box (the spurious ones too), not the ground-truth crops"
    )
    logged = MlflowClient(uri).get_run(json.loads((train_dir / "mlflow_run_id").read_text())["run_id"]).data
    assert logged.tags["posecore.eval.boxes"] == metrics["boxes"]
    assert logged.tags["posecore.eval.eval_data"] == metrics["eval_data"]
    assert logged.metrics["eval/AP"] == pytest.approx(metrics["AP"])
    assert logged.metrics["eval/gt_boxes/AP"] == pytest.approx(metrics["gt_boxes/AP"])


def test_boxes_file_for_other_images_is_refused_and_nothing_is_written(trained, tmp_path: Path) -> None:
    from dataclasses import replace

    from posecore.validation import DataValidationError

    bad = tmp_path / "dets.json"
    bad.write_text(json.dumps([{"image_id": 987654, "category_id": 1, "bbox": [0, 0, 9, 9], "score": 1.0}]))
    params = trained.params
    for evaluate, error, match in (
        (replace(params.evaluate, boxes="file", bbox_file=str(bad)), DataValidationError, "987654"),
        (replace(params.evaluate, boxes="file"), ValueError, "evaluate.bbox_file is empty"),
        (replace(params.evaluate, boxes="model", detector=str(tmp_path / "nope")), FileNotFoundError, "evaluate.detector"),
    ):  # fmt: skip
        with pytest.raises(error, match=match):
            run(replace(params, evaluate=evaluate), tmp_path / "eval")
        assert not (tmp_path / "eval").exists()


def test_boxes_model_poses_what_a_one_stage_model_finds(trained, tmp_path: Path) -> None:
    """evaluate.boxes=model with a one-stage training folder as the person finder (two-stage inference,
    both stages trained here): every box it finds on a val image is posed, and the fingerprint names it."""
    from dataclasses import replace

    import tiny_onestage

    from posecore.datasets.coco import load_image
    from posecore.inference.detection import load_detector
    from posecore.registry.fingerprint import file_fingerprint

    finder = tiny_onestage.build(tmp_path / "onestage").train_dir
    params = trained.params
    evaluate = replace(params.evaluate, boxes="model", detector=str(finder), det_score_thr=0.05)
    outputs = run(replace(params, evaluate=evaluate), tmp_path / "eval")
    val = json.loads((Path(params.data.out) / "annotations" / "val.json").read_text())
    detect = load_detector(finder, 0.05)
    found = sum(len(detect(load_image(Path(params.data.out) / "images" / i["file_name"]))) for i in val["images"])
    metrics = outputs.metrics
    assert found > 0 and metrics["detected_boxes"] == found
    assert metrics["boxes"] == f"model:{finder}"
    assert str(metrics["eval_data"]).endswith(f"+boxes=model:{file_fingerprint(finder / 'best.pt')},score>=0.05")
    assert "gt_boxes/AP" in metrics and "AP" in metrics


def test_a_one_stage_model_takes_no_boxes(tmp_path: Path) -> None:
    from dataclasses import replace

    import tiny_onestage

    run_ = tiny_onestage.build(tmp_path / "onestage")
    params = run_.params
    params = replace(params, evaluate=replace(params.evaluate, boxes="file", bbox_file="dets.json", compare_topdown=""))
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="one-stage: it finds the people itself"):
        run(params, tmp_path / "eval")
    assert not (tmp_path / "eval").exists()
