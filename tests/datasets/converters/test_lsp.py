"""The ``lsp`` converter on the real LSP-Extended sample (3,000 images) and on small broken copies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from scipy.io import loadmat, savemat

from posecore.cli import main
from posecore.datasets.converters import SourceSpec, convert
from posecore.metainfo import load_meta
from posecore.validation import DataValidationError

pytestmark = pytest.mark.real_data

README_ORDER = [
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "right_wrist",
    "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist", "neck", "head_top",
]  # fmt: skip


@pytest.fixture(scope="module")
def lspet(shared_data: Path) -> Path:
    return shared_data / "lspet"


@pytest.fixture(scope="module")
def converted(lspet: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lsp") / "canonical"
    convert(SourceSpec(source="lsp", meta="lsp", root=str(lspet)), out)
    return out


def _annotations(out: Path) -> dict[str, dict[str, Any]]:
    """Annotations of both splits keyed by the source image name (``im00001.jpg``)."""
    by_name = {}
    for split in ("train", "val"):
        doc = json.loads((out / "annotations" / f"{split}.json").read_text())
        names = {img["id"]: Path(img["file_name"]).name for img in doc["images"]}
        for ann in doc["annotations"]:
            by_name[names[ann["image_id"]]] = ann
    return by_name


def _oks_ap(ann_file: Path, sigmas: tuple[float, ...]) -> float:
    """COCO keypoint AP of the ground truth scored as predictions."""
    gt = COCO(str(ann_file))
    dets = [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
        for a in gt.dataset["annotations"]
        if a["num_keypoints"] > 0
    ]
    ev = COCOeval(gt, gt.loadRes(dets), "keypoints")
    ev.params.kpt_oks_sigmas = np.array(sigmas)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return float(ev.stats[0])


def _small_copy(lspet: Path, dst: Path, n: int = 6) -> Path:
    """The first ``n`` people of LSP-Extended in the native layout."""
    (dst / "images").mkdir(parents=True)
    joints = loadmat(str(lspet / "joints.mat"))["joints"][:, :, :n]
    savemat(str(dst / "joints.mat"), {"joints": joints})
    for i in range(1, n + 1):
        shutil.copyfile(lspet / "images" / f"im{i:05d}.jpg", dst / "images" / f"im{i:05d}.jpg")
    return dst


def test_meta_order_is_the_readme_order(lspet: Path) -> None:
    lines = (lspet / "README.txt").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "following order" in line) + 1
    listed = [line.strip().lower().replace(" ", "_") for line in lines[start : start + 14]]
    assert listed == README_ORDER
    assert load_meta("lsp").keypoint_names == README_ORDER


def test_lspet_counts_and_pycocotools(converted: Path) -> None:
    counts = {}
    for split in ("train", "val"):
        coco = COCO(str(converted / "annotations" / f"{split}.json"))
        counts[split] = (len(coco.getImgIds()), len(coco.getAnnIds()))
    assert counts == {"train": (2700, 2700), "val": (300, 300)}
    names = set(_annotations(converted))
    assert names == {f"im{i:05d}.jpg" for i in range(1, 3001)}


def test_lspet_keypoints_flags_and_box(converted: Path, lspet: Path) -> None:
    joints = loadmat(str(lspet / "joints.mat"))["joints"]
    anns = _annotations(converted)
    first = np.array(anns["im00001.jpg"]["keypoints"]).reshape(14, 3)
    # joints.mat column 1: right ankle flag 0 (at 0, -26.1); right knee (26.03094352, 86.41022512) flag 1
    assert first[0].tolist() == [0, 0, 0]
    np.testing.assert_allclose(first[1], [25.03094352, 85.41022512, 2], atol=1e-6)
    np.testing.assert_allclose(first[13], [115.56859752, 52.42206246, 2], atol=1e-6)  # head top
    # Box: labelled extent +15% each side, clipped to the 157x105 image.
    xy = first[first[:, 2] > 0, :2]
    (x1, y1), (x2, y2) = xy.min(0), xy.max(0)
    dx, dy = 0.15 * (x2 - x1), 0.15 * (y2 - y1)
    expect = [
        max(x1 - dx, 0),
        max(y1 - dy, 0),
        min(x2 + dx, 157) - max(x1 - dx, 0),
        min(y2 + dy, 105) - max(y1 - dy, 0),
    ]
    np.testing.assert_allclose(anns["im00001.jpg"]["bbox"], expect, atol=1e-6)
    v = np.array([np.array(a["keypoints"][2::3]) for a in anns.values()])
    assert int((v == 2).sum()) == int((joints[:, 2, :] == 1).sum()) == 36984
    assert int((v == 1).sum()) == 0
    assert sum(a["num_keypoints"] for a in anns.values()) == 36984


def test_lspet_ground_truth_scores_ap_1(converted: Path) -> None:
    sigmas = load_meta("lsp").sigmas
    for split in ("train", "val"):
        assert _oks_ap(converted / "annotations" / f"{split}.json", sigmas) == pytest.approx(1.0)


def test_split_is_deterministic(converted: Path, lspet: Path, tmp_path: Path) -> None:
    spec = SourceSpec(source="lsp", meta="lsp", root=str(lspet), check_images=False)
    convert(spec, tmp_path / "again")
    for split in ("train", "val"):
        name = f"annotations/{split}.json"
        assert (tmp_path / "again" / name).read_bytes() == (converted / name).read_bytes()
    convert(SourceSpec(source="lsp", meta="lsp", root=str(lspet), check_images=False, split_seed=1), tmp_path / "seed1")
    assert (tmp_path / "seed1" / "annotations/val.json").read_bytes() != (
        converted / "annotations/val.json"
    ).read_bytes()


def test_original_lsp_layout(lspet: Path, tmp_path: Path) -> None:
    """LSP's (3, 14, N) array with flag 0 = visible, 1 = occluded, and 4-digit image names."""
    (tmp_path / "images").mkdir()
    joints = loadmat(str(lspet / "joints.mat"))["joints"][:, :, :4].copy()
    joints[:, 2, :] = 0
    joints[0, :2, :] = 30.0  # LSP labels every joint
    joints[0, 2, 1] = 1  # right ankle of person 2 occluded
    savemat(str(tmp_path / "joints.mat"), {"joints": joints.transpose(1, 0, 2)})
    for i in range(1, 5):
        shutil.copyfile(lspet / "images" / f"im{i:05d}.jpg", tmp_path / "images" / f"im{i:04d}.jpg")
    out = tmp_path / "out"
    report = convert(SourceSpec(source="lsp", meta="lsp", root=str(tmp_path), val_fraction=0.0), out)
    assert report.counts["train"] == {"images": 4, "annotations": 4}
    anns = _annotations(out)
    assert set(anns) == {f"im{i:04d}.jpg" for i in range(1, 5)}
    second = np.array(anns["im0002.jpg"]["keypoints"]).reshape(14, 3)
    assert second[0].tolist() == [29.0, 29.0, 1]
    assert (second[1:, 2] == 2).all()
    assert anns["im0002.jpg"]["num_keypoints"] == 14


def _reject(spec: SourceSpec, out: Path, *expected: str) -> str:
    with pytest.raises(DataValidationError) as exc:
        convert(spec, out)
    message = str(exc.value)
    for text in expected:
        assert text in message
    assert not out.exists()
    return message


def test_wrong_shape_is_rejected(lspet: Path, tmp_path: Path) -> None:
    src = _small_copy(lspet, tmp_path / "src")
    joints = loadmat(str(src / "joints.mat"))["joints"]
    savemat(str(src / "joints.mat"), {"joints": joints[:13]})
    _reject(
        SourceSpec(source="lsp", meta="lsp", root=str(src)),
        tmp_path / "out",
        str(src / "joints.mat"),
        "field 'joints'",
        "(13, 3, 6)",
    )


def test_bad_records_are_rejected_with_native_names(lspet: Path, tmp_path: Path) -> None:
    src = _small_copy(lspet, tmp_path / "src")
    joints = loadmat(str(src / "joints.mat"))["joints"]
    joints[4, 2, 2] = 2.0  # column 3: flag that is neither 0 nor 1
    joints[1, 0, 3] = np.nan  # column 4: labelled right knee x is NaN
    savemat(str(src / "joints.mat"), {"joints": joints})
    (src / "images" / "im00002.jpg").unlink()
    message = _reject(
        SourceSpec(source="lsp", meta="lsp", root=str(src)),
        tmp_path / "out",
        str(src / "joints.mat"),
        "joints(:,:,3) (im00003.jpg): field 'flag'",
        "left_knee=2",
        "[joints(:,:,4) (im00004.jpg)]: field 'keypoints': contains NaN",
        "field 'file_name'",
        "im00002.jpg does not exist",
    )
    assert message.count("  - ") == 3
    report = convert(
        SourceSpec(source="lsp", meta="lsp", root=str(src), drop_invalid=True, val_fraction=0.0), tmp_path / "kept"
    )
    # The flag column is left out whole, and so is the NaN person's image (its only person was dropped).
    assert report.counts["train"] == {"images": 3, "annotations": 3}
    assert report.dropped == {"images": 2, "annotations": 3}


def test_meta_with_another_keypoint_count_is_rejected(lspet: Path, tmp_path: Path) -> None:
    src = _small_copy(lspet, tmp_path / "src")
    _reject(
        SourceSpec(source="lsp", meta="mpii", root=str(src)), tmp_path / "out", "(16, 3, N)", "'mpii'", "(14, 3, 6)"
    )


def test_cli(lspet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _small_copy(lspet, tmp_path / "src")
    assert main(["convert", "--format", "lsp", "--root", str(src), "--out", str(tmp_path / "out")]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["train"]["images"] == 5
    (src / "images" / "im00005.jpg").unlink()
    assert main(["convert", "--format", "lsp", "--root", str(src), "--out", str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err
    assert str(src / "joints.mat") in err and "(im00005.jpg): field 'file_name'" in err
    assert not (tmp_path / "out2").exists()
