"""The synthetic COCO-17 generator: valid COCO output, determinism, labels that match the pixels."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from posecore.config import SynthParams
from posecore.datasets import synthetic
from posecore.datasets.synthetic import SceneOptions, generate, image_rng, render_image
from posecore.metainfo import load_meta

W, H = 128, 96
TINY = SynthParams(n_train=6, n_val=3, seed=3, width=W, height=H, workers=1)
FLAT = (0, 255, 0)
META = load_meta("coco")
K = {name: i for i, name in enumerate(META.keypoint_names)}


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


def test_interrupted_generation_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def flaky(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("interrupted")
        return render_image(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(synthetic, "render_image", flaky)
    out = tmp_path / "synthetic"
    with pytest.raises(RuntimeError, match="interrupted"):
        generate(TINY, out)
    assert list(tmp_path.iterdir()) == []


def test_keypoints_sit_on_the_drawn_figure() -> None:
    flat = SceneOptions(clutter=False, occluders=False, flat_color=FLAT)
    n_visible = 0
    for seed in range(20):
        image, anns = render_image(np.random.default_rng(seed), W, H, 1, 1, flat)
        drawn = np.any(image != np.array(FLAT, np.uint8), axis=-1)
        for ann in anns:
            x, y, v = ann.keypoints.T
            cols, rows = np.round(x[v == 2]).astype(int), np.round(y[v == 2]).astype(int)
            assert drawn[rows, cols].all()
            assert ann.mask[rows, cols].all()
            n_visible += len(cols)
            near_mask = cv2.dilate(ann.mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            assert np.count_nonzero(drawn & ann.mask) >= 0.98 * np.count_nonzero(ann.mask)
            assert np.count_nonzero(drawn & near_mask) >= 0.98 * np.count_nonzero(drawn)
    assert n_visible > 100


@pytest.mark.parametrize(("yaw", "sign"), [(0.0, 1), (math.pi, -1)])
def test_left_and_right_are_on_the_anatomical_side(yaw: float, sign: int) -> None:
    """Facing the viewer (yaw 0) the person's left is on the image right; from behind, on the left."""
    facing = SceneOptions(clutter=False, occluders=False, yaw=yaw)
    pairs = [
        ("left_shoulder", "right_shoulder"),
        ("left_hip", "right_hip"),
        ("left_eye", "right_eye"),
        ("left_ear", "right_ear"),
    ]
    checked = 0
    for seed in range(15):
        _, anns = render_image(np.random.default_rng(seed), 256, 256, 1, 1, facing)
        for ann in anns:
            kps = ann.keypoints
            for left, right in pairs:
                a, b = kps[K[left]], kps[K[right]]
                if a[2] > 0 and b[2] > 0:
                    assert sign * (a[0] - b[0]) > 0, (seed, left, a, b)
                    checked += 1
            if yaw == math.pi:
                assert kps[K["nose"], 2] == kps[K["left_eye"], 2] == kps[K["right_eye"], 2] == 0
    assert checked >= 30


def test_a_sample_has_occluded_and_unlabelled_keypoints_and_one_to_four_people() -> None:
    vis: list[np.ndarray] = []
    people = []
    for i in range(40):
        _, anns = render_image(image_rng(0, "train", i), W, H, 1, 4)
        people.append(len(anns))
        vis += [a.keypoints[:, 2] for a in anns]
    v = np.concatenate(vis)
    assert np.count_nonzero(v == 1) > 0.03 * v.size
    assert np.count_nonzero(v == 0) > 0.03 * v.size
    assert np.count_nonzero(v == 2) > 0.5 * v.size
    assert min(people) >= 0 and max(people) == 4 and 1 in people


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
