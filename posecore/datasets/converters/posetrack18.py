"""PoseTrack18 (MMPose's COCO-style JSON, 17 keypoints): parse and normalise.

The files are COCO keypoint JSON (see :mod:`.coco` for the layout and the normalisation)
with video fields that the PoseTrack18 AP (:mod:`posecore.evaluation.posetrack`) needs:
each image keeps ``vid_id``, ``frame_id``, ``nframes``, ``is_labeled`` and its ignore
regions (``ignore_regions_x`` / ``ignore_regions_y``, one polygon per entry); each person
keeps ``track_id`` and its head box ``bbox_head`` (``[x, y, w, h]``, the PCKh reference).
A person with labelled keypoints and no usable head box is an error naming the annotation
and the field. The ears (indices 3, 4) are never labelled in PoseTrack18.

Default layout (MMPose's): ``annotations/posetrack18_train.json`` (train) and
``annotations/posetrack18_val.json`` (val), with ``file_name`` (``images/val/<video>/<frame>.jpg``)
relative to ``data.root``.
"""

from __future__ import annotations

import math
from typing import Any

from posecore.datasets.converters._base import RawSplit, SourceSpec, register_converter
from posecore.datasets.converters.coco import FieldError, parse_coco_layout
from posecore.metainfo import DatasetMeta

IMAGE_EXTRAS = ("vid_id", "frame_id", "nframes", "is_labeled", "ignore_regions_x", "ignore_regions_y")
ANNOTATION_EXTRAS = ("bbox_head", "track_id")


def posetrack_keypoints(ann: dict[str, Any]) -> Any:
    """The annotation's keypoints, once its head box is checked (needed when any point is labelled)."""
    keypoints = ann.get("keypoints")
    labelled = isinstance(keypoints, list) and any(isinstance(v, int | float) and v > 0 for v in keypoints[2::3])
    head = ann.get("bbox_head")
    if labelled or head is not None:
        ok = (
            isinstance(head, list)
            and len(head) == 4
            and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in head)
            and head[2] > 0
            and head[3] > 0
        )
        if not ok:
            got = "it is missing" if head is None else f"got {head!r}"
            raise FieldError(
                "bbox_head",
                f"must be the head box [x, y, w, h] with w, h > 0 (PoseTrack18's PCKh reference); {got}",
            )
    return keypoints


@register_converter("posetrack18", default_meta="posetrack18")
def convert_posetrack18(spec: SourceSpec, meta: DatasetMeta) -> list[RawSplit]:
    return parse_coco_layout(
        spec,
        meta,
        {"train": "annotations/posetrack18_train.json", "val": "annotations/posetrack18_val.json"},
        {"train": ".", "val": "."},
        image_extras=IMAGE_EXTRAS,
        read_keypoints=posetrack_keypoints,
        annotation_extras=ANNOTATION_EXTRAS,
    )
