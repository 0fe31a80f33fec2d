"""The target-encoding cache: built once, read batch-wise, equal to decoding the images directly."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from posecore.codecs import build_codec
from posecore.data.build import build_cache
from posecore.data.cache import CachedTopdownData, CacheSpec, cache_key, open_cache
from posecore.datasets.coco import CocoPoseDataset, load_image
from posecore.datasets.converters import SourceSpec, convert
from posecore.metainfo import load_meta
from posecore.transforms import KeyedRNG, Normalize, make_topdown_batch, topdown_train_pipeline, topdown_val_pipeline

INPUT = (96, 128)


def _codec(sigma: float = 2.0):  # noqa: ANN202
    return build_codec("msra_heatmap", input_size=INPUT, heatmap_size=(24, 32), sigma=sigma)


@pytest.fixture(scope="module")
def coco_sample(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("coco") / "converted"
    root = shared_data / "mmpose_samples" / "coco"
    convert(SourceSpec(source="coco", meta="coco", root=str(root), annotations={"all": "test_coco.json"}), out)
    # Put every image in both splits' reach: the sample is tiny, so use val_fraction's default and check both.
    return out


@pytest.fixture(scope="module")
def cache(coco_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cache") / "cache"
    # crop_scale 4: stored crops hold enough detail that only interpolation separates the two paths
    # (at crop_scale 1 zoom-in augmentation upsamples the stored crop: ~9 grey levels mean difference).
    build_cache(coco_sample, out, CacheSpec(context=3.0, crop_scale=4.0, shard_size=4), _codec())
    return out


def test_counts_match_the_dataset_and_shards_are_memory_mapped(coco_sample: Path, cache: Path) -> None:
    key = json.loads((cache / "key.json").read_text())
    train = CocoPoseDataset(coco_sample, "train")
    val = CocoPoseDataset(coco_sample, "val", test_mode=True)
    assert key["counts"] == {"train": len(train), "val": len(val)}
    splits = open_cache(cache)
    assert len(splits["train"]) == len(train)
    assert len(list((cache / "train").glob("crops_*.npy"))) == -(-len(train) // 4)
    crops = splits["train"].images([0, len(train) - 1])
    assert crops.dtype == np.uint8 and crops.shape == (2, round(128 * 12.0), round(96 * 12.0), 3)
    assert isinstance(splits["train"]._shards[0], np.memmap)


def test_cached_train_batches_equal_direct_decoding(coco_sample: Path, cache: Path) -> None:
    """Same seed and sample keys: the crop path gives the batch that the full-image path gives."""
    meta = load_meta("coco")
    codec = _codec()
    pipeline = topdown_train_pipeline(meta, codec)
    split = open_cache(cache)["train"]
    data = CachedTopdownData(split, pipeline, seed=3)
    indices = list(range(len(split)))
    for epoch in (0, 1):
        cached = data.batch(indices, epoch)
        by_ann = {int(a): i for i, a in enumerate(split.ann_id)}
        instances = {inst.ann_id: inst for inst in CocoPoseDataset(coco_sample, "train").instances}
        for row, index in enumerate(indices):
            inst = instances[int(split.ann_id[index])]
            assert by_ann[inst.ann_id] == index
            image = torch.from_numpy(load_image(inst.image_path)).permute(2, 0, 1)[None]
            direct = pipeline(
                make_topdown_batch(
                    image,
                    torch.from_numpy(inst.keypoints)[None],
                    torch.from_numpy(inst.keypoints_visible)[None],
                    torch.tensor([index]),
                    bbox=torch.from_numpy(inst.bbox)[None],
                ),
                KeyedRNG(3, epoch),
            )
            assert torch.equal(cached["targets"]["keypoint_weights"][row], direct["targets"]["keypoint_weights"][0])
            assert torch.allclose(cached["targets"]["heatmaps"][row], direct["targets"]["heatmaps"][0], atol=1e-4)
            # Two bilinear resamplings against one: compare where the direct input is not border padding.
            a, b = cached["inputs"][row], direct["images"][0]
            black = Normalize()({"images": torch.zeros_like(b)[None]})["images"][0]
            inside = (b != black).any(0)
            diff = (a - b).abs().mean(0)[inside]
            assert diff.mean() < 0.06, (
                f"sample {index}, epoch {epoch}: mean |diff| {diff.mean():.3f} (normalised units)"
            )


def test_val_split_is_fully_preprocessed(coco_sample: Path, cache: Path) -> None:
    codec = _codec()
    split = open_cache(cache)["val"]
    instances = {i.ann_id: i for i in CocoPoseDataset(coco_sample, "val", test_mode=True).instances}
    pipeline = topdown_val_pipeline(codec, normalize=None, with_targets=True)
    targets = split.targets(range(len(split)))
    for index in range(len(split)):
        inst = instances[int(split.ann_id[index])]
        image = torch.from_numpy(load_image(inst.image_path)).permute(2, 0, 1)[None]
        direct = pipeline(
            make_topdown_batch(
                image,
                torch.from_numpy(inst.keypoints)[None],
                torch.from_numpy(inst.keypoints_visible)[None],
                torch.tensor([index]),
                bbox=torch.from_numpy(inst.bbox)[None],
            )
        )
        stored = torch.from_numpy(split.images([index])).permute(0, 3, 1, 2).float()
        assert (stored - direct["images"]).abs().max() <= 1.0
        assert torch.allclose(torch.from_numpy(split.keypoints[index]), direct["keypoints"][0], atol=1e-3)
        assert torch.allclose(torch.from_numpy(split.warp[index]), direct["warp"][0], atol=1e-4)
        for name, value in direct["targets"].items():
            assert torch.allclose(targets[name][index], value[0], atol=1e-5), name


def test_cache_key_tracks_what_it_was_built_from(coco_sample: Path, cache: Path) -> None:
    spec = CacheSpec(context=3.0, crop_scale=4.0, shard_size=4)
    assert open_cache(cache, cache_key(coco_sample, spec, _codec()))
    assert cache_key(
        coco_sample, CacheSpec(context=3.0, crop_scale=4.0, shard_size=4, workers=1), _codec()
    ) == cache_key(coco_sample, spec, _codec()), "workers changes speed only"
    with pytest.raises(ValueError, match="different codec"):
        open_cache(cache, cache_key(coco_sample, spec, _codec(sigma=3.0)))
    with pytest.raises(ValueError, match="different spec"):
        open_cache(cache, cache_key(coco_sample, CacheSpec(context=2.0, crop_scale=4.0, shard_size=4), _codec()))


def test_building_reports_progress_per_split(
    coco_sample: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSECORE_PROGRESS_S", "0")
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal: lines, not a bar
    caplog.set_level(logging.INFO, logger="posecore.progress")
    report = build_cache(coco_sample, tmp_path / "cache", CacheSpec(crop_scale=0.5), _codec())
    done = [r.getMessage() for r in caplog.records if "done in" in r.getMessage()]
    counts = report["counts"]
    assert counts["train"] > 0
    assert [line.split(" (")[0] for line in done] == [
        f"encode: {split} {kind} | {n}/{n} inst"
        for split, kind, n in (("train", "crops", counts["train"]), ("val", "inputs", counts["val"]))
        if n  # the sample's val split may be empty: nothing to report
    ]


def test_missing_cache_says_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dvc repro encode"):
        open_cache(tmp_path)


def test_batches_do_not_depend_on_how_samples_are_split(cache: Path) -> None:
    """What a sample looks like is keyed by (seed, epoch, index): sharding over ranks changes nothing."""
    split = open_cache(cache)["train"]
    data = CachedTopdownData(split, topdown_train_pipeline(load_meta("coco"), _codec()), seed=7)
    n = len(split)
    whole = data.batch(list(range(n)), epoch=2)
    rank0, rank1 = data.batch(list(range(0, n, 2)), 2), data.batch(list(range(1, n, 2)), 2)
    merged = torch.empty_like(whole["inputs"])
    merged[0::2], merged[1::2] = rank0["inputs"], rank1["inputs"]
    assert torch.allclose(merged, whole["inputs"], atol=1e-5)


def test_failed_build_leaves_nothing(coco_sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import posecore.data.build as cache_module

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(cache_module, "_build_val", boom)
    with pytest.raises(RuntimeError):
        build_cache(coco_sample, tmp_path / "cache", CacheSpec(), _codec())
    assert not (tmp_path / "cache").exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lspet", "coco_mini"])
def test_cache_builds_on_real_datasets(shared_data: Path, tmp_path: Path, name: str) -> None:
    if name == "lspet":
        spec = SourceSpec(source="lsp", meta="lsp", root=str(shared_data / "lspet"))
    else:
        spec = SourceSpec(
            source="coco",
            meta="coco",
            root=str(shared_data / "coco_mini"),
            annotations={
                "train": "annotations/person_keypoints_train2017.json",
                "val": "annotations/person_keypoints_val2017.json",
            },
            images={"train": "train2017", "val": "val2017"},
        )
    convert(spec, tmp_path / "converted")
    report = build_cache(tmp_path / "converted", tmp_path / "cache", CacheSpec(crop_scale=0.5), _codec())
    train = CocoPoseDataset(tmp_path / "converted", "train")
    assert report["counts"]["train"] == len(train) > 0
    if name == "lspet":
        assert report["counts"] == {"train": 2700, "val": 300}
    split = open_cache(tmp_path / "cache")["train"]
    crops = split.images(range(0, len(split), max(1, len(split) // 16)))
    assert crops.mean() > 20, "crops hold image content, not padding"


def test_batches_warp_straight_from_the_shards_like_a_stacked_copy(cache: Path) -> None:
    """On the CPU a batch warps views into the memory-mapped shards; a stacked copy gives the same batch."""
    split = open_cache(cache)["train"]
    pipeline = topdown_train_pipeline(load_meta("coco"), _codec(), normalize=None, keep_uint8=True)
    idx = np.arange(len(split))[::-1].copy()
    views = split.image_views(idx)
    assert all(isinstance(a, np.memmap) or isinstance(a.base, np.memmap) for a in views.arrays)
    got = CachedTopdownData(split, pipeline, seed=3).batch(idx, epoch=1)
    stacked = torch.from_numpy(split.images(idx)).permute(0, 3, 1, 2)
    batch = make_topdown_batch(
        stacked,
        torch.from_numpy(split.keypoints[idx]),
        torch.from_numpy(split.visible[idx]),
        torch.from_numpy(idx),
        bbox=torch.from_numpy(split.bbox[idx]),
    )
    want = pipeline(batch, KeyedRNG(3, 1))
    assert torch.equal(got["inputs"], want["images"])
    for key, value in want["targets"].items():
        assert torch.equal(got["targets"][key], value), key
