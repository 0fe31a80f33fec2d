"""AI Challenger keypoints in MMPose's COCO-style JSON (14 keypoints): parse and normalise.

The original AI Challenger files flag keypoints 1 = visible, 2 = occluded,
3 = not labelled. MMPose's converted files (``aic_train.json``, ``aic_val.json``),
which this reads, already use the COCO convention — 2 visible, 1 occluded, 0 not
labelled with coordinates (0, 0) — so flags are taken as they are; a file still in
the original convention fails validation on its flag-3 points instead of being
silently misread. The files have no ``area`` or ``iscrowd``: the shared layer fills
``area`` with the box area (as MMPose evaluates AIC, ``use_area=False``) and
``iscrowd`` with 0. Image ``url`` fields are dropped.

Default layout (MMPose's): ``annotations/aic_{train,val}.json`` with the images in
the folders of the original archives. See :mod:`.coco` for the normalisation.
"""

from __future__ import annotations

from posecore.datasets.converters._base import RawSplit, SourceSpec, register_converter
from posecore.datasets.converters.coco import parse_coco_layout
from posecore.metainfo import DatasetMeta


@register_converter("aic", default_meta="aic")
def convert_aic(spec: SourceSpec, meta: DatasetMeta) -> list[RawSplit]:
    return parse_coco_layout(
        spec,
        meta,
        {"train": "annotations/aic_train.json", "val": "annotations/aic_val.json"},
        {
            "train": "ai_challenger_keypoint_train_20170902/keypoint_train_images_20170902",
            "val": "ai_challenger_keypoint_validation_20170911/keypoint_validation_images_20170911",
        },
    )
