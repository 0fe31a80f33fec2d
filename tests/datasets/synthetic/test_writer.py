"""The dataset writer: valid COCO output, determinism, atomicity, progress, and unchanged output."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from posecore.datasets.synthetic import SceneOptions, SynthParams, generate, image_rng, render_image, writer
from posecore.metainfo import load_meta

W, H = 128, 96
TINY = SynthParams(n_train=6, n_val=3, seed=3, width=W, height=H, workers=1)
META = load_meta("coco")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, int]]]:
    out = tmp_path_factory.mktemp("synth") / "synthetic"
    return out, generate(TINY, out)


def _load(root: Path, split: str) -> dict:
    return json.loads((root / "annotations" / f"{split}.json").read_text())


def test_output_is_coco_that_pycocotools_loads(tiny: tuple[Path, dict[str, dict[str, int]]]) -> None:
    root, counts = tiny
    image_ids: set[int] = set()
    ann_ids: set[int] = set()
    for split, n in (("train", TINY.n_train), ("val", TINY.n_val)):
        coco = COCO(str(root / "annotations" / f"{split}.json"))
        assert len(coco.getImgIds()) == n == counts[split]["images"]
        assert len(coco.getAnnIds()) == counts[split]["annotations"]
        assert coco.loadCats(1)[0] == META.coco_category()
        for img in coco.loadImgs(coco.getImgIds()):
            assert re.fullmatch(r"\d{6}\.jpg", img["file_name"])  # relative to images/<split>/, as in COCO
            with Image.open(root / "images" / split / img["file_name"]) as im:
                assert im.format == "JPEG" and im.size == (img["width"], img["height"]) == (W, H)
        image_ids |= set(coco.getImgIds())
        ann_ids |= set(coco.getAnnIds())
    assert len(image_ids) == TINY.n_train + TINY.n_val
    assert len(ann_ids) == sum(c["annotations"] for c in counts.values())
    assert sorted(p.name for p in root.iterdir()) == ["annotations", "images"]


def test_every_annotation_is_consistent(tiny: tuple[Path, dict[str, dict[str, int]]]) -> None:
    root, _ = tiny
    for split in ("train", "val"):
        data = _load(root, split)
        sizes = {img["id"]: (img["width"], img["height"]) for img in data["images"]}
        for ann in data["annotations"]:
            w, h = sizes[ann["image_id"]]
            kps = np.array(ann["keypoints"], dtype=float).reshape(-1, 3)
            assert kps.shape == (17, 3)
            x, y, v = kps.T
            assert set(v) <= {0, 1, 2}
            assert np.all(kps[v == 0] == 0)
            assert np.all((x[v > 0] >= 0) & (x[v > 0] <= w - 1) & (y[v > 0] >= 0) & (y[v > 0] <= h - 1))
            bx, by, bw, bh = ann["bbox"]
            assert bx >= 0 and by >= 0 and bw > 0 and bh > 0 and bx + bw <= w - 1 and by + bh <= h - 1
            seen = v == 2
            assert np.all((x[seen] >= bx) & (x[seen] <= bx + bw) & (y[seen] >= by) & (y[seen] <= by + bh))
            assert ann["num_keypoints"] == int(np.count_nonzero(v))
            assert 0 < ann["area"] <= bw * bh
            assert (ann["iscrowd"], ann["category_id"]) == (0, 1)


def test_same_seed_gives_identical_bytes_whatever_the_worker_count(
    tmp_path: Path, tiny: tuple[Path, dict[str, dict[str, int]]]
) -> None:
    root, _ = tiny
    again = tmp_path / "again"
    generate(replace(TINY, workers=2), again)
    assert _files(again) == _files(root)

    other = tmp_path / "other"
    generate(replace(TINY, seed=TINY.seed + 1), other)
    assert _files(other).keys() == _files(root).keys()
    assert _files(other)["annotations/train.json"] != _files(root)["annotations/train.json"]


# Recorded from the pre-split generator (posecore/datasets/synthetic.py, GENERATOR_VERSION "2")
# before it became this package: a regression guard that the same seed still gives the same
# data. md5 of each image's decoded RGB pixels and of each annotation file's JSON (sorted keys).
GOLDEN_PARAMS = SynthParams(
    n_train=3, n_val=2, seed=0, width=96, height=80, min_people=1, max_people=3, occluders=True, workers=1
)
GOLDEN = {
    "annotations/train.json": "ee5a376a6ff0aea8176f1d642d776f65",
    "annotations/val.json": "a2cd22ee4c9a29659f7b0020a336d54a",
    "images/train/000000.jpg": "9b3ff4c398ee2739426bed56fa5ee371",
    "images/train/000001.jpg": "b0419e7dbdf52c3deca6e02f5236ce61",
    "images/train/000002.jpg": "d794450d9787952edf21886940aed653",
    "images/val/000000.jpg": "e8aeadd52ba78a24e73fc20b0ae36d38",
    "images/val/000001.jpg": "45d65a90e3dac4ccc21d7a6c5f87b0e0",
}


def test_output_is_unchanged_from_generator_version_2(tmp_path: Path) -> None:
    root = tmp_path / "golden"
    counts = generate(GOLDEN_PARAMS, root)
    assert counts == {"train": {"images": 3, "annotations": 5}, "val": {"images": 2, "annotations": 4}}
    digests = {}
    for split in ("train", "val"):
        coco = json.loads((root / "annotations" / f"{split}.json").read_text())
        assert coco["info"]["version"] == writer.GENERATOR_VERSION == "2"
        digests[f"annotations/{split}.json"] = hashlib.md5(json.dumps(coco, sort_keys=True).encode()).hexdigest()
        for path in sorted((root / "images" / split).iterdir()):
            with Image.open(path) as im:
                pixels = np.asarray(im.convert("RGB"))
            digests[f"images/{split}/{path.name}"] = hashlib.md5(pixels.tobytes()).hexdigest()
    assert digests == GOLDEN


def test_interrupted_generation_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def flaky(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("interrupted")
        return render_image(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(writer, "render_image", flaky)
    out = tmp_path / "synthetic"
    with pytest.raises(RuntimeError, match="interrupted"):
        generate(TINY, out)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("workers", [1, 2])
def test_progress_counts_images_in_the_parent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    monkeypatch.setenv("POSECORE_PROGRESS_S", "0")
    caplog.set_level(logging.INFO, logger="posecore.progress")
    generate(replace(TINY, n_train=3, n_val=2, workers=workers), tmp_path / "out")
    lines = [r.getMessage() for r in caplog.records if r.name == "posecore.progress"]
    assert lines and all(line.startswith("synth:") for line in lines)
    assert "5/5 img (100.0%)" in lines[-1] and "done in" in lines[-1]


@pytest.mark.parametrize("occluders", [False, True])
def test_scene_params_reach_the_renderer(tmp_path: Path, occluders: bool) -> None:
    params = replace(TINY, n_train=24, n_val=1, max_people=3, occluders=occluders)
    generate(params, tmp_path / "out")
    written = [v for a in _load(tmp_path / "out", "train")["annotations"] for v in a["keypoints"]]

    def rendered(options: SceneOptions) -> list[float]:
        return [
            v
            for i in range(params.n_train)
            for a in render_image(image_rng(params.seed, "train", i), W, H, 1, 3, options)[1]
            for v in a.keypoints.ravel().tolist()
        ]

    assert written == pytest.approx(rendered(SceneOptions(occluders=occluders)))
    assert written != rendered(SceneOptions(occluders=not occluders))


def test_image_rng_depends_on_seed_split_and_index() -> None:
    draws = {
        (s, split, i): image_rng(s, split, i).random() for s in (0, 1) for split in ("train", "val") for i in (0, 1)
    }
    assert len(set(draws.values())) == len(draws)
    assert image_rng(0, "train", 1).random() == draws[(0, "train", 1)]
