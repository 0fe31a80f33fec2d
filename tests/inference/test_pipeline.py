"""Inference on images and videos: top-down (boxes -> crops -> keypoints mapped back to image pixels) and
one-stage (whole images -> every person), to COCO results and tracked video instances."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest

from posecore.inference.detection import Detections
from posecore.inference.info import ModelInfo
from posecore.inference.pipeline import (
    coco_results,
    find_inputs,
    infer_images,
    infer_video,
    instance_scores,
    predict_poses,
    render_poses,
)

INPUT_SIZE = (64, 96)


@dataclass
class FixedModel:
    """Returns the same crop-pixel keypoints for every crop (K = 3) and records the crops."""

    info: ModelInfo
    keypoints: np.ndarray
    crops: list[np.ndarray] = field(default_factory=list)

    def predict_crops(self, crops: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        self.crops.append(crops)
        n = len(crops)
        scores = np.tile(np.array([0.9, 0.5, 0.1], np.float32), (n, 1))
        return np.repeat(self.keypoints[None], n, 0).astype(np.float32), scores


def _info(use_udp: bool = False) -> ModelInfo:
    return ModelInfo(
        input_size=INPUT_SIZE,
        codec={"name": "udp_heatmap" if use_udp else "simcc"},
        keypoint_names=("a", "b", "c"),
        flip_indices=(0, 2, 1),
        skeleton=((0, 1), (1, 2)),
        use_udp=use_udp,
    )


@pytest.mark.parametrize("use_udp", [False, True])
def test_keypoints_map_back_through_the_inverse_crop(use_udp: bool) -> None:
    w, h = INPUT_SIZE
    # the crop's centre, top-left corner and right edge centre, in the crop's pixel convention
    if use_udp:
        crop_pts = np.array([[(w - 1) / 2, (h - 1) / 2], [0.0, 0.0], [w - 1, (h - 1) / 2]])
    else:
        crop_pts = np.array([[w / 2, h / 2], [0.0, 0.0], [w, h / 2]])
    model = FixedModel(_info(use_udp), crop_pts)
    boxes = np.array([[100.0, 50.0, 140.0, 170.0], [10.0, 10.0, 210.0, 60.0]])  # tall, then wide
    pred = predict_poses(model, np.zeros((300, 400, 3), np.uint8), Detections(boxes, np.array([1.0, 0.5])))
    for box, kp in zip(boxes, pred.keypoints, strict=True):
        centre = (box[:2] + box[2:]) / 2
        size = (box[2:] - box[:2]) * 1.25
        size = np.maximum(size, [size[1] * w / h, size[0] * h / w])  # aspect-fixed padded box
        np.testing.assert_allclose(kp[0], centre, atol=1e-9)
        np.testing.assert_allclose(kp[1], centre - size / 2, atol=1e-9)
        np.testing.assert_allclose(kp[2], centre + [size[0] / 2, 0], atol=1e-9)
    assert model.crops[0].shape == (2, 96, 64, 3)
    np.testing.assert_allclose(pred.scores, [1.0 * 0.7, 0.5 * 0.7])


def test_a_bright_spot_is_found_where_it_is() -> None:
    """End to end with a model that finds the brightest pixel of its crop."""

    @dataclass
    class Argmax:
        info: ModelInfo

        def predict_crops(self, crops: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
            gray = crops.astype(np.float32).sum(-1)
            idx = gray.reshape(len(crops), -1).argmax(-1)
            xy = np.stack([idx % crops.shape[2], idx // crops.shape[2]], -1).astype(np.float32)
            return np.repeat(xy[:, None], 3, 1), np.ones((len(crops), 3), np.float32)

    image = np.zeros((200, 300, 3), np.uint8)
    image[120, 75] = 255
    pred = predict_poses(Argmax(_info()), image, Detections(np.array([[40.0, 60.0, 120.0, 180.0]]), np.ones(1)))
    scale = 150 / 96  # image pixels per crop pixel
    assert np.abs(pred.keypoints[0, 0] - [75, 120]).max() <= scale


def test_instance_score_is_box_score_times_mean_confident_keypoint() -> None:
    ks = np.array([[0.9, 0.5, 0.1], [0.1, 0.2, 0.05]])
    np.testing.assert_allclose(instance_scores(np.array([0.8, 0.9]), ks), [0.8 * 0.7, 0.0])


def test_coco_results_records() -> None:
    model = FixedModel(_info(), np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    pred = predict_poses(model, np.zeros((50, 50, 3), np.uint8), Detections(np.array([[0.0, 0, 10, 20]]), np.ones(1)))
    (rec,) = coco_results(pred, image_id=7)
    assert rec["image_id"] == 7 and rec["category_id"] == 1 and len(rec["keypoints"]) == 9
    assert rec["keypoints"][2::3] == pytest.approx([0.9, 0.5, 0.1])
    assert rec["bbox"] == [0.0, 0.0, 10.0, 20.0] and rec["score"] == pytest.approx(0.7)


def test_infer_images_writes_results_ids_and_renders(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("b.png", "a.jpg"):
        cv2.imwrite(str(folder / name), np.full((40, 60, 3), 128, np.uint8))
    (folder / "notes.txt").write_text("not an image")
    kind, paths = find_inputs(folder)
    assert kind == "images" and [p.name for p in paths] == ["a.jpg", "b.png"]
    model = FixedModel(_info(), np.array([[32.0, 48.0], [10.0, 10.0], [50.0, 80.0]]))
    report = infer_images(model, paths, tmp_path / "out")
    results = json.loads(report.results.read_text())
    assert [r["image_id"] for r in results] == [1, 2]  # non-numeric stems: ids in file order
    images = json.loads((tmp_path / "out" / "images.json").read_text())["images"]
    assert images == [
        {"id": 1, "file_name": "a.jpg", "width": 60, "height": 40},
        {"id": 2, "file_name": "b.png", "width": 60, "height": 40},
    ]
    drawn = cv2.imread(str(tmp_path / "out" / "a.jpg"))
    assert drawn.shape == (40, 60, 3) and report.rendered == 2
    assert (drawn != 128).any()  # something was drawn
    with pytest.raises(ValueError, match="would overwrite the input"):
        infer_images(model, paths, folder)


def test_infer_images_reports_progress(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSECORE_PROGRESS_S", "0")
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal: lines, not a bar
    caplog.set_level(logging.INFO, logger="posecore.progress")
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(tmp_path / name), np.full((40, 60, 3), 128, np.uint8))
    model = FixedModel(_info(), np.array([[32.0, 48.0], [10.0, 10.0], [50.0, 80.0]]))
    infer_images(model, [tmp_path / "a.jpg", tmp_path / "b.jpg"], tmp_path / "out", render=False)
    lines = [r.getMessage() for r in caplog.records if r.name == "posecore.progress"]
    assert lines[0].startswith("infer: 1/2 img (50.0%)") and lines[0].endswith("instances=1")
    assert lines[-1].startswith("infer: 2/2 img (100.0%)") and "instances=2 | done in" in lines[-1]


def test_render_marks_track_ids() -> None:
    model = FixedModel(_info(), np.array([[32.0, 48.0], [10.0, 10.0], [50.0, 80.0]]))
    image = np.zeros((120, 160, 3), np.uint8)
    pred = predict_poses(model, image, Detections(np.array([[20.0, 20.0, 80.0, 100.0]]), np.ones(1)))
    plain = render_poses(image, pred, model)
    from dataclasses import replace

    tracked = render_poses(image, replace(pred, track_ids=np.array([3])), model)
    assert (plain != image).any() and (tracked != plain).any()


def test_find_inputs_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="holds no images"):
        find_inputs(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_inputs(tmp_path / "nope.jpg")
    (tmp_path / "x.csv").write_text("")
    with pytest.raises(ValueError, match="unknown file type '.csv'"):
        find_inputs(tmp_path / "x.csv")


# --------------------------------------------------------------------------- one-stage models


def _people_images(folder: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    """Synthetic scenes (W x H) with 1-3 people each, written as PNGs named by their index."""
    from posecore.datasets.synthetic import image_rng, render_image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (w, h) in enumerate(sizes):
        image, _ = render_image(image_rng(0, "val", i), w, h, 1, 3)
        paths.append(folder / f"{i + 1}.png")
        cv2.imwrite(str(paths[-1]), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return paths


def test_a_one_stage_bundle_poses_a_folder_without_boxes(onestage_bundle, tmp_path: Path) -> None:  # noqa: ANN001
    from posecore.datasets.coco import load_image
    from posecore.inference.runtime import BundleModel

    model = BundleModel(onestage_bundle.path)
    paths = _people_images(tmp_path / "in", [(96, 128), (160, 90), (64, 64)])
    report = infer_images(model, paths, tmp_path / "out")
    results = json.loads(report.results.read_text())
    assert report.images == 3 and report.rendered == 3 and report.instances == len(results) > 0
    for i, path in enumerate(paths, start=1):
        expected = model.predict_images([load_image(path)])[0]
        mine = [r for r in results if r["image_id"] == i]
        assert len(mine) == len(expected)
        np.testing.assert_allclose([r["score"] for r in mine], expected.scores, atol=1e-6)
        x, y, w, h = np.array([r["bbox"] for r in mine]).T
        np.testing.assert_allclose(np.stack([x, y, x + w, y + h], 1), expected.boxes, atol=2e-3)
        kp = np.array([r["keypoints"] for r in mine]).reshape(len(mine), 17, 3)
        np.testing.assert_allclose(kp[..., :2], expected.keypoints, atol=2e-3)
    assert (tmp_path / "out" / "1.png").is_file()


def test_a_one_stage_model_takes_no_boxes(onestage_bundle, tmp_path: Path) -> None:  # noqa: ANN001
    from posecore.inference.runtime import BundleModel

    model = BundleModel(onestage_bundle.path)
    paths = _people_images(tmp_path / "in", [(64, 64)])
    with pytest.raises(ValueError, match="one-stage: it finds the people"):
        infer_images(model, paths, tmp_path / "out", boxes=lambda p, image: Detections.empty())
    with pytest.raises(ValueError, match="one-stage: it finds the people"):
        infer_video(model, tmp_path / "missing.mp4", tmp_path / "out", detector=lambda frame: Detections.empty())


def test_a_one_stage_bundle_tracks_the_people_of_a_video(onestage_bundle, tmp_path: Path) -> None:  # noqa: ANN001
    from posecore.datasets.synthetic import image_rng, render_image
    from posecore.inference.runtime import BundleModel

    scene, _ = render_image(image_rng(1, "val", 0), 96, 80, 2, 2)
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (96, 80))
    assert writer.isOpened()
    for t in range(6):  # the scene drifting right by a pixel a frame
        writer.write(cv2.cvtColor(np.roll(scene, t, axis=1), cv2.COLOR_RGB2BGR))
    writer.release()
    report = infer_video(BundleModel(onestage_bundle.path), video, tmp_path / "out", max_frames=5)
    doc = json.loads(report.json.read_text())
    assert report.frames == doc["num_frames"] == 5 and (doc["width"], doc["height"]) == (96, 80)
    first = doc["frames"][0]["instances"]
    assert first and len({inst["track_id"] for inst in first}) == len(first), "one id per person in a frame"
    for frame in doc["frames"]:
        for inst in frame["instances"]:
            assert isinstance(inst["track_id"], int) and len(inst["keypoints"]) == 17
            assert inst["score"] == pytest.approx(inst["bbox_score"])
    assert report.instances == sum(len(f["instances"]) for f in doc["frames"])
    assert report.tracks < report.instances, "people keep their ids from frame to frame"
    assert report.video is not None and report.video.is_file()
