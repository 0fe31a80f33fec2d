"""COCO keypoint JSON (and the embedded synthetic dataset): parse and normalise.

``coco`` reads any COCO-style keypoint file — COCO person keypoints, or with
``--meta`` OneHand10K, WFLW, AP-10K, Halpe, ... — whose annotations carry
``meta.num_keypoints`` keypoints. Layout: ``data.annotations.<split>`` is the JSON
file and ``data.images.<split>`` the image folder that its ``file_name`` entries are
relative to, both relative to ``data.root``; splits are ``train``/``val`` or ``all``.
With no ``data.annotations`` the standard COCO 2017 layout is assumed
(``annotations/person_keypoints_{train,val}2017.json``, images in
``{train,val}2017/``); with annotations but no ``data.images`` the images are looked
up under ``data.root`` itself.

Normalisation, the same for every COCO-style format built on :func:`parse_coco_file`:

* images keep ``id``, ``file_name``, ``width``, ``height`` (plus format-specific
  fields such as CrowdPose's ``crowdIndex``); ``coco_url``, ``license`` etc. go.
* annotations keep ``id``, ``image_id``, ``bbox``, ``keypoints``, ``area`` and
  ``iscrowd``. ``segmentation`` is dropped (large, and a keypoint model never reads
  it); crowd regions stay, as boxes, so evaluation still ignores detections in them.
  ``num_keypoints`` is recomputed from the visibility flags by the shared layer.
* every annotation gets ``category_id`` 1. A file with several categories (AP-10K
  has one per species, all with the same 17 keypoints) keeps the annotations of every
  category whose ``keypoints`` list has ``meta.num_keypoints`` names; annotations of
  categories that declare another count are left out. If no category declares that
  count (or the file lists keypoint names nowhere, as WFLW does) everything is kept
  and validation reports any annotation whose keypoint count is wrong.
* visibility flags ``0.0``/``1.0``/``2.0`` become the integers 0/1/2.

Anything malformed in the file itself — not JSON, no ``images`` list, a record that is
not an object — becomes a :class:`Problem` naming the file, record and field; the
shared layer (``_base.py``) checks values, image files and references.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from posecore.datasets.converters._base import RawSplit, SourceSpec, register_converter, split_layout
from posecore.metainfo import DatasetMeta
from posecore.validation import Problem

IMAGE_KEYS = ("id", "file_name", "width", "height")
ANNOTATION_KEYS = ("id", "image_id", "bbox", "keypoints", "area", "iscrowd")


class FieldError(ValueError):
    """A native field of one annotation cannot be read; raised by a :data:`KeypointReader`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


KeypointReader = Callable[[dict[str, Any]], Any]
"""Returns an annotation's flat ``[x, y, v, ...]`` list, or raises :class:`FieldError`."""


def body_keypoints(ann: dict[str, Any]) -> Any:
    return ann.get("keypoints")


def _normalise_flags(keypoints: Any) -> Any:
    if not isinstance(keypoints, list):
        return keypoints
    out = list(keypoints)
    for i in range(2, len(out), 3):
        v = out[i]
        if isinstance(v, float) and v in (0.0, 1.0, 2.0):
            out[i] = int(v)
    return out


def load_json(path: Path, problems: list[Problem]) -> Any:
    """The parsed file, or ``None`` after appending a problem saying why it cannot be read."""
    if not path.is_file():
        problems.append(Problem(str(path), "file", "-", "annotation file does not exist"))
        return None
    try:
        with path.open("rb") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        problems.append(Problem(str(path), "file", "-", f"not valid JSON: {exc}"))
    except (UnicodeDecodeError, OSError) as exc:
        problems.append(Problem(str(path), "file", "-", f"cannot be read as JSON text ({type(exc).__name__}: {exc})"))
    return None


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def _categories_to_skip(doc: dict[str, Any], k: int, file: str, problems: list[Problem]) -> set[Any]:
    """Ids of categories that declare a keypoint count other than ``k`` while another declares ``k``."""
    cats = doc.get("categories")
    if cats is None:
        return set()
    if not isinstance(cats, list):
        problems.append(
            Problem(file, "file", "categories", f"must be a list of category objects, got {type(cats).__name__}")
        )
        return set()
    declared = {
        _hashable(c.get("id")): len(c["keypoints"])
        for c in cats
        if isinstance(c, dict) and isinstance(c.get("keypoints"), list) and c["keypoints"]
    }
    if k not in declared.values():
        return set()
    return {cid for cid, n in declared.items() if n != k}


def parse_coco_file(
    ann_file: Path,
    image_root: Path,
    split: str,
    meta: DatasetMeta,
    image_extras: Iterable[str] = (),
    read_keypoints: KeypointReader = body_keypoints,
    annotation_extras: Iterable[str] = (),
) -> RawSplit:
    """One COCO-style keypoint file as a :class:`RawSplit` (``file_name`` relative to ``image_root``)."""
    file = str(ann_file)
    problems: list[Problem] = []
    raw = RawSplit(split, [], [], image_root, ann_file, problems=problems)
    doc = load_json(ann_file, problems)
    if doc is None:
        return raw
    if not isinstance(doc, dict):
        problems.append(
            Problem(
                file, "file", "-", f"must be a JSON object with 'images' and 'annotations', got a {type(doc).__name__}"
            )
        )
        return raw
    lists: dict[str, list[Any]] = {}
    for key in ("images", "annotations"):
        value = doc.get(key)
        if not isinstance(value, list):
            got = "it is missing" if value is None else f"got {type(value).__name__}"
            problems.append(Problem(file, "file", key, f"must be a list of {key[:-1]} records; {got}"))
        else:
            lists[key] = value
    if len(lists) < 2:
        return raw

    keep_keys = (*IMAGE_KEYS, *image_extras)
    for i, img in enumerate(lists["images"]):
        if not isinstance(img, dict):
            problems.append(Problem(file, f"images[{i}]", "-", f"must be an object, got {type(img).__name__}"))
            continue
        raw.images.append({key: img[key] for key in keep_keys if key in img})

    skip_categories = _categories_to_skip(doc, meta.num_keypoints, file, problems)
    for i, ann in enumerate(lists["annotations"]):
        if not isinstance(ann, dict):
            problems.append(Problem(file, f"annotations[{i}]", "-", f"must be an object, got {type(ann).__name__}"))
            raw.omitted += 1
            continue
        if "category_id" in ann and _hashable(ann["category_id"]) in skip_categories:
            continue
        aid = ann.get("id")
        try:
            keypoints = read_keypoints(ann)
        except FieldError as exc:
            problems.append(Problem(file, f"annotation id={aid} [annotations[{i}]]", exc.field, exc.message))
            raw.omitted += 1
            continue
        out = {key: ann[key] for key in (*ANNOTATION_KEYS, *annotation_extras) if key in ann}
        out["keypoints"] = _normalise_flags(keypoints)
        out["category_id"] = 1
        raw.annotations.append(out)
        if isinstance(aid, int) and not isinstance(aid, bool):
            raw.records[aid] = f"annotations[{i}]"
    return raw


def parse_coco_layout(
    spec: SourceSpec,
    meta: DatasetMeta,
    default_annotations: dict[str, str],
    default_images: dict[str, str],
    image_extras: Iterable[str] = (),
    read_keypoints: KeypointReader = body_keypoints,
    annotation_extras: Iterable[str] = (),
) -> list[RawSplit]:
    """Every split of a COCO-style source: ``spec``'s files, else the format's default layout.

    The default image folders apply only with the default annotation files; a user who
    names annotation files but no image folders gets ``data.root`` as image folder.
    """
    annotations = split_layout(spec, default_annotations)
    images = {**(default_images if not spec.annotations else {}), **spec.images}
    splits = []
    for name in annotations:
        image_root = Path(spec.root) / images.get(name, images.get("all", "."))
        splits.append(
            parse_coco_file(annotations[name], image_root, name, meta, image_extras, read_keypoints, annotation_extras)
        )
    return splits


@register_converter("coco", default_meta="coco")
def convert_coco(spec: SourceSpec, meta: DatasetMeta) -> list[RawSplit]:
    return parse_coco_layout(
        spec,
        meta,
        {"train": "annotations/person_keypoints_train2017.json", "val": "annotations/person_keypoints_val2017.json"},
        {"train": "train2017", "val": "val2017"},
    )


@register_converter("synthetic", default_meta="coco")
def convert_synthetic(spec: SourceSpec, meta: DatasetMeta) -> list[RawSplit]:
    """The dataset written by ``stages/synth.py``: COCO's layout with ``images/<split>/`` folders."""
    return parse_coco_layout(
        spec,
        meta,
        {"train": "annotations/train.json", "val": "annotations/val.json"},
        {"train": "images/train", "val": "images/val"},
    )
