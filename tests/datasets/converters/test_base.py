"""The shared validation layer: every bad input is reported with file, record and field, and nothing is written.

Each case in :data:`BAD_INPUTS` breaks one thing in a small, valid COCO keypoint
fixture (three images, three annotations) and runs through the ``coco`` converter.
The same table drives the reject, drop-invalid and CLI tests, and generates the bad
input table of the README (checked by ``test_readme_lists_every_bad_input``). The table is
why this module is long (~500 lines): every row is one bad input, and one table keeps the
four uses of it in step.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from posecore.cli import main
from posecore.datasets.converters import SourceSpec, convert
from posecore.metainfo import load_meta
from posecore.validation import DataValidationError

SHARED_DATA = Path(
    os.environ.get("POSECORE_SHARED_DATA", Path(__file__).resolve().parents[3].parent / "shared" / "data")
)
SAMPLE_IMAGES = SHARED_DATA / "mmpose_samples" / "coco"
K = 17


def _keypoints(x0: float, y0: float) -> list[float]:
    """17 labelled COCO keypoints on a small grid starting at (x0, y0)."""
    out: list[float] = []
    for i in range(K):
        out += [x0 + 4 * (i % 4), y0 + 5 * (i // 4), 2]
    return out


def _write_images(folder: Path) -> list[tuple[str, int, int]]:
    """Two distinct JPEGs plus a third record's file; real COCO images when the shared data is there."""
    folder.mkdir(parents=True, exist_ok=True)
    real = sorted(SAMPLE_IMAGES.glob("*.jpg"))[:2] if SAMPLE_IMAGES.is_dir() else []
    names = []
    for i in range(2):
        name = f"img{i}.jpg"
        if len(real) == 2:
            shutil.copyfile(real[i], folder / name)
        else:
            Image.new("RGB", (64 + 16 * i, 48), (40 * i, 90, 160)).save(folder / name, quality=90)
        names.append(name)
    shutil.copyfile(folder / names[0], folder / "img2.jpg")
    names.append("img2.jpg")
    out = []
    for name in names:
        with Image.open(folder / name) as im:
            out.append((name, *im.size))
    return out


def good_doc(images: list[tuple[str, int, int]]) -> dict[str, Any]:
    """Images 1-3; annotations 7 and 8 on image 1, 9 on image 2; image 3 has none."""
    return {
        "images": [{"id": i + 1, "file_name": n, "width": w, "height": h} for i, (n, w, h) in enumerate(images)],
        "annotations": [
            {"id": 7, "image_id": 1, "bbox": [2.0, 3.0, 20.0, 30.0], "keypoints": _keypoints(4, 5), "iscrowd": 0},
            {"id": 8, "image_id": 1, "bbox": [20.0, 10.0, 20.0, 30.0], "keypoints": _keypoints(22, 12), "iscrowd": 0},
            {"id": 9, "image_id": 2, "bbox": [5.0, 5.0, 20.0, 30.0], "keypoints": _keypoints(6, 6), "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "person", "keypoints": [f"k{i}" for i in range(K)]}],
    }


@dataclass(frozen=True)
class Source:
    root: Path
    ann: Path
    doc: dict[str, Any]

    def write(self, doc: dict[str, Any] | None = None) -> None:
        self.ann.write_text(json.dumps(self.doc if doc is None else doc))

    def spec(self, **kw: Any) -> SourceSpec:
        return SourceSpec(source="coco", meta="coco", root=str(self.root), annotations={"all": self.ann.name}, **kw)


def make_source(tmp_path: Path) -> Source:
    root = tmp_path / "src"
    src = Source(root, root / "person_keypoints.json", good_doc(_write_images(root)))
    src.write()
    return src


def _ann(doc: dict[str, Any], aid: int) -> dict[str, Any]:
    return next(a for a in doc["annotations"] if a["id"] == aid)


def _truncate(src: Source, doc: dict[str, Any]) -> None:
    data = (src.root / "img1.jpg").read_bytes()
    (src.root / "img1.jpg").unlink()
    (src.root / "img1.jpg").write_bytes(data[: len(data) // 3])


def _text_as_jpg(src: Source, doc: dict[str, Any]) -> None:
    (src.root / "notes.jpg").write_text("these are my notes, not an image\n")
    doc["images"][1]["file_name"] = "notes.jpg"


def _escape_dotdot(src: Source, doc: dict[str, Any]) -> None:
    shutil.copyfile(src.root / "img1.jpg", src.root.parent / "x.jpg")  # exists, but outside the root
    doc["images"][1]["file_name"] = "../x.jpg"


def _escape_absolute(src: Source, doc: dict[str, Any]) -> None:
    doc["images"][1]["file_name"] = str((src.root / "img1.jpg").resolve())


def _not_json(src: Source, doc: dict[str, Any]) -> None:
    src.ann.write_text("images:\n  - id: 1\n")  # YAML, not JSON


def _set(
    path: Callable[[dict[str, Any]], dict[str, Any]], key: str, value: Any
) -> Callable[[Source, dict[str, Any]], None]:
    def mutate(src: Source, doc: dict[str, Any]) -> None:
        path(doc)[key] = value

    return mutate


def _flag(aid: int, k: int, value: Any) -> Callable[[Source, dict[str, Any]], None]:
    def mutate(src: Source, doc: dict[str, Any]) -> None:
        _ann(doc, aid)["keypoints"][3 * k + 2] = value

    return mutate


def _coord(aid: int, k: int, value: float) -> Callable[[Source, dict[str, Any]], None]:
    def mutate(src: Source, doc: dict[str, Any]) -> None:
        _ann(doc, aid)["keypoints"][3 * k] = value

    return mutate


@dataclass(frozen=True)
class BadInput:
    """One broken input, what the error must say, and what ``drop_invalid`` keeps."""

    id: str
    description: str
    mutate: Callable[[Source, dict[str, Any]], None]
    record: str
    field: str
    message: str
    dropped: tuple[int, int] | None  # (images, annotations) dropped; None: fails even with drop_invalid


BAD_INPUTS = [
    BadInput(
        "missing-image",
        "image file does not exist",
        _set(lambda d: d["images"][1], "file_name", "gone.jpg"),
        "image id=2 (gone.jpg)",
        "file_name",
        "does not exist",
        (1, 1),
    ),
    BadInput(
        "truncated-jpeg",
        "truncated JPEG (first third of the bytes)",
        _truncate,
        "image id=2 (img1.jpg)",
        "file_name",
        "cannot be decoded",
        (1, 1),
    ),
    BadInput(
        "text-as-jpg",
        "a text file named .jpg",
        _text_as_jpg,
        "image id=2 (notes.jpg)",
        "file_name",
        "cannot be decoded",
        (1, 1),
    ),
    BadInput(
        "keypoint-count",
        "16 keypoints where the meta has 17",
        lambda s, d: _ann(d, 7).update(keypoints=_keypoints(4, 5)[:-3]),
        "annotation id=7",
        "keypoints",
        "has 16 keypoints but the dataset meta 'coco' has 17",
        (0, 1),
    ),
    BadInput(
        "nan",
        "NaN in keypoints",
        _coord(7, 4, float("nan")),
        "annotation id=7",
        "keypoints",
        "contains NaN, inf or non-numbers (keypoint 4 (right_ear))",
        (0, 1),
    ),
    BadInput(
        "inf",
        "inf in keypoints",
        _coord(7, 0, float("inf")),
        "annotation id=7",
        "keypoints",
        "contains NaN, inf or non-numbers (keypoint 0 (nose))",
        (0, 1),
    ),
    BadInput(
        "negative-bbox",
        "negative bbox width",
        _set(lambda d: _ann(d, 7), "bbox", [2.0, 3.0, -20.0, 30.0]),
        "annotation id=7",
        "bbox",
        "negative size w=-20.0, h=30.0",
        (0, 1),
    ),
    BadInput(
        "duplicate-image-id",
        "two images with id 2",
        _set(lambda d: d["images"][2], "id", 2),
        "image id=2 (img2.jpg)",
        "id",
        "duplicate image id",
        (2, 1),
    ),
    BadInput(
        "duplicate-annotation-id",
        "two annotations with id 7",
        _set(lambda d: _ann(d, 8), "id", 7),
        "annotation id=7",
        "id",
        "duplicate annotation id",
        (1, 2),
    ),
    BadInput(
        "dangling-image-id",
        "annotation refers to a missing image",
        _set(lambda d: _ann(d, 7), "image_id", 99),
        "annotation id=7",
        "image_id",
        "refers to image id 99, which is not in 'images'",
        (0, 1),
    ),
    BadInput(
        "escape-dotdot",
        "file name '../x.jpg' (outside the data root)",
        _escape_dotdot,
        "image id=2 (../x.jpg)",
        "file_name",
        "'../x.jpg' escapes the data root",
        (1, 1),
    ),
    BadInput(
        "escape-absolute",
        "absolute file name",
        _escape_absolute,
        "image id=2 (/",
        "file_name",
        "escapes the data root",
        (1, 1),
    ),
    BadInput(
        "size-mismatch",
        "width/height differ from the image file",
        _set(lambda d: d["images"][1], "width", 1234),
        "image id=2 (img1.jpg)",
        "width/height",
        "does not match the image file's",
        (1, 1),
    ),
    BadInput(
        "visibility-3",
        "visibility flag 3",
        _flag(9, 3, 3),
        "annotation id=9",
        "keypoints",
        "visibility flags must be 0, 1 or 2, got 3 (keypoint 3 (left_ear))",
        (1, 1),
    ),
    BadInput("not-json", "annotation file is not JSON", _not_json, "file", "-", "not valid JSON", None),
]


def break_source(tmp_path: Path, case: BadInput) -> Source:
    src = make_source(tmp_path)
    doc = json.loads(json.dumps(src.doc))
    case.mutate(src, doc)
    if case.mutate is not _not_json:
        src.write(doc)
    return src


def _out_dir_state(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_fixture_is_valid(tmp_path: Path) -> None:
    src = make_source(tmp_path)
    report = convert(src.spec(val_fraction=0.0), tmp_path / "out")
    assert report.counts["train"] == {"images": 3, "annotations": 3}
    assert report.dropped == {"images": 0, "annotations": 0}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c.id for c in BAD_INPUTS])
def test_bad_input_is_rejected_with_file_record_and_field(tmp_path: Path, case: BadInput) -> None:
    src = break_source(tmp_path, case)
    out = tmp_path / "out"
    with pytest.raises(DataValidationError) as exc:
        convert(src.spec(), out)
    matching = [p for p in exc.value.problems if case.record in p.record and p.field == case.field]
    assert matching, f"no problem for {case.record} field {case.field!r} in:\n{exc.value}"
    assert case.message in matching[0].message
    assert matching[0].file == str(src.ann)
    text = str(exc.value)
    assert str(src.ann) in text and case.record in text and f"field '{case.field}'" in text
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")], "temporary output left behind"


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c.id for c in BAD_INPUTS])
def test_bad_input_leaves_existing_output_unchanged(tmp_path: Path, case: BadInput) -> None:
    good = make_source(tmp_path / "good")
    out = tmp_path / "out"
    convert(good.spec(), out)
    before = _out_dir_state(out)
    src = break_source(tmp_path, case)
    with pytest.raises(DataValidationError):
        convert(src.spec(), out)
    assert _out_dir_state(out) == before


@pytest.mark.parametrize("case", [c for c in BAD_INPUTS if c.dropped], ids=[c.id for c in BAD_INPUTS if c.dropped])
def test_drop_invalid_keeps_the_good_records(tmp_path: Path, case: BadInput) -> None:
    src = break_source(tmp_path, case)
    out = tmp_path / "out"
    report = convert(src.spec(drop_invalid=True, val_fraction=0.0), out)
    assert case.dropped is not None
    n_images, n_anns = case.dropped
    assert report.dropped == {"images": n_images, "annotations": n_anns}
    written = json.loads((out / "annotations" / "train.json").read_text())
    assert len(written["images"]) == 3 - n_images
    assert len(written["annotations"]) == 3 - n_anns
    for img in written["images"]:
        assert (out / "images" / img["file_name"]).is_file()
    ids = {img["id"] for img in written["images"]}
    assert all(a["image_id"] in ids for a in written["annotations"])
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["dropped"] == report.dropped
    assert any(
        reason.startswith(f"{case.field}: ") and case.message.split(" (")[0] in reason
        for reason in on_disk["dropped_reasons"]
    )


def test_drop_invalid_still_fails_when_nothing_is_left(tmp_path: Path) -> None:
    src = break_source(tmp_path, next(c for c in BAD_INPUTS if c.id == "not-json"))
    with pytest.raises(DataValidationError, match="no valid image is left"):
        convert(src.spec(drop_invalid=True), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_all_problems_are_reported_together(tmp_path: Path) -> None:
    src = make_source(tmp_path)
    doc = json.loads(json.dumps(src.doc))
    cases = [c for c in BAD_INPUTS if c.id in ("missing-image", "nan", "negative-bbox", "visibility-3")]
    for case in cases:
        case.mutate(src, doc)
    _ann(doc, 8)["image_id"] = 42
    src.write(doc)
    with pytest.raises(DataValidationError) as exc:
        convert(src.spec(), tmp_path / "out")
    text = str(exc.value)
    assert text.startswith("5 problem(s) in the input data:")
    for case in cases:
        assert case.message.split(" (")[0] in text
    assert "annotation id=8 [annotations[1]]: field 'image_id': refers to image id 42" in text


def test_problem_names_the_native_record(tmp_path: Path) -> None:
    src = break_source(tmp_path, next(c for c in BAD_INPUTS if c.id == "visibility-3"))
    with pytest.raises(DataValidationError) as exc:
        convert(src.spec(), tmp_path / "out")
    assert exc.value.problems[0].record == "annotation id=9 [annotations[2]]"


@pytest.mark.parametrize(
    "value",
    [[1], "1", True, None],
    ids=["list", "string", "bool", "missing"],
)
def test_malformed_ids_are_problems_not_crashes(tmp_path: Path, value: Any) -> None:
    src = make_source(tmp_path)
    doc = json.loads(json.dumps(src.doc))
    doc["images"][2]["id"] = value
    _ann(doc, 9)["image_id"] = value
    _ann(doc, 8)["id"] = value
    src.write(doc)
    with pytest.raises(DataValidationError) as exc:
        convert(src.spec(), tmp_path / "out")
    fields = sorted(p.field for p in exc.value.problems)
    assert fields == ["id", "id", "image_id"]
    report = convert(src.spec(drop_invalid=True, val_fraction=0.0), tmp_path / "out")
    written = json.loads((tmp_path / "out" / "annotations" / "train.json").read_text())
    assert [i["id"] for i in written["images"]] == [1, 2]
    assert [a["id"] for a in written["annotations"]] == [7]
    assert report.dropped == {"images": 1, "annotations": 2}


def test_records_sharing_an_image_file_are_written_once(tmp_path: Path) -> None:
    src = make_source(tmp_path)
    doc = json.loads(json.dumps(src.doc))
    doc["images"][2].update(file_name=doc["images"][0]["file_name"])
    src.write(doc)
    report = convert(src.spec(val_fraction=0.0), tmp_path / "out")
    assert report.counts["train"]["images"] == 3


def test_missing_width_and_height_are_filled_from_the_file(tmp_path: Path) -> None:
    src = make_source(tmp_path)
    doc = json.loads(json.dumps(src.doc))
    del doc["images"][0]["width"], doc["images"][0]["height"], doc["images"][1]["height"]
    src.write(doc)
    convert(src.spec(val_fraction=0.0), tmp_path / "out")
    written = json.loads((tmp_path / "out" / "annotations" / "train.json").read_text())
    sizes = [(i["width"], i["height"]) for i in written["images"]]
    assert sizes == [(w, h) for _, w, h in _image_sizes(src)]


def _image_sizes(src: Source) -> list[tuple[str, int, int]]:
    out = []
    for img in src.doc["images"]:
        with Image.open(src.root / img["file_name"]) as im:
            out.append((img["file_name"], *im.size))
    return out


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c.id for c in BAD_INPUTS])
def test_cli_exits_2_and_prints_the_problems(
    tmp_path: Path, case: BadInput, capsys: pytest.CaptureFixture[str]
) -> None:
    src = break_source(tmp_path, case)
    out = tmp_path / "out"
    argv = ["convert", "--format", "coco", "--root", str(src.root), "--ann", f"all={src.ann.name}", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "\nerror: " in f"\n{err}"  # a line of its own, after the progress lines
    assert "Traceback" not in err
    assert f"{src.ann}: {case.record}" in err and f"field '{case.field}'" in err and case.message in err
    assert "--drop-invalid" in err
    assert not out.exists()


def test_cli_exits_0_on_good_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_source(tmp_path)
    out = tmp_path / "out"
    argv = ["convert", "--format", "coco", "--root", str(src.root), "--ann", f"all={src.ann.name}", "--out", str(out)]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["counts"]["train"]["images"] + printed["counts"]["val"]["images"] == 3
    assert (out / "annotations" / "train.json").is_file() and (out / "meta.yaml").is_file()


def test_drop_invalid_counts_records_the_converter_omitted(tmp_path: Path) -> None:
    """A DLC row with a non-number cell never reaches the shared layer; it still counts as dropped."""
    meta = load_meta("mirror_mouse")
    root = tmp_path / "dlc"
    (root / "labeled-data" / "v").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (40, 30), (i * 40, 0, 0)).save(root / "labeled-data" / "v" / f"img{i}.png")
    names = meta.keypoint_names
    header = [
        ["scorer"] + ["me"] * (2 * len(names)),
        ["bodyparts"] + [n for n in names for _ in (0, 1)],
        ["coords"] + ["x", "y"] * len(names),
    ]
    rows = [[f"labeled-data/v/img{i}.png"] + ["5.0", "6.0"] * len(names) for i in range(3)]
    rows[1][1] = "oops"
    with (root / "CollectedData.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(header + rows)
    spec = SourceSpec(source="dlc", meta="mirror_mouse", root=str(root), drop_invalid=True, val_fraction=0.0)
    report = convert(spec, tmp_path / "out")
    assert report.dropped["annotations"] == 1
    assert report.counts["train"] == {"images": 2, "annotations": 2}
    assert any("oops" in reason or "number" in reason for reason in report.dropped_reasons)


def test_drop_invalid_drops_images_whose_people_were_all_dropped(tmp_path: Path) -> None:
    """Image 2's only person is bad: the image goes too, rather than becoming a "nobody here" example."""
    src = make_source(tmp_path)
    doc = json.loads(json.dumps(src.doc))
    _ann(doc, 9)["keypoints"][0] = float("nan")
    _ann(doc, 7)["keypoints"][0] = float("inf")
    src.ann.write_text(json.dumps(doc).replace("NaN", "NaN"))
    report = convert(src.spec(drop_invalid=True, val_fraction=0.0), tmp_path / "out")
    out = json.loads((tmp_path / "out" / "annotations" / "train.json").read_text())
    assert sorted(i["id"] for i in out["images"]) == [1, 3], "image 1 keeps person 8; image 3 never had people"
    assert [a["id"] for a in out["annotations"]] == [8]
    assert report.dropped == {"images": 1, "annotations": 2}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c.id for c in BAD_INPUTS])
def test_readme_lists_every_bad_input(case: BadInput) -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    row = next((line for line in readme.splitlines() if line.startswith(f"| {case.description} |")), None)
    assert row is not None, f"README bad-input table has no row for {case.description!r}"
    assert case.message in row
