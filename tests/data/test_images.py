"""One-stage training batches from the whole-image cache: shapes, keyed augmentation, flips, validity."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from onestage_data import INPUT, SPEC, write_dataset

from posecore.codecs import build_codec
from posecore.data.build import build_cache
from posecore.data.cache import open_cache
from posecore.data.images import CachedImageData, ImageSplit
from posecore.metainfo import load_meta
from posecore.transforms import Normalize, image_train_pipeline
from posecore.transforms.topdown import TopdownAugmentation

K = 17
#: no geometric randomness: the stored image is scaled straight into the input
STILL = TopdownAugmentation(flip_prob=0.0, shift_prob=0.0, scale_factor=(1.0, 1.0), rotate_prob=0.0)


def _codec():  # noqa: ANN202
    return build_codec("yoloxpose", input_size=INPUT)


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> ImageSplit:
    root = tmp_path_factory.mktemp("images")
    dataset = write_dataset(root / "dataset")
    build_cache(dataset, root / "cache", SPEC, _codec())
    return open_cache(root / "cache")["train"]


def _data(split: ImageSplit, aug: TopdownAugmentation = TopdownAugmentation(), seed: int = 0) -> CachedImageData:  # noqa: B008
    return CachedImageData(split, image_train_pipeline(load_meta("coco"), _codec(), aug), seed=seed)


def _row(split: ImageSplit, image_id: int) -> int:
    return int(np.flatnonzero(split.image_id == image_id)[0])


def test_batch_shapes_and_dtypes(split: ImageSplit) -> None:
    data = _data(split, replace(TopdownAugmentation(), photometric=True))
    assert data.num_samples == 5
    batch = data.batch(list(range(5)), epoch=0)
    w, h = INPUT
    assert batch["inputs"].shape == (5, 3, h, w) and batch["inputs"].dtype == torch.uint8
    assert batch["keys"].tolist() == [0, 1, 2, 3, 4] and batch["keys"].dtype == torch.int64
    t = batch["targets"]
    n, m = 2, 1  # the most people of an image (image 1) and crowd regions
    shapes = {
        "boxes": (5, n, 4),
        "keypoints": (5, n, K, 2),
        "visible": (5, n, K),
        "areas": (5, n),
        "valid": (5, n),
        "ignore_boxes": (5, m, 4),
        "ignore_valid": (5, m),
    }
    for name, shape in shapes.items():
        assert tuple(t[name].shape) == shape, name
        assert t[name].dtype == (torch.bool if "valid" in name else torch.float32), name
    assert set(t["visible"].unique().tolist()) <= {0.0, 1.0}
    # the trainer's device-side preprocess takes the uint8 batch as it is
    assert Normalize().inputs(batch)["inputs"].dtype == torch.float32


def test_people_crowd_and_empty_images_without_augmentation(split: ImageSplit) -> None:
    rows = [_row(split, i) for i in (1, 2, 4)]  # two people + crowd; 1x1 and empty; only crowd
    batch = _data(split, STILL).batch(rows, epoch=0)
    t = batch["targets"]
    assert t["valid"].tolist() == [[True, True], [False, False], [False, False]]
    assert t["ignore_valid"].tolist() == [[True], [False], [True]]
    # train images are stored at 1.5x the input: the warp into the input is a plain 1/1.5 scale
    stored = split.people(rows[0])
    scale = torch.tensor(1 / 1.5)
    expected = torch.from_numpy(stored["bbox"][:2]) * scale
    assert torch.allclose(t["boxes"][0], expected, atol=1e-3)
    assert torch.allclose(
        t["areas"][0], (expected[:, 2] - expected[:, 0]) * (expected[:, 3] - expected[:, 1]), atol=1e-2
    )
    assert torch.allclose(t["ignore_boxes"][0, 0], torch.from_numpy(stored["bbox"][2]) * scale, atol=1e-3)
    kp = torch.from_numpy(stored["keypoints"][:2]) * scale
    shown = t["visible"][0] > 0
    assert torch.allclose(t["keypoints"][0][shown], kp[shown], atol=1e-3)
    assert (t["visible"][1:] == 0).all() and (t["boxes"][1:] == 0).all()


def test_augmentation_is_keyed_by_seed_epoch_and_sample(split: ImageSplit) -> None:
    data = _data(split, replace(TopdownAugmentation(), photometric=True), seed=5)
    whole = data.batch([0, 1, 2, 3, 4], epoch=3)
    again = data.batch([0, 1, 2, 3, 4], epoch=3)
    alone = data.batch([3, 0], epoch=3)
    assert torch.equal(whole["inputs"], again["inputs"])
    for row, index in enumerate([3, 0]):
        assert torch.equal(alone["inputs"][row], whole["inputs"][index])
        n = int(alone["targets"]["valid"].shape[1])
        for name in ("boxes", "keypoints", "visible", "valid"):
            assert torch.equal(alone["targets"][name][row], whole["targets"][name][index][:n]), name
    assert not torch.equal(data.batch([0, 1], epoch=4)["inputs"], whole["inputs"][:2])
    assert not torch.equal(_data(split, seed=6).batch([0, 1], epoch=3)["inputs"], whole["inputs"][:2])


def test_flip_mirrors_and_swaps_left_and_right(split: ImageSplit) -> None:
    meta = load_meta("coco")
    rows = [_row(split, 1), _row(split, 3)]
    plain = _data(split, STILL).batch(rows, epoch=0)
    flipped = _data(split, replace(STILL, flip_prob=1.0)).batch(rows, epoch=0)
    w = INPUT[0]
    s = 1 / 1.5  # stored -> input; the mirror x -> Ws - 1 - x becomes x -> w - s - x
    flip = list(meta.flip_indices)
    a, b = plain["targets"], flipped["targets"]
    assert torch.equal(a["valid"], b["valid"])
    assert torch.equal(b["visible"], a["visible"][:, :, flip])
    shown = b["visible"] > 0
    mirrored = a["keypoints"][:, :, flip].clone()
    mirrored[..., 0] = w - s - mirrored[..., 0]
    assert torch.allclose(b["keypoints"][shown], mirrored[shown], atol=1e-3)
    # image 1, person 1: the new left shoulder is the mirrored right one, and the other way round
    left, right = meta.keypoint_names.index("left_shoulder"), meta.keypoint_names.index("right_shoulder")
    assert b["keypoints"][0, 0, left, 0] == pytest.approx(w - s - float(a["keypoints"][0, 0, right, 0]), abs=1e-3)
    assert b["keypoints"][0, 0, right, 0] == pytest.approx(w - s - float(a["keypoints"][0, 0, left, 0]), abs=1e-3)
    valid = a["valid"]
    boxes = a["boxes"][valid]
    assert torch.allclose(b["boxes"][valid][:, [2, 0]], w - s - boxes[:, [0, 2]], atol=1e-3)
    # the pixels are mirrored too (bilinear resampling of the same stored pixels, mirrored)
    diff = (flipped["inputs"].float() - plain["inputs"].float().flip(-1)).abs()
    assert diff[..., 2:-2].mean() < 8


def test_people_pushed_out_of_the_input_become_invalid(split: ImageSplit) -> None:
    far = TopdownAugmentation(flip_prob=0.5, shift_prob=1.0, shift_factor=0.9, rotate_prob=0.0)
    data = _data(split, far)
    rows = [_row(split, 1), _row(split, 3)]
    w, h = INPUT
    invalid = 0
    for epoch in range(12):
        t = data.batch(rows, epoch)["targets"]
        boxes, valid = t["boxes"], t["valid"]
        assert (boxes[..., [0, 2]] >= 0).all() and (boxes[..., [0, 2]] <= w).all()
        assert (boxes[..., [1, 3]] >= 0).all() and (boxes[..., [1, 3]] <= h).all()
        side = boxes[..., 2:] - boxes[..., :2]
        assert ((side[valid] >= 2).all(-1)).all()
        assert (t["visible"][~valid] == 0).all() and (t["areas"][~valid] == 0).all()
        assert torch.allclose(t["areas"], side[..., 0] * side[..., 1])
        kp = t["keypoints"][t["visible"] > 0]
        assert ((kp >= 0) & (kp <= torch.tensor([w, h]))).all(), "visible keypoints lie inside the input"
        invalid += int((~valid[0]).sum()) + int((~valid[1, :1]).sum())
    assert invalid > 0, "a 0.9 shift pushes somebody out in a dozen epochs"


def test_empty_index_list_is_an_error(split: ImageSplit) -> None:
    with pytest.raises(ValueError, match="at least one index"):
        _data(split).batch([], epoch=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_batches_match_cpu_batches(split: ImageSplit) -> None:
    aug = TopdownAugmentation()
    cpu = _data(split, aug, seed=1).batch(list(range(5)), epoch=2)
    gpu_data = _data(split, aug, seed=1)
    gpu_data.device = torch.device("cuda")
    gpu = gpu_data.batch(list(range(5)), epoch=2)
    assert gpu["inputs"].device.type == "cuda" and gpu["inputs"].dtype == torch.uint8
    assert (gpu["inputs"].cpu().int() - cpu["inputs"].int()).abs().float().mean() < 1.0
    for name, value in cpu["targets"].items():
        other = gpu["targets"][name].cpu()
        assert torch.allclose(other.float(), value.float(), atol=1e-3), name
