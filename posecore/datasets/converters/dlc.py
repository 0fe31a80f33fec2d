"""DeepLabCut labelled frames: ``CollectedData*.csv`` (single- and multi-animal).

Native layout: header rows, then one row per labelled frame::

    scorer,      rick, rick, ...                 (scorer,,,rick,... in the 3-column form)
    individuals, mouse1, mouse1, ...             (multi-animal projects only)
    bodyparts,   nose, nose, tail, tail, ...
    coords,      x, y, x, y, ...
    labeled-data/video1/img001.png, 12.5, 40.1, , , ...

The image path is the first column, or — in newer DeepLabCut, which writes a 3-level
row index — the first three columns (``labeled-data,video1,img001.png``); the number of
path columns is the number of leading cells of the ``coords`` row. Path parts are joined
with ``/`` and Windows ``\\`` separators become ``/``; paths are relative to the
DeepLabCut project folder, which is the image root (``data.images`` overrides).

Conventions:

* Bodyparts are matched to the meta's keypoints **by name**; the CSV's column order does
  not matter. Missing or extra bodyparts (per individual) are an error naming the file.
  Columns other than ``x``/``y`` (``likelihood`` in machine-labelled files) are ignored.
* An empty (or ``NaN``) cell is an unlabelled keypoint: v=0, x=y=0. A labelled one is
  v=2 (DeepLabCut has no occlusion flag). Coordinates are used as they are: DeepLabCut's
  labelling GUIs (matplotlib, napari) put pixel centres at integer coordinates from 0,
  which is already the canonical convention.
* One annotation per row (single-animal) or per individual with at least one labelled
  keypoint (multi-animal); a row with nothing labelled is an image without annotations.
  Multi-animal "unique bodyparts" (the ``single`` individual) are not supported.
* Box: the labelled keypoints' extent widened by ``bbox_margin`` times its width
  (height) on each side, clipped to the image ``[0, W] x [0, H]`` (from the header).

Records are named by spreadsheet row (the line number in the file) and image path.
Default layout: ``data.annotations.all = CollectedData.csv``; images under ``data.root``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posecore.datasets.converters._base import (
    RawSplit,
    SourceSpec,
    image_size,
    keypoint_box,
    register_converter,
    split_layout,
)
from posecore.metainfo import DatasetMeta
from posecore.validation import DataValidationError, Problem

HEADERS = ("scorer", "individuals", "bodyparts", "coords")
MISSING = ("", "nan", "NaN", "NAN")


@dataclass(frozen=True)
class _Columns:
    """Where each individual's keypoints live: ``xy[individual][k] = (x column, y column)``."""

    n_index: int
    width: int
    xy: dict[str, list[tuple[int, int]]]


def _fail(file: str, record: str, field: str, message: str) -> DataValidationError:
    return DataValidationError([Problem(file, record, field, message)], hint="Nothing was written.")


def _columns(header: dict[str, list[str]], file: str, meta: DatasetMeta) -> _Columns:
    coords = header["coords"]
    n_index = next((j for j in range(1, len(coords)) if coords[j].strip()), len(coords))
    width = len(coords)
    for name, row in header.items():
        if len(row) != width:
            raise _fail(file, f"header row '{name}'", "-", f"has {len(row)} cells but the 'coords' row has {width}")
    cols: dict[tuple[str, str], dict[str, int]] = {}
    for j in range(n_index, width):
        ind = header["individuals"][j].strip() if "individuals" in header else ""
        part, coord = header["bodyparts"][j].strip(), coords[j].strip()
        if coord == "likelihood":
            continue
        if coord not in ("x", "y"):
            raise _fail(file, "header row 'coords'", f"column {j + 1}", f"must be x, y or likelihood, got {coord!r}")
        if coord in cols.setdefault((ind, part), {}):
            raise _fail(file, "header row 'bodyparts'", f"column {j + 1}", f"bodypart {part!r} {coord} appears twice")
        cols[(ind, part)][coord] = j
    if not cols:
        raise _fail(file, "header row 'coords'", "-", "has no x/y columns")
    individuals = list(dict.fromkeys(ind for ind, _ in cols))
    names = meta.keypoint_names
    xy: dict[str, list[tuple[int, int]]] = {}
    for ind in individuals:
        parts = [p for i, p in cols if i == ind]
        who = f" of individual {ind!r}" if ind else ""
        missing = [n for n in names if n not in parts]
        extra = [p for p in parts if p not in names]
        if missing or extra:
            msg = f"the bodyparts{who} do not match the {meta.name!r} meta's keypoints:"
            msg += f" missing {missing}" if missing else ""
            msg += f" extra {extra}" if extra else ""
            if ind == "single":
                msg += " (multi-animal unique bodyparts are not supported)"
            raise _fail(file, "header row 'bodyparts'", "bodyparts", msg)
        for part in parts:
            if set(cols[(ind, part)]) != {"x", "y"}:
                raise _fail(file, "header row 'coords'", part, "needs both an x and a y column")
        xy[ind] = [(cols[(ind, n)]["x"], cols[(ind, n)]["y"]) for n in names]
    return _Columns(n_index, width, xy)


def _read_header(reader: Any, file: str) -> dict[str, list[str]]:
    header: dict[str, list[str]] = {}
    order: list[str] = []
    for row in reader:
        key = row[0].strip() if row else ""
        header[key] = row
        order.append(key)
        if key == "coords" or len(order) == len(HEADERS):
            break
    if order not in (["scorer", "bodyparts", "coords"], ["scorer", "individuals", "bodyparts", "coords"]):
        raise _fail(
            file,
            "header",
            "-",
            "the first rows must be the DeepLabCut header 'scorer', ['individuals',] 'bodyparts', 'coords' "
            f"(first cells); got {order[:4]}",
        )
    return header


def _cell(row: list[str], j: int, rec: str, field: str, file: str, problems: list[Problem]) -> float | None:
    text = row[j].strip()
    if text in MISSING:
        return None
    try:
        return float(text)
    except ValueError:
        problems.append(Problem(file, rec, field, f"{text!r} is not a number"))
        return None


def parse_collected_data(csv_file: Path, image_dir: Path, split: str, meta: DatasetMeta, margin: float) -> RawSplit:
    """One ``CollectedData*.csv`` as a :class:`RawSplit` (image ids in row order)."""
    file = str(csv_file)
    if not csv_file.is_file():
        raise _fail(file, "file", "-", "annotation file does not exist")
    raw = RawSplit(split, [], [], image_dir, csv_file)
    names = meta.keypoint_names
    seen: dict[str, int] = {}
    try:
        with csv_file.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            columns = _columns(_read_header(reader, file), file, meta)
            for row in reader:
                if not any(c.strip() for c in row):
                    continue
                _row(row, reader.line_num, columns, names, file, margin, seen, raw)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise _fail(file, "file", "-", f"cannot be read as CSV text ({type(exc).__name__}: {exc})") from exc
    return raw


def _row(
    row: list[str],
    line: int,
    columns: _Columns,
    names: list[str],
    file: str,
    margin: float,
    seen: dict[str, int],
    raw: RawSplit,
) -> None:
    path = "/".join(p.strip() for p in row[: columns.n_index] if p.strip()).replace("\\", "/")
    rec = f"row {line} ({path or '?'})"
    if len(row) != columns.width:
        raw.problems.append(Problem(file, rec, "-", f"has {len(row)} cells but the header has {columns.width}"))
        raw.omitted += 1
        return
    if not path:
        raw.problems.append(Problem(file, rec, "image path", "is empty"))
        raw.omitted += 1
        return
    if path in seen:
        raw.problems.append(Problem(file, rec, "image path", f"same image as row {seen[path]}"))
        raw.omitted += 1
        return
    seen[path] = line
    problems: list[Problem] = []
    people: list[tuple[str, list[Any], list[tuple[float, float]]]] = []
    for ind, xy_cols in columns.xy.items():
        keypoints: list[Any] = []
        labelled: list[tuple[float, float]] = []
        for name, (jx, jy) in zip(names, xy_cols, strict=True):
            field = f"{ind + '.' if ind else ''}{name}"
            before = len(problems)
            x = _cell(row, jx, rec, f"{field} x", file, problems)
            y = _cell(row, jy, rec, f"{field} y", file, problems)
            if len(problems) > before:
                continue
            if x is None and y is None:
                keypoints += [0.0, 0.0, 0]
            elif x is None or y is None:
                problems.append(Problem(file, rec, field, "has only one of x and y; label both or neither"))
            else:
                keypoints += [x, y, 2]
                labelled.append((x, y))
        if labelled:
            people.append((ind, keypoints, labelled))
    if problems:
        raw.problems += problems
        raw.omitted += max(1, len(people))
        return
    iid = len(raw.images) + 1
    size = image_size(raw.image_root / path)
    image: dict[str, Any] = {"id": iid, "file_name": path}
    if size is not None:
        image["width"], image["height"] = size
    raw.images.append(image)
    for ind, keypoints, labelled in people:
        aid = len(raw.annotations) + 1
        raw.annotations.append(
            {
                "id": aid,
                "image_id": iid,
                "category_id": 1,
                "bbox": keypoint_box(labelled, margin, size),
                "keypoints": keypoints,
                "iscrowd": 0,
            }
        )
        raw.records[aid] = rec + (f" individual {ind!r}" if ind else "")


@register_converter("dlc", default_meta="mirror_mouse")
def convert_dlc(spec: SourceSpec, meta: DatasetMeta) -> list[RawSplit]:
    root = Path(spec.root)
    splits = []
    for name, csv_file in split_layout(spec, "CollectedData.csv").items():
        image_dir = root / spec.images.get(name, spec.images.get("all", "."))
        splits.append(parse_collected_data(csv_file, image_dir, name, meta, spec.bbox_margin))
    return splits
