"""The ``coco`` and ``synthetic`` converters, and every real COCO-style sample end to end.

:data:`SAMPLES` lists each real COCO-family sample (any converter built on the COCO
parser, any meta); each one is converted, re-read with pycocotools, checked against
its source counts, and its ground truth scored as predictions must give AP = 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from posecore.cli import main
from posecore.datasets.converters import SourceSpec, convert, default_meta
from posecore.metainfo import load_meta
from posecore.validation import DataValidationError

# (test id, format, meta, folder under mmpose_samples, annotation file)
SAMPLES = [
    ("coco", "coco", "coco", "coco", "test_coco.json"),
    ("crowdpose", "crowdpose", "crowdpose", "crowdpose", "test_crowdpose.json"),
    ("aic", "aic", "aic", "aic", "test_aic.json"),
    ("coco_wholebody", "coco_wholebody", "coco_wholebody", "coco", "test_coco_wholebody.json"),
    ("onehand10k", "coco", "onehand10k", "onehand10k", "test_onehand10k.json"),
    ("wflw", "coco", "wflw", "wflw", "test_wflw.json"),
    ("ap10k", "coco", "ap10k", "ap10k", "test_ap10k.json"),
]


def load_split(out: Path, split: str) -> COCO:
    return COCO(str(out / "annotations" / f"{split}.json"))


def gt_as_predictions_stats(gt: COCO, sigmas: tuple[float, ...]) -> np.ndarray | None:
    """COCOeval keypoint stats of the ground truth scored as predictions; None when nothing is scorable."""
    preds = [{**a, "score": 1.0} for a in gt.dataset["annotations"] if not a["iscrowd"] and a["num_keypoints"] > 0]
    if not preds:
        return None
    ev = COCOeval(gt, gt.loadRes(preds), "keypoints")
    ev.params.kpt_oks_sigmas = np.array(sigmas)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev.stats


def check_canonical(out: Path, source_docs: list[dict[str, Any]], meta_name: str) -> dict[str, COCO]:
    """Counts equal the sources', every image file exists, and the ground truth scores AP = 1."""
    meta = load_meta(meta_name)
    splits = {split: load_split(out, split) for split in ("train", "val")}
    n_images = sum(len(s.dataset["images"]) for s in splits.values())
    n_anns = sum(len(s.dataset["annotations"]) for s in splits.values())
    assert n_images == sum(len(d["images"]) for d in source_docs)
    assert n_anns == sum(len(d["annotations"]) for d in source_docs)
    scored = 0
    for gt in splits.values():
        assert gt.dataset["categories"] == [meta.coco_category()]
        for img in gt.dataset["images"]:
            assert (out / "images" / img["file_name"]).is_file()
            assert set(img) >= {"id", "file_name", "width", "height"}
        for ann in gt.dataset["annotations"]:
            assert len(ann["keypoints"]) == 3 * meta.num_keypoints
            assert ann["category_id"] == 1
            assert "segmentation" not in ann
            assert ann["num_keypoints"] == sum(1 for v in ann["keypoints"][2::3] if v > 0)
        stats = gt_as_predictions_stats(gt, meta.sigmas)
        if stats is not None:
            assert stats[0] == pytest.approx(1.0)
            scored += 1
    assert scored, "no split had an annotation with keypoints to score"
    return splits


@pytest.mark.real_data
@pytest.mark.parametrize(("fmt", "meta", "folder", "file"), [s[1:] for s in SAMPLES], ids=[s[0] for s in SAMPLES])
def test_real_sample_converts_and_scores_ap_1(
    shared_data: Path, tmp_path: Path, fmt: str, meta: str, folder: str, file: str
) -> None:
    root = shared_data / "mmpose_samples" / folder
    spec = SourceSpec(source=fmt, meta=meta, root=str(root), annotations={"all": file})
    report = convert(spec, tmp_path / "out")
    assert report.dropped == {"images": 0, "annotations": 0}
    check_canonical(tmp_path / "out", [json.loads((root / file).read_text())], meta)


@pytest.mark.real_data
def test_mmpose_coco_sample_gives_ap_and_ar_1(shared_data: Path, tmp_path: Path) -> None:
    root = shared_data / "mmpose_samples" / "coco"
    convert(
        SourceSpec(source="coco", root=str(root), annotations={"all": "test_coco.json"}, val_fraction=0.0),
        tmp_path / "out",
    )
    gt = load_split(tmp_path / "out", "train")
    assert (len(gt.dataset["images"]), len(gt.dataset["annotations"])) == (4, 14)
    stats = gt_as_predictions_stats(gt, load_meta("coco").sigmas)
    assert stats is not None
    assert stats[0] == pytest.approx(1.0)  # AP
    assert stats[5] == pytest.approx(1.0)  # AR


@pytest.mark.real_data
def test_coco_mini_keeps_its_own_split(shared_data: Path, tmp_path: Path) -> None:
    root = shared_data / "coco_mini"
    report = convert(SourceSpec(source="coco", meta="coco", root=str(root)), tmp_path / "out")  # default COCO layout
    sources = {
        s: json.loads((root / "annotations" / f"person_keypoints_{s}2017.json").read_text()) for s in ("train", "val")
    }
    assert report.counts["train"]["images"] == 80
    assert report.counts["val"]["images"] == 79
    for split, doc in sources.items():
        # the source's crowd regions and zero-keypoint people are kept; the loader filters later
        assert report.counts[split]["annotations"] == len(doc["annotations"])
    splits = check_canonical(tmp_path / "out", list(sources.values()), "coco")
    for split, gt in splits.items():
        src_ids = {i["id"] for i in sources[split]["images"]}
        assert {i["id"] for i in gt.dataset["images"]} == src_ids
        assert all(i["file_name"].startswith(f"{split}/") for i in gt.dataset["images"])
        crowd = [a for a in gt.dataset["annotations"] if a["iscrowd"]]
        assert len(crowd) == sum(a["iscrowd"] for a in sources[split]["annotations"])
        assert any(a["num_keypoints"] == 0 for a in gt.dataset["annotations"])


@pytest.mark.real_data
def test_coco_normalisation_drops_extra_fields(shared_data: Path, tmp_path: Path) -> None:
    root = shared_data / "mmpose_samples" / "coco"
    convert(
        SourceSpec(source="coco", root=str(root), annotations={"all": "test_coco.json"}, val_fraction=0.0),
        tmp_path / "out",
    )
    doc = json.loads((tmp_path / "out" / "annotations" / "train.json").read_text())
    assert {k for img in doc["images"] for k in img} == {"id", "file_name", "width", "height"}
    assert {k for a in doc["annotations"] for k in a} == {
        "id",
        "image_id",
        "bbox",
        "keypoints",
        "num_keypoints",
        "area",
        "iscrowd",
        "category_id",
    }
    src = {a["id"]: a for a in json.loads((root / "test_coco.json").read_text())["annotations"]}
    for ann in doc["annotations"]:
        assert ann["keypoints"] == src[ann["id"]]["keypoints"]
        assert ann["bbox"] == src[ann["id"]]["bbox"]
        assert ann["area"] == src[ann["id"]]["area"]


@pytest.mark.real_data
def test_wrong_meta_reports_the_keypoint_count(shared_data: Path, tmp_path: Path) -> None:
    root = shared_data / "mmpose_samples" / "onehand10k"
    spec = SourceSpec(source="coco", meta="coco", root=str(root), annotations={"all": "test_onehand10k.json"})
    with pytest.raises(DataValidationError) as exc:
        convert(spec, tmp_path / "out")
    assert len(exc.value.problems) == 4
    assert "has 21 keypoints but the dataset meta 'coco' has 17" in str(exc.value)


@pytest.mark.real_data
def test_cli_converts_with_meta(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = shared_data / "mmpose_samples" / "onehand10k"
    argv = [
        "convert",
        "--format",
        "coco",
        "--meta",
        "onehand10k",
        "--root",
        str(root),
        "--ann",
        "all=test_onehand10k.json",
        "--out",
        str(tmp_path / "out"),
    ]
    assert main(argv) == 0
    counts = json.loads(capsys.readouterr().out)["counts"]
    assert counts["train"]["images"] + counts["val"]["images"] == 4
    assert "name: onehand10k" in (tmp_path / "out" / "meta.yaml").read_text()


# --- small generated fixtures: always run ---------------------------------------------


def _image(path: Path, size: tuple[int, int] = (64, 48)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 80, 40)).save(path)


def _person(aid: int, image_id: int, k: int = 17, category_id: int = 1) -> dict[str, Any]:
    kps: list[float] = []
    for i in range(k):
        kps += [4.0 + i, 6.0 + i % 5, 2]
    return {
        "id": aid,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [2.0, 2.0, 40.0, 30.0],
        "keypoints": kps,
    }


def _write(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def test_synthetic_default_layout(tmp_path: Path) -> None:
    root = tmp_path / "synthetic"
    for split, n in (("train", 3), ("val", 2)):
        images = []
        for i in range(n):
            name = f"{i:06d}.jpg"  # relative to images/<split>/, as stages/synth.py writes it
            _image(root / "images" / split / name)
            images.append({"id": i + 1, "file_name": name, "width": 64, "height": 48})
        anns = [_person(10 + i, i + 1) for i in range(n)]
        _write(root / "annotations" / f"{split}.json", {"images": images, "annotations": anns})
    assert default_meta("synthetic") == "coco"
    report = convert(SourceSpec(source="synthetic", root=str(root)), tmp_path / "out")
    assert report.counts == {"train": {"images": 3, "annotations": 3}, "val": {"images": 2, "annotations": 2}}
    gt = load_split(tmp_path / "out", "val")
    assert gt.dataset["images"][0]["file_name"] == "val/000000.jpg"
    assert (tmp_path / "out" / "images" / "val" / "000000.jpg").is_file()


def test_multi_category_file_keeps_categories_with_the_meta_keypoint_count(tmp_path: Path) -> None:
    _image(tmp_path / "a.jpg")
    doc = {
        "images": [{"id": 1, "file_name": "a.jpg"}],
        "annotations": [_person(1, 1, category_id=3), _person(2, 1, category_id=5), _person(3, 1, k=21, category_id=9)],
        "categories": [
            {"id": 3, "name": "cat", "keypoints": [f"k{i}" for i in range(17)]},
            {"id": 5, "name": "dog", "keypoints": [f"k{i}" for i in range(17)]},
            {"id": 9, "name": "hand", "keypoints": [f"h{i}" for i in range(21)]},
        ],
    }
    _write(tmp_path / "a.json", doc)
    spec = SourceSpec(source="coco", root=str(tmp_path), annotations={"all": "a.json"}, val_fraction=0.0)
    convert(spec, tmp_path / "out")
    anns = load_split(tmp_path / "out", "train").dataset["annotations"]
    assert [(a["id"], a["category_id"]) for a in anns] == [(1, 1), (2, 1)]


def test_category_filter_never_hides_a_wrong_meta(tmp_path: Path) -> None:
    _image(tmp_path / "a.jpg")
    doc = {
        "images": [{"id": 1, "file_name": "a.jpg"}],
        "annotations": [_person(1, 1, k=21)],
        "categories": [{"id": 1, "name": "hand", "keypoints": [f"h{i}" for i in range(21)]}],
    }
    _write(tmp_path / "a.json", doc)
    with pytest.raises(DataValidationError, match="has 21 keypoints but the dataset meta 'coco' has 17"):
        convert(SourceSpec(source="coco", root=str(tmp_path), annotations={"all": "a.json"}), tmp_path / "out")


def test_float_flags_become_integers(tmp_path: Path) -> None:
    _image(tmp_path / "a.jpg")
    ann = _person(1, 1)
    ann["keypoints"][2::3] = [2.0, 1.0, 0.0] * 5 + [2.0, 2.0]
    _write(tmp_path / "a.json", {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [ann]})
    convert(
        SourceSpec(source="coco", root=str(tmp_path), annotations={"all": "a.json"}, val_fraction=0.0), tmp_path / "out"
    )
    written = json.loads((tmp_path / "out" / "annotations" / "train.json").read_text())["annotations"][0]
    assert all(type(v) is int for v in written["keypoints"][2::3])
    assert written["num_keypoints"] == 12


@pytest.mark.parametrize(
    ("content", "record", "field", "message"),
    [
        ("[1, 2]", "file", "-", "must be a JSON object with 'images' and 'annotations', got a list"),
        ('{"annotations": []}', "file", "images", "must be a list of image records; it is missing"),
        ('{"images": {}, "annotations": []}', "file", "images", "must be a list of image records; got dict"),
        ('{"images": [3], "annotations": []}', "images[0]", "-", "must be an object, got int"),
        ('{"images": [], "annotations": ["x"]}', "annotations[0]", "-", "must be an object, got str"),
        (
            '{"images": [], "annotations": [], "categories": 1}',
            "file",
            "categories",
            "must be a list of category objects",
        ),
        (b"\xff\xfe\x00bad", "file", "-", "not valid JSON"),
    ],
    ids=[
        "top-level-list",
        "no-images",
        "images-not-list",
        "image-not-object",
        "annotation-not-object",
        "categories",
        "binary",
    ],
)
def test_malformed_file_is_a_problem_not_a_crash(
    tmp_path: Path, content: str | bytes, record: str, field: str, message: str
) -> None:
    path = tmp_path / "a.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataValidationError) as exc:
        convert(SourceSpec(source="coco", root=str(tmp_path), annotations={"all": "a.json"}), tmp_path / "out")
    problem = exc.value.problems[0]
    assert (problem.file, problem.record, problem.field) == (str(path), record, field)
    assert message in problem.message
    assert not (tmp_path / "out").exists()


def test_missing_annotation_file_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="annotation file does not exist") as exc:
        convert(SourceSpec(source="coco", root=str(tmp_path)), tmp_path / "out")
    files = {p.file for p in exc.value.problems}
    assert files == {str(tmp_path / "annotations" / f"person_keypoints_{s}2017.json") for s in ("train", "val")}


@pytest.mark.parametrize(
    ("annotations", "message"),
    [({"test": "a.json"}, "unknown split"), ({"all": "a.json", "train": "b.json"}, "not both")],
    ids=["unknown-split", "all-and-train"],
)
def test_bad_split_names_are_problems(tmp_path: Path, annotations: dict[str, str], message: str) -> None:
    with pytest.raises(DataValidationError, match=message):
        convert(SourceSpec(source="coco", root=str(tmp_path), annotations=annotations), tmp_path / "out")


def test_images_folder_per_split(tmp_path: Path) -> None:
    for split in ("train", "val"):
        _image(tmp_path / f"pics_{split}" / "a.jpg")
        _write(
            tmp_path / f"{split}.json", {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [_person(1, 1)]}
        )
    spec = SourceSpec(
        source="coco",
        root=str(tmp_path),
        annotations={"train": "train.json", "val": "val.json"},
        images={"train": "pics_train", "val": "pics_val"},
    )
    report = convert(spec, tmp_path / "out")
    assert report.counts == {"train": {"images": 1, "annotations": 1}, "val": {"images": 1, "annotations": 1}}
