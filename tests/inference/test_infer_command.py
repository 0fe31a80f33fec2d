"""``posecore infer`` end to end: real COCO images with detections, a real video, and bad inputs (exit 2)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from posecore.cli import main

TinyBundle = Any  # conftest.TinyBundle


def _detector_module() -> Any:
    spec = importlib.util.spec_from_file_location("_test_detection", Path(__file__).with_name("test_detection.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def coco_dir(shared_data: Path) -> Path:
    folder = shared_data / "mmpose_samples" / "coco"
    if not (folder / "test_coco_det_AP_H_56.json").is_file():
        pytest.skip(f"{folder} lacks the COCO samples")
    return folder


@pytest.fixture(scope="module")
def coco_images(coco_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four sample images alone in a folder."""
    folder = tmp_path_factory.mktemp("coco_images")
    for image in coco_dir.glob("*.jpg"):
        shutil.copy(image, folder / image.name)
    return folder


def test_images_with_detection_file_give_loadable_coco_results(
    coco_bundle: TinyBundle, coco_dir: Path, coco_images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pycocotools.coco import COCO

    det = coco_dir / "test_coco_det_AP_H_56.json"
    out = tmp_path / "out"
    code = main(["infer", "--model", str(coco_bundle.path), "--input", str(coco_images), "--det", str(det),
                 "--out", str(out), "--batch", "8"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    dets = json.loads(det.read_text())
    assert len(results) == sum(d["score"] >= 0.3 and d["category_id"] == 1 for d in dets)
    assert all(len(r["keypoints"]) == 17 * 3 and 0 <= r["score"] <= 1 for r in results)
    gt = COCO(str(coco_dir / "test_coco.json"))
    loaded = gt.loadRes(str(out / "results.json"))
    assert len(loaded.getAnnIds()) == len(results)
    assert {p.name for p in out.glob("*.jpg")} == {p.name for p in coco_images.glob("*.jpg")}
    assert "instance(s) in 4 image(s)" in capsys.readouterr().out


def test_coco_mini_val_with_a_detection_file_gives_loadable_coco_results(
    coco_bundle: TinyBundle, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """coco_mini's val images with boxes in MMPose's detection-results format (as test_coco_det_AP_H_56.json)."""
    from pycocotools.coco import COCO

    root = shared_data / "coco_mini"
    ann = root / "annotations" / "person_keypoints_val2017.json"
    if not ann.is_file():
        pytest.skip(f"{root} lacks the COCO val annotations")
    gt = COCO(str(ann))
    rng = np.random.default_rng(0)
    dets = [
        {"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": float(rng.uniform(0.3, 1.0))}
        for a in gt.dataset["annotations"]
        if not a.get("iscrowd", 0) and a["bbox"][2] > 1 and a["bbox"][3] > 1
    ]
    det = tmp_path / "detections.json"
    det.write_text(json.dumps(dets))
    out = tmp_path / "out"
    code = main(["infer", "--model", str(coco_bundle.path), "--input", str(root / "val2017"), "--det", str(det),
                 "--out", str(out), "--batch", "16"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert len(results) == len(dets)
    assert {r["image_id"] for r in results} == {d["image_id"] for d in dets}
    loaded = gt.loadRes(str(out / "results.json"))
    assert len(loaded.getAnnIds()) == len(dets)


def test_images_with_onnx_detector(coco_bundle: TinyBundle, coco_images: Path, tmp_path: Path) -> None:
    det_module = _detector_module()
    detector = det_module.write_detector(tmp_path / "det.onnx")
    out = tmp_path / "out"
    code = main(["infer", "--model", str(coco_bundle.path), "--input", str(coco_images), "--detector",
                 str(detector), "--out", str(out), "--no-render", "--no-flip"])  # fmt: skip
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results) == 4  # one box of class 1 above 0.3 per image
    assert {r["image_id"] for r in results} == {785, 40083, 196141, 197388}
    assert not list(out.glob("*.jpg"))


def test_video_with_tracking(mouse_bundle: TinyBundle, shared_data: Path, tmp_path: Path) -> None:
    video = shared_data / "mirror_mouse" / "videos" / "test_vid.mp4"
    if not video.is_file():
        pytest.skip(f"{video} is absent")
    out = tmp_path / "out"
    code = main(["infer", "--model", str(mouse_bundle.path), "--input", str(video), "--out", str(out),
                 "--max-frames", "20"])  # fmt: skip
    assert code == 0
    doc = json.loads((out / "test_vid.json").read_text())
    assert doc["num_frames"] == 20 and len(doc["frames"]) == 20
    assert doc["keypoint_names"] == list(mouse_bundle.meta.keypoint_names)
    for i, frame in enumerate(doc["frames"]):
        assert frame["frame_index"] == i
        (inst,) = frame["instances"]  # the whole frame is one box
        assert inst["track_id"] == 0  # the same animal keeps its id
        assert len(inst["keypoints"]) == 17 and len(inst["keypoint_scores"]) == 17
        assert inst["bbox"] == [0, 0, doc["width"], doc["height"]]
    cap = cv2.VideoCapture(str(out / "test_vid.mp4"))
    try:
        frames = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames += 1
            assert frame.shape == (doc["height"], doc["width"], 3)
        assert frames == 20
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(doc["fps"], rel=1e-3)
    finally:
        cap.release()


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def test_bad_inputs_exit_2_naming_the_file(
    coco_bundle: TinyBundle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "000000000001.png"), np.zeros((30, 40, 3), np.uint8))
    out = str(tmp_path / "out")
    model = str(coco_bundle.path)

    code, err = _run(["infer", "--model", str(tmp_path / "missing"), "--input", str(images), "--out", out], capsys)
    assert code == 2 and "missing" in err and "does not exist" in err

    code, err = _run(["infer", "--model", str(images), "--input", str(images), "--out", out], capsys)
    assert code == 2 and "neither a bundle" in err

    broken = tmp_path / "broken"
    shutil.copytree(coco_bundle.path, broken)
    (broken / "model.onnx").write_bytes(b"garbage")
    code, err = _run(["infer", "--model", str(broken), "--input", str(images), "--out", out], capsys)
    assert code == 2 and f"cannot load the ONNX model {broken / 'model.onnx'}" in err

    det = tmp_path / "det.json"
    det.write_text(json.dumps([{"image_id": 2, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 1.0}]))
    code, err = _run(["infer", "--model", model, "--input", str(images), "--det", str(det), "--out", out], capsys)
    assert code == 2 and f"{det}: detection[0]: field 'image_id': image 2 is not among the input images" in err

    (images / "000000000003.jpg").write_bytes(b"not a jpeg")
    code, err = _run(["infer", "--model", model, "--input", str(images), "--out", out], capsys)
    assert code == 2 and "000000000003.jpg" in err and "cannot be decoded" in err

    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not a video")
    code, err = _run(["infer", "--model", model, "--input", str(video), "--out", out], capsys)
    assert code == 2 and str(video) in err

    code, err = _run(["infer", "--model", model, "--input", str(video), "--det", str(det), "--out", out], capsys)
    assert code == 2 and "--det and --images-json are for images" in err

    code, err = _run(["infer", "--model", model, "--input", str(tmp_path / "x.gif"), "--out", out], capsys)
    assert code == 2 and "x.gif does not exist" in err


# --------------------------------------------------------------------------- one-stage models


def _scene_folder(folder: Path) -> Path:
    from posecore.datasets.synthetic import image_rng, render_image

    folder.mkdir()
    for i, (w, h) in enumerate([(120, 90), (80, 100)], start=1):
        image, _ = render_image(image_rng(2, "val", i), w, h, 2, 3)
        cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


def test_a_one_stage_bundle_needs_no_boxes_and_refuses_them(
    onestage_bundle: TinyBundle, coco_bundle: TinyBundle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = _scene_folder(tmp_path / "images")
    model = str(onestage_bundle.path)
    code, _ = _run(["infer", "--model", model, "--input", str(images), "--out", str(tmp_path / "out")], capsys)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert code == 0 and {r["image_id"] for r in results} == {1, 2}

    det = tmp_path / "det.json"
    det.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 1.0}]))
    out = str(tmp_path / "refused")
    code, err = _run(["infer", "--model", model, "--input", str(images), "--det", str(det), "--out", out], capsys)
    assert code == 2 and "--det gives person boxes" in err and "one-stage model" in err and "finds the people" in err
    code, err = _run(["infer", "--model", model, "--input", str(images), "--detector", model, "--out", out], capsys)
    assert code == 2 and "--detector gives person boxes" in err
    assert not Path(out).exists(), "refused before anything ran"

    code, err = _run(["infer", "--model", str(coco_bundle.path), "--input", str(images), "--detector",
                      str(coco_bundle.path), "--out", out], capsys)  # fmt: skip
    assert code == 2 and "top-down pose model: it needs person boxes itself" in err


def test_a_one_stage_bundle_is_the_detector_of_a_top_down_bundle(
    onestage_bundle: TinyBundle, coco_bundle: TinyBundle, tmp_path: Path
) -> None:
    from posecore.datasets.coco import load_image
    from posecore.inference import BundleModel, OneStageDetector

    images = _scene_folder(tmp_path / "images")
    out = tmp_path / "out"
    code = main(["infer", "--model", str(coco_bundle.path), "--input", str(images), "--detector",
                 str(onestage_bundle.path), "--det-thr", "0.5", "--out", str(out), "--no-render"])  # fmt: skip
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    detector = OneStageDetector(BundleModel(onestage_bundle.path), score_thr=0.5)
    for i in (1, 2):
        dets = detector(load_image(images / f"{i}.png"))
        mine = [r for r in results if r["image_id"] == i]
        assert len(mine) == len(dets) > 0, "one top-down pose per person the one-stage model found"
        x, y, w, h = np.array([r["bbox"] for r in mine]).T
        np.testing.assert_allclose(np.stack([x, y, x + w, y + h], 1), dets.boxes, atol=2e-3)
        assert all(len(r["keypoints"]) == 17 * 3 for r in mine)
