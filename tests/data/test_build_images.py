"""The one-stage cache builder: whole images letterboxed once, every person and crowd region kept."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from onestage_data import IMAGES, INPUT, SPEC, source_image, write_dataset

from posecore.codecs import build_codec
from posecore.data.build import build_cache
from posecore.data.build_images import build_image_cache
from posecore.transforms.letterbox import letterbox
from posecore.data.cache import CacheSpec, CacheSplit, cache_key, open_cache
from posecore.data.images import ImageSplit
from posecore.datasets.coco import CocoPoseDataset


def codec(**options: object):  # noqa: ANN201
    return build_codec("yoloxpose", input_size=INPUT, **options)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("onestage") / "dataset")


@pytest.fixture(scope="module")
def cache(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onestage_cache") / "cache"
    build_cache(dataset, out, SPEC, codec())  # dispatches on codec.task
    return out


def test_layout_counts_and_sizes(cache: Path) -> None:
    key = json.loads((cache / "key.json").read_text())
    assert key["task"] == "onestage"
    assert key["counts"] == {"train": 5, "val": 5}, "images without people are kept in both splits"
    splits = open_cache(cache)
    assert all(isinstance(s, ImageSplit) for s in splits.values())
    train, val = splits["train"], splits["val"]
    assert train.image_shape == (72, 96) and val.image_shape == (48, 64)
    assert len(list((cache / "train").glob("images_*.npy"))) == 3
    assert isinstance(train._shards[0], np.memmap)
    assert train.images([0, 4]).shape == (2, 72, 96, 3) and train.images([0]).dtype == np.uint8
    assert sorted(train.image_id.tolist()) == [1, 2, 3, 4, 5]
    assert train.person_start.tolist() == [0, 3, 3, 4, 5, 5]
    assert train.image_size.tolist() == [[w, h] for _, w, h, _ in IMAGES.values()]


@pytest.mark.parametrize("split", ["train", "val"])
def test_letterbox_warp_maps_keypoints_and_pixels(dataset: Path, cache: Path, split: str) -> None:
    stored = open_cache(cache)[split]
    records = {r.image_id: r for r in CocoPoseDataset(dataset, split, mode="bottomup", test_mode=True).images}
    hs, ws = stored.image_shape
    for i, image_id in enumerate(stored.image_id):
        record, m = records[int(image_id)], stored.warp[i].astype(np.float64)
        name, w, h, gray = IMAGES[int(image_id)]
        # aspect kept, centred: the image's pixel area maps onto a centred box of the stored image
        s = min(ws / w, hs / h)
        assert m[0, 0] == pytest.approx(s, rel=0.02, abs=0.5 / w) and m[1, 1] == pytest.approx(s, rel=0.02, abs=0.5 / h)
        assert m[0, 1] == m[1, 0] == 0
        left, top = m @ [-0.5, -0.5, 1]
        right, bottom = m @ [w - 0.5, h - 0.5, 1]
        assert left + 0.5 == pytest.approx(ws - 0.5 - right, abs=0.51) and top + 0.5 == pytest.approx(
            hs - 0.5 - bottom, abs=0.51
        )
        people = stored.people(i)
        n = record.num_instances
        want = record.keypoints.astype(np.float64) @ m[:, :2].T + m[:, 2]
        np.testing.assert_allclose(people["keypoints"][:n], want, atol=1e-4)
        np.testing.assert_array_equal(people["visible"][:n], record.keypoints_visible)
        corners = record.bboxes.reshape(-1, 2).astype(np.float64) @ m[:, :2].T + m[:, 2]
        np.testing.assert_allclose(people["bbox"][:n], corners.reshape(-1, 4), atol=1e-4)
        np.testing.assert_array_equal(people["ann_id"][:n], record.ann_ids)
        # the pixels follow the same warp
        source = source_image(w, h, gray, int(image_id))
        source = cv2.cvtColor(source, cv2.COLOR_GRAY2RGB) if gray else source[..., ::-1]  # as load_image gives
        # cv2.resize replicates the edge pixels: compare with a warp that does too
        source = np.ascontiguousarray(source)
        direct = cv2.warpAffine(source, m, (ws, hs), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        got = stored.images([i])[0].astype(np.float32)
        inside = np.zeros((hs, ws), bool)
        inside[int(np.ceil(top + 1)) : int(np.floor(bottom - 1)), int(np.ceil(left + 1)) : int(np.floor(right - 1))] = (
            True
        )
        assert np.abs(got - direct)[inside].mean() < 2.0, f"{name}: stored pixels do not follow the warp"
        outside = np.ones((hs, ws), bool)
        outside[
            max(0, int(np.floor(top))) : int(np.ceil(bottom)) + 1, max(0, int(np.floor(left))) : int(np.ceil(right)) + 1
        ] = False
        assert (got[outside] == 0).all(), f"{name}: padding is black"


def test_crowd_regions_are_kept_as_boxes(dataset: Path, cache: Path) -> None:
    split = open_cache(cache)["train"]
    row = {int(v): i for i, v in enumerate(split.image_id)}
    people = split.people(row[1])
    assert people["crowd"].tolist() == [False, False, True]
    assert people["ann_id"].tolist() == [1, 2, -1]
    assert (people["visible"][2] == 0).all()
    m = split.warp[row[1]].astype(np.float64)
    clipped = np.array([[45, 40], [99, 79]], np.float64) @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(people["bbox"][2], clipped.reshape(4), atol=1e-4)
    only_crowd = split.people(row[4])
    assert only_crowd["crowd"].tolist() == [True]
    assert len(split.people(row[2])["crowd"]) == len(split.people(row[5])["crowd"]) == 0


def test_grayscale_and_one_pixel_images(cache: Path) -> None:
    split = open_cache(cache)["val"]
    row = {int(v): i for i, v in enumerate(split.image_id)}
    gray = split.images([row[3]])[0].astype(int)
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    assert gray.max() > 0
    dot = split.images([row[2]])[0]
    # a 1x1 image fills the short side: s = min(64, 48) = 48, centred
    m = split.warp[row[2]]
    assert m[0, 0] == m[1, 1] == 48
    assert dot[:, 8:56].min() > 0 and dot[:, :8].max() == 0 and dot[:, 56:].max() == 0


def test_letterbox_shrinks_with_area_averaging() -> None:
    """A fine checkerboard shrunk 8x averages to mid-grey instead of aliasing."""
    board = ((np.indices((400, 320)).sum(0) % 2) * 255).astype(np.uint8)
    out, m = letterbox(np.repeat(board[..., None], 3, -1), (40, 50))
    assert out.shape == (50, 40, 3) and m[0, 0] == pytest.approx(0.125)
    assert np.abs(out.astype(int) - 127).max() <= 2


def test_cache_key_and_refusal(dataset: Path, cache: Path) -> None:
    key = cache_key(dataset, SPEC, codec())
    assert key["task"] == "onestage"
    assert isinstance(open_cache(cache, key)["val"], ImageSplit)
    # decoding settings and the crop geometry do not shape whole images: the same cache serves them
    assert cache_key(dataset, SPEC, codec(nms_thr=0.5, sigmas=(0.1,) * 17)) == key
    assert cache_key(dataset, CacheSpec(context=2.0, bbox_padding=1.5, crop_scale=1.5, shard_size=2), codec()) == key
    with pytest.raises(ValueError, match="different codec"):
        open_cache(cache, cache_key(dataset, SPEC, build_codec("yoloxpose", input_size=(32, 32))))
    with pytest.raises(ValueError, match="different spec"):
        open_cache(cache, cache_key(dataset, CacheSpec(crop_scale=2.0, shard_size=2), codec()))
    heatmap = build_codec("msra_heatmap", input_size=INPUT, heatmap_size=(16, 12))
    topdown = cache_key(dataset, SPEC, heatmap)
    assert "task" not in topdown, "top-down keys stay as they were"
    with pytest.raises(ValueError, match="different task"):
        open_cache(cache, topdown)


def test_top_down_codecs_still_build_crops(dataset: Path, tmp_path: Path) -> None:
    heatmap = build_codec("msra_heatmap", input_size=INPUT, heatmap_size=(16, 12))
    report = build_cache(dataset, tmp_path / "crops", SPEC, heatmap)
    assert "task" not in report and report["counts"]["train"] == 3
    assert isinstance(open_cache(tmp_path / "crops")["train"], CacheSplit)
    with pytest.raises(ValueError, match="one-stage codec"):
        build_image_cache(dataset, tmp_path / "x", SPEC, heatmap)
    assert not (tmp_path / "x").exists()


def test_failed_build_leaves_nothing(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import posecore.data.build_images as module

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(module, "load_image", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        build_cache(dataset, tmp_path / "cache", SPEC, codec())
    assert list(tmp_path.iterdir()) == []
