"""COCO-WholeBody (133 keypoints): parse, concatenate the body parts, normalise.

A WholeBody annotation stores the 17 body points in ``keypoints`` and the other parts
in ``foot_kpts`` (6), ``face_kpts`` (68), ``lefthand_kpts`` (21) and
``righthand_kpts`` (21). They are concatenated in that order — MMPose's
``CocoWholeBodyDataset`` order, indices 0-16 body, 17-22 feet, 23-90 face,
91-111 left hand, 112-132 right hand — into one 133-point ``keypoints`` list.

Visibility: body and feet use COCO's 0/1/2; face and hands use 0/1, and some hand
points carry a fractional value in (0, 1) (an annotator confidence, not a flag).
MMPose treats any value > 0 as labelled; here a value strictly between 0 and 1
becomes 1 (labelled), so every labelled point has v > 0 and the flags stay 0/1/2.

Dropped: the per-part boxes (``face_box``, ``lefthand_box``, ``righthand_box``) and
the ``*_valid`` flags — a part that is not valid has all its points at v = 0, which
says the same. Default layout: ``annotations/coco_wholebody_{train,val}_v1.0.json``
with images in ``{train,val}2017/``. See :mod:`.coco` for the rest of the
normalisation.
"""

from __future__ import annotations

from typing import Any

from posecore.datasets.converters._base import RawSplit, SourceSpec, register_converter
from posecore.datasets.converters.coco import FieldError, parse_coco_layout
from posecore.metainfo import DatasetMeta

PARTS = (("keypoints", 17), ("foot_kpts", 6), ("face_kpts", 68), ("lefthand_kpts", 21), ("righthand_kpts", 21))


def wholebody_keypoints(ann: dict[str, Any]) -> list[Any]:
    """The five parts of one annotation as one flat 133 x 3 list."""
    out: list[Any] = []
    for key, count in PARTS:
        part = ann.get(key)
        if not isinstance(part, list) or len(part) != 3 * count:
            if part is None:
                got = "it is missing"
            else:
                got = f"got {len(part)} values" if isinstance(part, list) else f"got {part!r}"
            raise FieldError(key, f"must be a list of {3 * count} values ({count} keypoints x, y, v); {got}")
        out += part
    for i in range(2, len(out), 3):
        v = out[i]
        if isinstance(v, int | float) and not isinstance(v, bool) and 0 < v < 1:
            out[i] = 1
    return out


@register_converter("coco_wholebody", default_meta="coco_wholebody")
def convert_coco_wholebody(spec: SourceSpec, meta: DatasetMeta) -> list[RawSplit]:
    return parse_coco_layout(
        spec,
        meta,
        {"train": "annotations/coco_wholebody_train_v1.0.json", "val": "annotations/coco_wholebody_val_v1.0.json"},
        {"train": "train2017", "val": "val2017"},
        read_keypoints=wholebody_keypoints,
    )
