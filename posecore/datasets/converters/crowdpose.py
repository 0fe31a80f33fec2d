"""CrowdPose (MMPose's COCO-style JSON, 14 keypoints): parse and normalise.

The files are COCO keypoint JSON (see :mod:`.coco` for the layout and the
normalisation); each image also carries ``crowdIndex`` (how crowded it is, 0-1),
which is kept on the canonical image record so evaluation can be broken down by
crowding. Default layout (MMPose's): ``annotations/mmpose_crowdpose_trainval.json``
(train) and ``annotations/mmpose_crowdpose_test.json`` (val), images in ``images/``.

The source ``num_keypoints`` does not always equal the number of labelled points in
CrowdPose files; like every format, it is recomputed from the visibility flags.
"""

from __future__ import annotations

from posecore.datasets.converters._base import RawSplit, SourceSpec, register_converter
from posecore.datasets.converters.coco import parse_coco_layout
from posecore.metainfo import DatasetMeta


@register_converter("crowdpose", default_meta="crowdpose")
def convert_crowdpose(spec: SourceSpec, meta: DatasetMeta) -> list[RawSplit]:
    return parse_coco_layout(
        spec,
        meta,
        {"train": "annotations/mmpose_crowdpose_trainval.json", "val": "annotations/mmpose_crowdpose_test.json"},
        {"train": "images", "val": "images"},
        image_extras=("crowdIndex",),
    )
