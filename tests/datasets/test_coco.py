"""The canonical-dataset reader: MMPose 1.x filtering, box clipping, bottom-up stacking, detection files."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from posecore.datasets.coco import CocoPoseDataset, PoseImage, PoseInstance, load_image, xywh_to_xyxy_clipped
from posecore.metainfo import resolve_meta_path
from posecore.validation import DataValidationError

K = 17


def _kps(*labelled: tuple[int, float, float, int]) -> list[float]:
    """A flat COCO keypoint list with the given (index, x, y, v) set and the rest zero."""
    flat = [0.0] * (3 * K)
    for k, x, y, v in labelled:
        flat[3 * k : 3 * k + 3] = [x, y, v]
    return flat


def _ann(aid: int, image_id: int, bbox: list[float], kps: list[float], **extra: object) -> dict[str, object]:
    n = sum(1 for v in kps[2::3] if v > 0)
    return {
        "id": aid,
        "image_id": image_id,
        "bbox": bbox,
        "keypoints": kps,
        "num_keypoints": n,
        "area": bbox[2] * bbox[3],
        "iscrowd": 0,
        "category_id": 1,
        **extra,
    }


GOOD = _kps((0, 20, 30, 2), (5, 25, 40, 1), (6, 35, 40, 2))

# image 1 is 100 x 80, images 2 and 3 are 64 x 48
ANNOTATIONS = [
    _ann(1, 1, [10, 20, 30, 40], GOOD),  # kept as is
    _ann(2, 1, [10, 20, 30, 40], GOOD, iscrowd=1),  # crowd
    _ann(3, 1, [10, 20, 30, 40], _kps()),  # all-zero keypoints
    _ann(4, 1, [-10, 50, 130, 50], GOOD),  # out of the image: clipped to [0, 50, 99, 79]
    _ann(5, 1, [120, 10, 20, 20], GOOD),  # right of the image: x1 = x2 = 99 after clipping
    _ann(6, 1, [10, 10, 0, 20], GOOD),  # zero width
    _ann(7, 1, [10, 20, 30, 40], _kps((0, 20, 30, 0), (1, 22, 31, 0))),  # coordinates but no labelled point
    _ann(10, 2, [5, 5, 20, 20], GOOD, iscrowd=1),  # image 2's only person is a crowd
    _ann(8, 3, [1.5, 2.25, 10.5, 20.0], _kps((3, 5, 6, 2))),  # fractional, one keypoint
    _ann(9, 3, [50.5, 40, 30, 30], GOOD),  # clipped to [50.5, 40, 63, 47]
]


def write_dataset(root: Path, annotations: list[dict[str, object]] = ANNOTATIONS) -> Path:
    """A canonical dataset folder: annotations/train.json, images/train/*.png, meta.yaml (coco)."""
    images = [
        {"id": 1, "file_name": "train/a.png", "width": 100, "height": 80},
        {"id": 2, "file_name": "train/b.png", "width": 64, "height": 48},
        {"id": 3, "file_name": "train/c.png", "width": 64, "height": 48},
    ]
    for img in images:
        path = root / "images" / img["file_name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.full((img["height"], img["width"], 3), 90, np.uint8))
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    doc = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "person"}]}
    (root / "annotations" / "train.json").write_text(json.dumps(doc))
    shutil.copyfile(resolve_meta_path("coco"), root / "meta.yaml")
    return root


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "ds")


def test_topdown_keeps_exactly_the_valid_people(dataset_dir: Path) -> None:
    ds = CocoPoseDataset(dataset_dir)
    assert [inst.ann_id for inst in ds.instances] == [1, 4, 8, 9]
    assert len(ds) == 4 and all(isinstance(ds[i], PoseInstance) for i in range(len(ds)))
    assert ds.stats().dropped == {"crowd": 2, "degenerate_bbox": 2, "no_keypoints": 2}


def test_boxes_are_xyxy_clipped_like_mmpose(dataset_dir: Path) -> None:
    boxes = {inst.ann_id: inst.bbox for inst in CocoPoseDataset(dataset_dir).instances}
    np.testing.assert_array_equal(boxes[1], [10, 20, 40, 60])
    np.testing.assert_array_equal(boxes[4], [0, 50, 99, 79])
    np.testing.assert_array_equal(boxes[8], [1.5, 2.25, 12.0, 22.25])
    np.testing.assert_array_equal(boxes[9], [50.5, 40, 63, 47])
    assert all(b.dtype == np.float32 and b.shape == (4,) for b in boxes.values())
    np.testing.assert_array_equal(xywh_to_xyxy_clipped([120, 10, 20, 20], 100, 80), [99, 10, 99, 30])


def test_instance_fields(dataset_dir: Path) -> None:
    first = CocoPoseDataset(dataset_dir)[0]
    assert isinstance(first, PoseInstance)
    assert first.image_path == dataset_dir / "images" / "train" / "a.png"
    assert (first.image_id, first.image_width, first.image_height) == (1, 100, 80)
    assert first.keypoints.shape == (K, 2) and first.keypoints.dtype == np.float32
    np.testing.assert_array_equal(first.keypoints[[0, 5, 6]], [[20, 30], [25, 40], [35, 40]])
    # MMPose: visible = min(1, v), so v = 1 (labelled, occluded) and v = 2 both become 1
    expected = np.zeros(K, np.float32)
    expected[[0, 5, 6]] = 1
    np.testing.assert_array_equal(first.keypoints_visible, expected)
    assert (first.num_keypoints, first.area, first.bbox_score, first.category_id) == (3, 1200.0, 1.0, 1)


def test_min_keypoints(dataset_dir: Path) -> None:
    ds = CocoPoseDataset(dataset_dir, min_keypoints=2)
    assert [inst.ann_id for inst in ds.instances] == [1, 4, 9]
    assert ds.stats().dropped["few_keypoints"] == 1


def test_bottomup_stacks_people_and_skips_empty_images(dataset_dir: Path) -> None:
    ds = CocoPoseDataset(dataset_dir, mode="bottomup")
    assert len(ds) == 2
    first = ds[0]
    assert isinstance(first, PoseImage)
    assert first.image_id == 1 and first.num_instances == 2
    np.testing.assert_array_equal(first.ann_ids, [1, 4])
    assert first.keypoints.shape == (2, K, 2) and first.keypoints_visible.shape == (2, K)
    np.testing.assert_array_equal(first.bboxes, [[10, 20, 40, 60], [0, 50, 99, 79]])
    assert ds.images[1].image_id == 3
    assert ds.stats().dropped["empty_images"] == 1


def test_bottomup_test_mode_keeps_every_image(dataset_dir: Path) -> None:
    ds = CocoPoseDataset(dataset_dir, mode="bottomup", test_mode=True)
    assert [img.image_id for img in ds.images] == [1, 2, 3]
    empty = ds.images[1]
    assert empty.num_instances == 0
    assert empty.keypoints.shape == (0, K, 2) and empty.bboxes.shape == (0, 4)


def test_bottomup_images_carry_their_crowd_regions(dataset_dir: Path) -> None:
    """Crowd annotations are no people, but a one-stage model must know where they are."""
    ds = CocoPoseDataset(dataset_dir, mode="bottomup", test_mode=True)
    crowd = {img.image_id: img.crowd_boxes for img in ds.images}
    np.testing.assert_array_equal(crowd[1], [[10, 20, 40, 60]])
    np.testing.assert_array_equal(crowd[2], [[5, 5, 25, 25]])  # kept though nobody else is there
    assert crowd[3].shape == (0, 4) and crowd[3].dtype == np.float32
    assert ds.images[1].num_instances == 0
    assert ds.stats().dropped["crowd"] == 2  # still dropped as people, and counted
    assert [inst.ann_id for inst in CocoPoseDataset(dataset_dir).instances] == [1, 4, 8, 9]


def test_keypoint_count_must_match_meta(tmp_path: Path) -> None:
    bad = [_ann(1, 1, [10, 20, 30, 40], [1.0, 2.0, 2] * 5)]
    with pytest.raises(DataValidationError, match=r"annotation id=1: field 'keypoints'.*5 keypoints.*17"):
        CocoPoseDataset(write_dataset(tmp_path / "ds", bad))


def test_missing_split_names_the_known_ones(dataset_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match="splits found .*: train"):
        CocoPoseDataset(dataset_dir, split="val")


def _write_dets(path: Path, dets: object) -> Path:
    path.write_text(json.dumps(dets))
    return path


def test_detection_boxes_replace_the_ground_truth(dataset_dir: Path, tmp_path: Path) -> None:
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 20], "score": 0.9},
        {"image_id": 1, "category_id": 2, "bbox": [1, 2, 10, 20], "score": 0.9},  # not a person
        {"image_id": 3, "category_id": 1, "bbox": [-5, 0, 100, 10], "score": 0.2},  # below the threshold
        {"image_id": 3, "category_id": 1, "bbox": [3, 4, 5, 6], "score": 0.5},
    ]
    ds = CocoPoseDataset(dataset_dir, det_file=_write_dets(tmp_path / "det.json", dets), det_score_thr=0.5)
    assert len(ds) == 2
    first, second = ds.instances
    np.testing.assert_array_equal(first.bbox, [1, 2, 11, 22])  # xyxy, not clipped (MMPose)
    assert (first.bbox_score, first.image_id, first.ann_id) == (pytest.approx(0.9), 1, 0)
    assert (second.image_id, second.ann_id, second.num_keypoints) == (3, 2, 0)
    assert not second.keypoints.any() and not second.keypoints_visible.any()
    assert ds.stats().dropped == {"below_score_thr": 1, "not_person": 1}


@pytest.mark.parametrize(
    ("dets", "expected"),
    [
        ({"image_id": 1}, r"det.json: file: field '-': must be a JSON list"),
        (
            [{"image_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}],
            r"det.json: detection\[0\]: field 'category_id': is missing",
        ),
        (
            [
                {"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 1},
                {"image_id": 77, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 1},
            ],
            r"det.json: detection\[1\]: field 'image_id': image 77 is not in split 'train'",
        ),
        ([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5], "score": 1}], r"detection\[0\]: field 'bbox'"),
        ([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": "high"}], r"detection\[0\]: field 'score'"),
    ],
)
def test_bad_detection_file(dataset_dir: Path, tmp_path: Path, dets: object, expected: str) -> None:
    with pytest.raises(DataValidationError, match=expected):
        CocoPoseDataset(dataset_dir, det_file=_write_dets(tmp_path / "det.json", dets))


def test_detections_need_topdown(dataset_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="only supported in 'topdown'"):
        CocoPoseDataset(dataset_dir, mode="bottomup", det_file=_write_dets(tmp_path / "det.json", []))


def test_load_image_is_rgb(tmp_path: Path) -> None:
    bgr = np.zeros((4, 6, 3), np.uint8)
    bgr[..., 2] = 255  # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    rgb = load_image(tmp_path / "red.png")
    assert rgb.shape == (4, 6, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [255, 0, 0]


def test_load_image_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(DataValidationError, match=r"broken.jpg: image: field 'file': cannot be decoded"):
        load_image(tmp_path / "broken.jpg")


# ---- real data: MMPose's own COCO test fixture ----


@pytest.fixture(scope="module")
def mmpose_coco(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from posecore.datasets.converters import SourceSpec, convert

    out = tmp_path_factory.mktemp("mmpose_coco") / "ds"
    spec = SourceSpec(
        source="coco",
        meta="coco",
        root=str(shared_data / "mmpose_samples" / "coco"),
        annotations={"all": "test_coco.json"},
        images={"all": "."},
        val_fraction=0.0,
    )
    convert(spec, out)
    return out


@pytest.mark.real_data
def test_mmpose_sample_ground_truth(mmpose_coco: Path) -> None:
    ds = CocoPoseDataset(mmpose_coco, mode="bottomup")
    # 14 annotations; 1202706 and 508900 have num_keypoints 0
    assert {img.image_id: img.num_instances for img in ds.images} == {785: 1, 40083: 2, 196141: 4, 197388: 5}
    assert len(CocoPoseDataset(mmpose_coco).instances) == 12
    first = ds.images[0].bboxes[0]  # ann 442619: [280.79, 44.73, 218.7, 346.68] inside 640 x 425
    np.testing.assert_allclose(first, [280.79, 44.73, 280.79 + 218.7, 44.73 + 346.68], rtol=1e-6)
    img = load_image(ds.images[0].image_path)
    assert img.shape == (425, 640, 3)


@pytest.mark.real_data
@pytest.mark.parametrize(
    ("thr", "per_image"),
    [
        (0.0, {197388: 37, 196141: 33, 40083: 26, 785: 22}),
        (0.3, {196141: 13, 197388: 10, 40083: 8, 785: 2}),
        (0.9, {197388: 5, 196141: 5, 40083: 3, 785: 1}),
    ],
)
def test_mmpose_sample_detections(mmpose_coco: Path, shared_data: Path, thr: float, per_image: dict[int, int]) -> None:
    det_file = shared_data / "mmpose_samples" / "coco" / "test_coco_det_AP_H_56.json"
    ds = CocoPoseDataset(mmpose_coco, det_file=det_file, det_score_thr=thr)
    assert Counter(inst.image_id for inst in ds.instances) == per_image
    assert all(inst.bbox_score >= thr for inst in ds.instances)
    first = ds.instances[0]  # the file's first record: image 785, score 0.99997
    np.testing.assert_allclose(first.bbox, [277.1183, 45.6997, 277.1183 + 225.0913, 45.6997 + 333.5603], atol=1e-3)
