"""Box sources: COCO detection files matched to images, the ONNX detector interface, the whole image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from posecore.inference.detection import DetectionFile, OnnxDetector, image_key, match_image_ids, whole_image
from posecore.validation import DataValidationError

# Fixed output of the test detector, in the pixels of its 100 x 80 (W x H) input.
BOXES = np.array([[10.0, 20.0, 50.0, 70.0], [60.0, 5.0, 90.0, 40.0], [0.0, 0.0, 5.0, 5.0]], np.float32)
SCORES = np.array([0.9, 0.6, 0.1], np.float32)
LABELS = np.array([1, 2, 1], np.int64)


def write_detector(path: Path, size: tuple[int, int] | None = (100, 80), labels: bool = True) -> Path:
    """A detector per the interface that returns BOXES / SCORES (/ LABELS) whatever the image.

    ``size`` (W, H) makes the input static (the runtime resizes to it); None makes it dynamic.
    """
    w, h = size if size is not None else ("W", "H")
    image = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, h, w])
    outputs = [
        helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [3, 4]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [3]),
    ]
    nodes = [
        # scores = SCORES + 0 * mean(image): uses the input, as a real detector would
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["raw_scores", "nothing"], ["scores"]),
        helper.make_node("Identity", ["raw_boxes"], ["boxes"]),
    ]
    inits = [
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("raw_scores", TensorProto.FLOAT, [3], SCORES.tolist()),
        helper.make_tensor("raw_boxes", TensorProto.FLOAT, [3, 4], BOXES.reshape(-1).tolist()),
    ]
    if labels:
        outputs.append(helper.make_tensor_value_info("labels", TensorProto.INT64, [3]))
        nodes.append(helper.make_node("Identity", ["raw_labels"], ["labels"]))
        inits.append(helper.make_tensor("raw_labels", TensorProto.INT64, [3], LABELS.tolist()))
    graph = helper.make_graph(nodes, "fixed_boxes", [image], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_onnx_detector_scales_boxes_back_and_filters(tmp_path: Path) -> None:
    det = OnnxDetector(write_detector(tmp_path / "det.onnx"), score_thr=0.3, category=1)
    image = np.zeros((160, 300, 3), np.uint8)  # 3x the detector's width, 2x its height
    out = det(image)
    np.testing.assert_allclose(out.boxes, BOXES[:1] * [3, 2, 3, 2])
    np.testing.assert_allclose(out.scores, SCORES[:1])
    every_class = OnnxDetector(tmp_path / "det.onnx", score_thr=0.05)(image)
    assert len(every_class) == 3


def test_onnx_detector_with_dynamic_input_and_no_labels(tmp_path: Path) -> None:
    det = OnnxDetector(write_detector(tmp_path / "dyn.onnx", size=None, labels=False), score_thr=0.5)
    out = det(np.zeros((33, 47, 3), np.uint8))
    np.testing.assert_allclose(out.boxes, BOXES[:2])


def test_broken_detector_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="cannot load the detector .*junk.onnx"):
        OnnxDetector(tmp_path / "junk.onnx")
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        OnnxDetector(tmp_path / "missing.onnx")


def _dets(path: Path, records: list[dict]) -> Path:
    path.write_text(json.dumps(records))
    return path


def test_detection_file_matches_images_by_stem(tmp_path: Path) -> None:
    images = [tmp_path / "000000000785.jpg", tmp_path / "frame_a.png"]
    det = _dets(
        tmp_path / "det.json",
        [
            {"image_id": 785, "category_id": 1, "bbox": [10, 20, 30, 40], "score": 0.9},
            {"image_id": 785, "category_id": 2, "bbox": [0, 0, 5, 5], "score": 0.9},  # another class
            {"image_id": 785, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.1},  # below threshold
            {"image_id": "frame_a", "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5},
        ],
    )
    source = DetectionFile(det, images, score_thr=0.3)
    np.testing.assert_allclose(source(images[0]).boxes, [[10, 20, 40, 60]])
    np.testing.assert_allclose(source(images[1]).boxes, [[1, 2, 4, 6]])
    assert source.image_id(images[0]) == 785 and image_key(images[1]) == "frame_a"


def test_detection_file_matches_images_by_image_list(tmp_path: Path) -> None:
    images = [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    listing = tmp_path / "ann.json"
    listing.write_text(json.dumps({"images": [{"id": 7, "file_name": "x/a.jpg"}, {"id": 8, "file_name": "b.jpg"}]}))
    det = _dets(tmp_path / "det.json", [{"image_id": 8, "category_id": 1, "bbox": [1, 1, 2, 2], "score": 1.0}])
    source = DetectionFile(det, images, image_list=listing)
    assert len(source(images[0])) == 0 and len(source(images[1])) == 1
    assert match_image_ids(images, listing) == {str(images[0]): 7, str(images[1]): 8}
    with pytest.raises(DataValidationError, match="no entry for input image c.jpg"):
        match_image_ids([tmp_path / "c.jpg"], listing)


def test_bad_detection_records_name_file_record_and_field(tmp_path: Path) -> None:
    images = [tmp_path / "000000000785.jpg"]
    det = _dets(
        tmp_path / "det.json",
        [
            {"image_id": 785, "category_id": 1, "bbox": [10, 20, 30, 40], "score": 0.9},
            {"image_id": 999, "category_id": 1, "bbox": [10, 20, 30, 40], "score": 0.9},
            {"image_id": 785, "category_id": 1, "bbox": [10, 20, -3, 40], "score": 0.9},
            {"image_id": 785, "category_id": 1, "bbox": [10, 20, 3, 40]},
        ],
    )
    with pytest.raises(DataValidationError) as exc:
        DetectionFile(det, images)
    text = str(exc.value)
    assert f"{det}: detection[1]: field 'image_id': image 999 is not among the input images" in text
    assert f"{det}: detection[2]: field 'bbox'" in text
    assert f"{det}: detection[3]: field 'score': is missing" in text
    with pytest.raises(DataValidationError, match=r"detection\[2\]: field 'bbox'"):
        DetectionFile(det, images, allow_extra=True)  # other images' records skipped; bad ones still fail
    det.write_text(json.dumps(json.loads(det.read_text())[:2]))
    source = DetectionFile(det, images, allow_extra=True)
    assert len(source(images[0])) == 1
    (tmp_path / "notjson.json").write_text("{")
    with pytest.raises(DataValidationError, match="not valid JSON"):
        DetectionFile(tmp_path / "notjson.json", images)


def test_whole_image_box() -> None:
    d = whole_image(np.zeros((40, 30, 3), np.uint8))
    np.testing.assert_array_equal(d.boxes, [[0, 0, 30, 40]])
    np.testing.assert_array_equal(d.scores, [1])


# --------------------------------------------------------------------------- a one-stage model as the detector


class _People:
    """A stand-in one-stage model: the same three people in every image."""

    def __init__(self, task: str = "onestage") -> None:
        from posecore.inference.info import ModelInfo

        self.info = ModelInfo((64, 64), {"name": "yoloxpose"}, ("a",), (0,), task=task)
        self.calls = 0

    def predict_images(self, images, batch_size: int = 8):  # noqa: ANN001, ANN201
        from posecore.codecs.base import Poses

        self.calls += 1
        boxes = np.array([[1.0, 2.0, 30.0, 40.0], [5.0, 5.0, 9.0, 9.0], [50.0, 0.0, 60.0, 20.0]], np.float32)
        scores = np.array([0.8, 0.5, 0.2], np.float32)
        return [Poses(boxes, scores, np.zeros((3, 1, 2), np.float32), np.ones((3, 1), np.float32)) for _ in images]


def test_a_one_stage_model_detects_people_above_the_threshold() -> None:
    from posecore.inference.detection import OneStageDetector

    model = _People()
    dets = OneStageDetector(model, score_thr=0.4)(np.zeros((40, 60, 3), np.uint8))
    assert model.calls == 1 and dets.boxes.dtype == np.float64
    np.testing.assert_array_equal(dets.boxes, [[1.0, 2.0, 30.0, 40.0], [5.0, 5.0, 9.0, 9.0]])
    np.testing.assert_allclose(dets.scores, [0.8, 0.5])
    assert len(OneStageDetector(model, score_thr=0.9)(np.zeros((4, 4, 3), np.uint8))) == 0


def test_a_top_down_model_cannot_be_the_detector(tmp_path: Path) -> None:
    from posecore.inference.detection import OneStageDetector, load_detector

    with pytest.raises(ValueError, match="top-down pose model: it needs person boxes itself"):
        OneStageDetector(_People(task="topdown"), source="x")
    detector = load_detector(write_detector(tmp_path / "det.onnx"), 0.3, category=1)
    assert isinstance(detector, OnnxDetector), "a file is an ONNX detector"


def test_a_one_stage_detector_skips_the_flip_test(onestage_bundle, tmp_path: Path) -> None:  # noqa: ANN001
    import dataclasses
    import shutil

    from posecore.export.bundle import BundleInfo
    from posecore.inference.detection import OneStageDetector, load_detector
    from posecore.inference.runtime import BundleModel

    folder = tmp_path / "bundle"
    shutil.copytree(onestage_bundle.path, folder)
    dataclasses.replace(BundleInfo.read(folder), flip_test=True).write(folder)
    assert BundleModel(folder).flip_test, "the bundle flip-tests its heatmaps"
    detector = load_detector(folder, 0.3)
    assert isinstance(detector, OneStageDetector)
    assert not detector.model.flip_test, "boxes only: flipping the keypoint heatmaps would be wasted work"
