"""COCO labels of a drawn person, read back from the label map: keypoints with visibility, box, area.

See the package docstring for what ``v=0/1/2``, ``bbox`` and ``area`` mean. A keypoint is
``v=2`` when the label-map pixel under it belongs to one of the parts that own it
(``_OWNERS``: a shoulder is on the torso or the upper arm), ``v=1`` when something else
covers it, ``v=0`` outside the image or for face features turned away.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from posecore.datasets.synthetic.person import _PARTS_PER_PERSON, _Part
from posecore.datasets.synthetic.projection import _FACE_FACING, _Placed
from posecore.metainfo import load_meta

_OWNERS: dict[str, tuple[_Part, ...]] = {
    "nose": (_Part.HEAD,),
    "left_eye": (_Part.HEAD,),
    "right_eye": (_Part.HEAD,),
    "left_ear": (_Part.HEAD,),
    "right_ear": (_Part.HEAD,),
    "left_shoulder": (_Part.TORSO, _Part.L_UPPER_ARM),
    "right_shoulder": (_Part.TORSO, _Part.R_UPPER_ARM),
    "left_elbow": (_Part.L_UPPER_ARM, _Part.L_FOREARM),
    "right_elbow": (_Part.R_UPPER_ARM, _Part.R_FOREARM),
    "left_wrist": (_Part.L_FOREARM, _Part.L_HAND),
    "right_wrist": (_Part.R_FOREARM, _Part.R_HAND),
    "left_hip": (_Part.TORSO, _Part.L_THIGH),
    "right_hip": (_Part.TORSO, _Part.R_THIGH),
    "left_knee": (_Part.L_THIGH, _Part.L_SHANK),
    "right_knee": (_Part.R_THIGH, _Part.R_SHANK),
    "left_ankle": (_Part.L_SHANK, _Part.L_FOOT),
    "right_ankle": (_Part.R_SHANK, _Part.R_FOOT),
}


_TORSO_HIDES = -0.6
"""A shoulder or hip is behind the trunk when its outward normal's depth component is below this."""


@dataclass(frozen=True, eq=False)
class PersonAnnotation:
    """One annotated person.

    keypoints (17, 3) float64 rows ``[x, y, v]`` in COCO-17 order, pixels (centres at
    integers), rounded to 0.01; v=0 rows are all zero. bbox ``(x, y, w, h)`` float pixels of
    the visible silhouette; area its area in square pixels; mask (H, W) bool, the silhouette
    itself (empty in what :func:`~posecore.datasets.synthetic.writer.generate`'s workers return).
    """

    keypoints: np.ndarray
    bbox: tuple[float, float, float, float]
    area: float
    mask: np.ndarray = field(repr=False)

    @property
    def num_keypoints(self) -> int:
        return int(np.count_nonzero(self.keypoints[:, 2] > 0))

    def to_coco(self, ann_id: int, image_id: int) -> dict[str, Any]:
        kps: list[float | int] = []
        for x, y, v in self.keypoints.tolist():
            kps += [x, y, int(v)] if v > 0 else [0, 0, 0]
        return {
            "id": ann_id,
            "image_id": image_id,
            "category_id": 1,
            "bbox": [float(b) for b in self.bbox],
            "keypoints": kps,
            "num_keypoints": self.num_keypoints,
            "area": round(float(self.area), 2),
            "iscrowd": 0,
        }


@cache
def _keypoint_names() -> tuple[str, ...]:
    names = tuple(load_meta("coco").keypoint_names)
    missing = set(names) ^ set(_OWNERS)
    if missing:
        raise ValueError(f"the coco meta and the synthetic generator disagree on keypoints: {sorted(missing)}")
    return names


def _annotate(pl: _Placed, index: int, labels: np.ndarray) -> PersonAnnotation | None:
    h, w = labels.shape
    base = 1 + index * _PARTS_PER_PERSON
    mask = (labels >= base) & (labels < base + _PARTS_PER_PERSON)
    if not mask.any():
        return None
    names = _keypoint_names()
    kps = np.zeros((len(names), 3))
    for k, name in enumerate(names):
        x, y = np.round(pl.p2[name], 2)
        if not (0 <= x <= w - 1 and 0 <= y <= h - 1):
            continue
        if name in _FACE_FACING and not pl.shows(name):
            continue
        hidden = name.endswith(("shoulder", "hip")) and pl.facing(name) < _TORSO_HIDES
        label = int(labels[int(round(y)), int(round(x))])
        owned = label - base in _OWNERS[name] and label >= base
        kps[k] = (x, y, 2 if owned and not hidden else 1)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    x0, x1 = max(cols[0] - 0.5, 0.0), min(cols[-1] + 0.5, w - 1.0)
    y0, y1 = max(rows[0] - 0.5, 0.0), min(rows[-1] + 0.5, h - 1.0)
    area = float(_edge_weights(h) @ mask.astype(np.float32) @ _edge_weights(w))
    return PersonAnnotation(kps, (float(x0), float(y0), float(x1 - x0), float(y1 - y0)), area, mask)


@cache
def _edge_weights(n: int) -> np.ndarray:
    """How much of each pixel's square lies in [0, n - 1]: (n,) float32, 0.5 at both ends."""
    w = np.ones(n, np.float32)
    w[[0, -1]] = 0.5
    return w
