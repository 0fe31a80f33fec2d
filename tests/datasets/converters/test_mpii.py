"""The ``mpii`` converter on MMPose's MPII sample (5 people) and on small broken copies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from posecore.cli import main
from posecore.datasets.converters import SourceSpec, convert
from posecore.metainfo import load_meta
from posecore.validation import DataValidationError

pytestmark = pytest.mark.real_data


@pytest.fixture(scope="module")
def sample(shared_data: Path) -> Path:
    return shared_data / "mmpose_samples" / "mpii"


@pytest.fixture(scope="module")
def entries(sample: Path) -> list[dict[str, Any]]:
    return json.loads((sample / "test_mpii.json").read_text())


def _spec(root: Path, **kw: Any) -> SourceSpec:
    return SourceSpec(source="mpii", meta="mpii", root=str(root), annotations={"all": "test_mpii.json"}, **kw)


def _by_image(out: Path) -> dict[str, dict[str, Any]]:
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


def _broken_copy(sample: Path, dst: Path, edit: Any) -> Path:
    """A copy of the sample whose entry list is passed through ``edit`` (which changes it in place)."""
    shutil.copytree(sample, dst, ignore=shutil.ignore_patterns("*trb*"))
    entries = json.loads((dst / "test_mpii.json").read_text())
    edit(entries)
    (dst / "test_mpii.json").write_text(json.dumps(entries))
    return dst


def test_sample_converts(sample: Path, entries: list[dict[str, Any]], tmp_path: Path) -> None:
    out = tmp_path / "out"
    convert(_spec(sample, val_fraction=0.4), out)
    images = annotations = 0
    for split in ("train", "val"):
        coco = COCO(str(out / "annotations" / f"{split}.json"))
        images += len(coco.getImgIds())
        annotations += len(coco.getAnnIds())
        assert _oks_ap(out / "annotations" / f"{split}.json", load_meta("mpii").sigmas) == pytest.approx(1.0)
    assert (images, annotations) == (len({e["image"] for e in entries}), len(entries)) == (5, 5)
    # Same seed, same files.
    convert(_spec(sample, val_fraction=0.4), tmp_path / "again")
    for split in ("train", "val"):
        name = f"annotations/{split}.json"
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes()


def test_keypoints_flags_and_boxes(sample: Path, entries: list[dict[str, Any]], tmp_path: Path) -> None:
    convert(_spec(sample), tmp_path / "out")
    anns = _by_image(tmp_path / "out")
    # MATLAB 1-based -> 0-based: right ankle of 005808361.jpg is (804, 711) in the file.
    assert anns["005808361.jpg"]["keypoints"][:3] == [803.0, 710.0, 2]
    kps = np.array(anns["051423444.jpg"]["keypoints"]).reshape(16, 3)
    vis = np.array(next(e for e in entries if e["image"] == "051423444.jpg")["joints_vis"])
    assert (vis == 0).sum() == 2
    assert (kps[vis == 0] == 0).all() and (kps[vis == 1, 2] == 2).all()
    v2 = sum(a["keypoints"][2::3].count(2) for a in anns.values())
    assert v2 == sum(sum(e["joints_vis"]) for e in entries) == 76
    # Box: square of side 200*scale around (center_x - 1, center_y + 15*scale - 1), clipped to the image.
    # 052475643.jpg (854x480): center (316, 220), scale 1.761835 -> side 352.367, centre (315, 245.427525).
    np.testing.assert_allclose(anns["052475643.jpg"]["bbox"], [138.8165, 69.244025, 352.367, 352.367], atol=1e-6)
    assert anns["052475643.jpg"]["area"] == pytest.approx(352.367**2)
    # 005808361.jpg (1280x720): center (966, 340), scale 4.718488 -> x 493.1512..1436.85, y -62.07..881.63.
    np.testing.assert_allclose(anns["005808361.jpg"]["bbox"], [493.1512, 0.0, 1280 - 493.1512, 720.0], atol=1e-6)


def test_center_minus_one_boxes_the_joints(sample: Path, tmp_path: Path) -> None:
    def edit(entries: list[dict[str, Any]]) -> None:
        entries[1]["center"] = [-1, -1]

    src = _broken_copy(sample, tmp_path / "src", edit)
    convert(_spec(src), tmp_path / "out")
    ann = _by_image(tmp_path / "out")["052475643.jpg"]
    xy = np.array(ann["keypoints"]).reshape(16, 3)[:, :2]
    (x1, y1), (x2, y2) = xy.min(0), xy.max(0)
    m = 0.15 * (x2 - x1), 0.15 * (y2 - y1)
    np.testing.assert_allclose(ann["bbox"], [x1 - m[0], y1 - m[1], (x2 - x1) * 1.3, (y2 - y1) * 1.3], atol=1e-6)


def test_default_layout(sample: Path, tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match=r"2 JSON files \(test_mpii.json, test_mpii_trb.json\)"):
        convert(SourceSpec(source="mpii", meta="mpii", root=str(sample)), tmp_path / "out")
    src = _broken_copy(sample, tmp_path / "src", lambda entries: None)
    report = convert(SourceSpec(source="mpii", meta="mpii", root=str(src)), tmp_path / "out")
    assert sum(c["annotations"] for c in report.counts.values()) == 5
    mmpose = tmp_path / "mmpose"
    shutil.copytree(sample, mmpose / "images", ignore=shutil.ignore_patterns("*.json"))
    (mmpose / "annotations").mkdir()
    doc = json.loads((sample / "test_mpii.json").read_text())
    (mmpose / "annotations/mpii_train.json").write_text(json.dumps(doc[:3]))
    (mmpose / "annotations/mpii_val.json").write_text(json.dumps(doc[3:]))
    report = convert(SourceSpec(source="mpii", meta="mpii", root=str(mmpose)), tmp_path / "out")
    assert report.counts == {"train": {"images": 3, "annotations": 3}, "val": {"images": 2, "annotations": 2}}


def _drop_joint(entries: list[dict[str, Any]]) -> None:
    entries[1]["joints"].pop()
    entries[1]["joints_vis"].pop()


def _nan_joint(entries: list[dict[str, Any]]) -> None:
    entries[2]["joints"][3][0] = float("nan")


def _no_joints(entries: list[dict[str, Any]]) -> None:
    del entries[3]["joints"]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            _drop_joint,
            "[entry 1 (052475643.jpg)]: field 'keypoints': has 15 keypoints but the dataset meta 'mpii' has 16",
        ),
        (_nan_joint, "[entry 2 (051423444.jpg)]: field 'keypoints': contains NaN"),
        (_no_joints, "entry 3 (004645041.jpg): field 'joints': is missing"),
    ],
)
def test_bad_entries_are_rejected(sample: Path, tmp_path: Path, edit: Any, expected: str) -> None:
    src = _broken_copy(sample, tmp_path / "src", edit)
    with pytest.raises(DataValidationError) as exc:
        convert(_spec(src), tmp_path / "out")
    assert f"{src / 'test_mpii.json'}: " in str(exc.value)
    assert expected in str(exc.value)
    assert not (tmp_path / "out").exists()


def test_missing_image_is_rejected(sample: Path, tmp_path: Path) -> None:
    src = _broken_copy(sample, tmp_path / "src", lambda entries: None)
    (src / "060754485.jpg").unlink()
    with pytest.raises(DataValidationError, match=r"test_mpii.json: image id=5 \(060754485.jpg\): field 'file_name'"):
        convert(_spec(src), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli(sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["convert", "--format", "mpii", "--root", str(sample), "--ann", "test_mpii.json"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "annotations" / "train.json").is_file()
    src = _broken_copy(sample, tmp_path / "src", _no_joints)
    argv[4] = str(src)
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "out2")]) == 2
    assert "entry 3 (004645041.jpg): field 'joints': is missing" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()
