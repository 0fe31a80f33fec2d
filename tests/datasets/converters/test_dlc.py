"""The ``dlc`` converter on the mirror-mouse DeepLabCut sample and on small variants and broken copies."""

from __future__ import annotations

import csv
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
    return shared_data / "mirror_mouse"


@pytest.fixture(scope="module")
def rows(sample: Path) -> list[list[str]]:
    with (sample / "CollectedData.csv").open(newline="") as fh:
        return list(csv.reader(fh))


def _spec(root: Path, **kw: Any) -> SourceSpec:
    return SourceSpec(source="dlc", meta="mirror_mouse", root=str(root), **kw)


def _by_image(out: Path) -> dict[str, list[dict[str, Any]]]:
    """Annotations of both splits keyed by the source image path."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for split in ("train", "val"):
        doc = json.loads((out / "annotations" / f"{split}.json").read_text())
        names = {img["id"]: img["file_name"].split("/", 1)[1] for img in doc["images"]}
        for name in names.values():
            by_name.setdefault(name, [])
        for ann in doc["annotations"]:
            by_name[names[ann["image_id"]]].append(ann)
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


def _project(sample: Path, dst: Path, rows: list[list[str]], images: list[str] | None = None) -> Path:
    """A DeepLabCut project folder at ``dst`` with ``rows`` as its CSV and the sample's images."""
    for name in images if images is not None else [r for r in {row[0] for row in rows[3:]} if r.endswith(".png")]:
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sample / name, dst / name)
    dst.mkdir(parents=True, exist_ok=True)
    with (dst / "CollectedData.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return dst


def test_sample_converts(sample: Path, rows: list[list[str]], tmp_path: Path) -> None:
    out = tmp_path / "out"
    convert(_spec(sample), out)
    n_rows = len(rows) - 3
    assert n_rows == 90  # the data README says 95 frames; the CSV has 90 rows (img01-img90)
    images = annotations = 0
    for split in ("train", "val"):
        coco = COCO(str(out / "annotations" / f"{split}.json"))
        images += len(coco.getImgIds())
        annotations += len(coco.getAnnIds())
        assert _oks_ap(out / "annotations" / f"{split}.json", load_meta("mirror_mouse").sigmas) == pytest.approx(1.0)
    assert (images, annotations) == (n_rows, n_rows)
    assert len(json.loads((out / "annotations" / "val.json").read_text())["images"]) == 9
    convert(_spec(sample), tmp_path / "again")
    for split in ("train", "val"):
        name = f"annotations/{split}.json"
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes()


def test_keypoints_flags_and_box(sample: Path, rows: list[list[str]], tmp_path: Path) -> None:
    convert(_spec(sample), tmp_path / "out")
    anns = _by_image(tmp_path / "out")
    kps = np.array(anns["labeled-data/img01.png"][0]["keypoints"]).reshape(17, 3)
    assert kps[0].tolist() == [77.25, 36.25, 2]  # paw1LH_top, no offset
    assert kps[4].tolist() == [0, 0, 0]  # tailBase_top: empty cells
    assert kps[16].tolist() == [74.75, 386.25, 2]  # obsLow_bot
    labelled = sum(1 for row in rows[3:] for x in row[1::2] if x)
    assert labelled == 1396
    assert sum(a["keypoints"][2::3].count(2) for v in anns.values() for a in v) == labelled
    # img03.png: labelled extent +15% on each side, clipped to the 396x406 image.
    kps = np.array(anns["labeled-data/img03.png"][0]["keypoints"]).reshape(17, 3)
    xy = kps[kps[:, 2] > 0, :2]
    (x1, y1), (x2, y2) = xy.min(0), xy.max(0)
    dx, dy = 0.15 * (x2 - x1), 0.15 * (y2 - y1)
    b = [max(x1 - dx, 0), max(y1 - dy, 0), min(x2 + dx, 396), min(y2 + dy, 406)]
    np.testing.assert_allclose(anns["labeled-data/img03.png"][0]["bbox"], [b[0], b[1], b[2] - b[0], b[3] - b[1]])


def test_bodyparts_are_matched_by_name(sample: Path, rows: list[list[str]], tmp_path: Path) -> None:
    pairs = list(range(1, len(rows[0]), 2))[::-1]  # bodyparts in reverse order
    shuffled = [[row[0]] + [row[j + d] for j in pairs for d in (0, 1)] for row in rows[:13]]
    src = _project(sample, tmp_path / "src", shuffled)
    convert(_spec(src), tmp_path / "out")
    convert(_spec(sample), tmp_path / "ref")
    got, ref = _by_image(tmp_path / "out"), _by_image(tmp_path / "ref")
    for name, anns in got.items():
        assert anns[0]["keypoints"] == ref[name][0]["keypoints"]


def test_three_column_paths_and_backslashes(sample: Path, rows: list[list[str]], tmp_path: Path) -> None:
    """Newer DeepLabCut writes the path over three columns; Windows projects use backslashes."""
    header = [[r[0], "", "", *r[1:]] for r in rows[:3]]
    data = [
        ["labeled-data", "vid1", "img01.png", *rows[3][1:]],
        ["labeled-data\\vid1\\img02.png", "", "", *rows[4][1:]],
    ]
    src = tmp_path / "src"
    for name in ("img01.png", "img02.png"):
        (src / "labeled-data" / "vid1").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sample / "labeled-data" / name, src / "labeled-data" / "vid1" / name)
    _project(sample, src, header + data, images=[])
    convert(_spec(src, val_fraction=0.0), tmp_path / "out")
    anns = _by_image(tmp_path / "out")
    assert set(anns) == {"labeled-data/vid1/img01.png", "labeled-data/vid1/img02.png"}
    assert anns["labeled-data/vid1/img01.png"][0]["keypoints"][:3] == [77.25, 36.25, 2]


def test_multi_animal(sample: Path, rows: list[list[str]], tmp_path: Path) -> None:
    """An ``individuals`` header row: one annotation per individual with a labelled keypoint."""
    width = len(rows[0]) - 1
    header = [
        ["scorer", *rows[0][1:] * 2],
        ["individuals", *["mouse1"] * width, *["mouse2"] * width],
        ["bodyparts", *rows[1][1:] * 2],
        ["coords", *rows[2][1:] * 2],
    ]
    data = [
        [rows[3][0], *rows[3][1:], *rows[4][1:]],  # two mice
        [rows[4][0], *rows[4][1:], *[""] * width],  # mouse2 not in the frame
        [rows[5][0], *[""] * (2 * width)],  # nobody labelled
    ]
    src = _project(sample, tmp_path / "src", header + data)
    convert(_spec(src, val_fraction=0.0), tmp_path / "out")
    anns = _by_image(tmp_path / "out")
    assert [len(anns[r[0]]) for r in data] == [2, 1, 0]
    assert anns[rows[3][0]][1]["keypoints"][:3] == [float(rows[4][1]), float(rows[4][2]), 2]


def _reject(src: Path, out: Path, *expected: str) -> None:
    with pytest.raises(DataValidationError) as exc:
        convert(_spec(src), out)
    for text in (str(src / "CollectedData.csv"), *expected):
        assert text in str(exc.value)
    assert not out.exists()


def test_non_numeric_cell(sample: Path, rows: list[list[str]], tmp_path: Path) -> None:
    bad = [list(r) for r in rows]
    bad[4][1] = "abc"
    src = _project(sample, tmp_path / "src", bad)
    _reject(src, tmp_path / "out", "row 5 (labeled-data/img02.png): field 'paw1LH_top x': 'abc' is not a number")
    report = convert(_spec(src, drop_invalid=True), tmp_path / "kept")
    assert sum(c["images"] for c in report.counts.values()) == len(rows) - 4
    assert any("is not a number" in reason for reason in report.dropped_reasons)


def test_bodyparts_not_in_meta(sample: Path, rows: list[list[str]], tmp_path: Path) -> None:
    bad = [list(r) for r in rows[:6]]
    bad[1] = [c.replace("obsLow_bot", "obsLow_bottom") for c in bad[1]]
    src = _project(sample, tmp_path / "src", bad)
    _reject(src, tmp_path / "out", "field 'bodyparts'", "missing ['obsLow_bot']", "extra ['obsLow_bottom']")


def test_missing_image(sample: Path, rows: list[list[str]], tmp_path: Path) -> None:
    src = _project(sample, tmp_path / "src", rows[:6])
    (src / "labeled-data" / "img02.png").unlink()
    _reject(src, tmp_path / "out", "(labeled-data/img02.png): field 'file_name'", "does not exist")


def test_cli(sample: Path, rows: list[list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _project(sample, tmp_path / "src", rows[:8])
    argv = ["convert", "--format", "dlc", "--root", str(src)]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 0
    assert sum(c["images"] for c in json.loads(capsys.readouterr().out)["counts"].values()) == 5
    (src / "CollectedData.csv").write_text((src / "CollectedData.csv").read_text().replace("77.25", "x77"))
    assert main([*argv, "--out", str(tmp_path / "out2")]) == 2
    assert "row 4 (labeled-data/img01.png): field 'paw1LH_top x': 'x77' is not a number" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()
