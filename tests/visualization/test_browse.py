"""``posecore browse``: PNGs of ground truth for N seeded samples, image or instance mode, and the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from posecore.cli import main
from posecore.datasets.converters import SourceSpec, available_converters, convert
from posecore.metainfo import resolve_meta_path
from posecore.visualization.browse import browse


def _decode(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"{path} does not decode"
    return image


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    """Five 64 x 48 images, one or two people each, 17 COCO keypoints."""
    root = tmp_path / "ds"
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for i in range(1, 6):
        name = f"train/{i}.png"
        (root / "images" / "train").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "images" / name), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
        images.append({"id": i, "file_name": name, "width": 64, "height": 48})
        for j in range(1 + i % 2):
            xy = rng.uniform([10 + 25 * j, 5], [30 + 25 * j, 40], (17, 2))
            kps = np.concatenate([xy, np.full((17, 1), 2)], axis=1).ravel().tolist()
            annotations.append(
                {"id": 10 * i + j, "image_id": i, "bbox": [8 + 25 * j, 4, 24, 38], "keypoints": kps,
                 "num_keypoints": 17, "area": 912, "iscrowd": 0, "category_id": 1}
            )  # fmt: skip
    (root / "annotations").mkdir()
    doc = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "person"}]}
    (root / "annotations" / "train.json").write_text(json.dumps(doc))
    shutil.copyfile(resolve_meta_path("coco"), root / "meta.yaml")
    return root


def test_image_mode_writes_n_pngs(dataset_dir: Path, tmp_path: Path) -> None:
    paths = browse(dataset_dir, tmp_path / "out", n=3, seed=0)
    assert len(paths) == 3 and all(p.suffix == ".png" and p.parent == tmp_path / "out" for p in paths)
    for p in paths:
        assert _decode(p).shape == (48, 64, 3)  # small images are not resized
    assert not list((tmp_path / "out").glob(".*")), "no temporary files left behind"


def test_seed_picks_the_same_samples(dataset_dir: Path, tmp_path: Path) -> None:
    a = [p.name for p in browse(dataset_dir, tmp_path / "a", n=3, seed=7)]
    b = [p.name for p in browse(dataset_dir, tmp_path / "b", n=3, seed=7)]
    assert a == b


def test_n_larger_than_the_dataset(dataset_dir: Path, tmp_path: Path) -> None:
    assert len(browse(dataset_dir, tmp_path / "out", n=50)) == 5


def test_instance_mode_crops_each_person(dataset_dir: Path, tmp_path: Path) -> None:
    paths = browse(dataset_dir, tmp_path / "out", n=8, mode="instance")
    assert len(paths) == 8  # 8 people in 5 images
    assert all("_ann" in p.name for p in paths)
    for p in paths:
        assert max(_decode(p).shape[:2]) == 256


def test_grid_writes_one_png(dataset_dir: Path, tmp_path: Path) -> None:
    paths = browse(dataset_dir, tmp_path / "out", n=4, grid=True, color_by="side")
    assert [p.name for p in paths] == ["train_image_grid.png"]
    assert _decode(paths[0]).shape[0] > 2 * 320


def test_cli(dataset_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert main(["browse", "--data", str(dataset_dir), "--out", str(out), "--n", "2", "--seed", "1"]) == 0
    assert len(list(out.glob("*.png"))) == 2
    assert "wrote 2 PNG(s)" in capsys.readouterr().out
    assert main(["browse", "--data", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert main(["browse", "--data", str(dataset_dir), "--out", str(out), "--n", "0"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["browse", "--help"])
    assert exc.value.code == 0
    assert "--mode" in capsys.readouterr().out


# ---- real data ----


@pytest.mark.real_data
def test_browse_mmpose_coco_sample(shared_data: Path, tmp_path: Path) -> None:
    ds = tmp_path / "coco"
    spec = SourceSpec(source="coco", meta="coco", root=str(shared_data / "mmpose_samples" / "coco"),
                      annotations={"all": "test_coco.json"}, images={"all": "."}, val_fraction=0.0)  # fmt: skip
    convert(spec, ds)
    images = browse(ds, tmp_path / "img", n=4)
    assert sorted(p.name.split("_img")[1] for p in images) == ["196141.png", "197388.png", "40083.png", "785.png"]
    assert _decode(images[0]).shape == (425, 640, 3)
    assert len(browse(ds, tmp_path / "inst", n=12, mode="instance")) == 12


@pytest.mark.real_data
@pytest.mark.skipif("lsp" not in available_converters(), reason="the lsp converter is not registered")
def test_browse_lspet(shared_data: Path, tmp_path: Path) -> None:
    ds = tmp_path / "lspet"
    convert(SourceSpec(source="lsp", meta="lsp", root=str(shared_data / "lspet")), ds)
    paths = browse(ds, tmp_path / "out", n=6, seed=3)
    assert len(paths) == 6
    for p in paths:
        _decode(p)
