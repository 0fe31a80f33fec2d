"""COCO keypoint AP per part of a skeleton (COCO-WholeBody's body, foot, face and hands), as MMPose's
``CocoWholeBodyMetric`` computes it with xtcocotools: the poses are rescored and NMS'd once on all
keypoints by the whole-skeleton evaluator; then, per part, the ground truth and the poses are sliced
to the part's keypoints and scored with its sigmas. A person with no labelled keypoint of the part
is ignored for it, and a pose with every keypoint of the part scored 0 is dropped.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools.coco import COCO

from posecore.evaluation.coco import CocoKeypointEvaluator, PredictionInput

__all__ = ["PARTS_BY_META", "WHOLEBODY_PARTS", "evaluate_parts"]

WHOLEBODY_PARTS: dict[str, tuple[int, int]] = {
    "body": (0, 17),
    "foot": (17, 23),
    "face": (23, 91),
    "lefthand": (91, 112),
    "righthand": (112, 133),
}
"""COCO-WholeBody's parts as keypoint index ranges [start, stop) of the 133 (MMPose's ``CocoWholeBodyMetric``)."""

PARTS_BY_META: dict[str, dict[str, tuple[int, int]]] = {"coco_wholebody": WHOLEBODY_PARTS}
"""Metas scored per part as well as whole (:func:`evaluate_parts`)."""


def evaluate_parts(
    evaluator: CocoKeypointEvaluator, predictions: PredictionInput, parts: dict[str, tuple[int, int]]
) -> dict[str, dict[str, float]]:
    """The 10 COCO stats of each part (keypoints ``[start, stop)``, the part's sigmas) of the poses
    (module docstring); the whole skeleton's (``evaluator.last``) are under ``"wholebody"``."""
    results = evaluator.format_results(predictions)
    out: dict[str, dict[str, float]] = {}
    for name, (start, stop) in parts.items():
        sliced = []
        for rec in results:
            kps = rec["keypoints"][3 * start : 3 * stop]
            if any(v > 0 for v in kps[2::3]):
                sliced.append({**rec, "keypoints": kps})
        out[name] = dict(_PartEvaluator(evaluator, start, stop).evaluate_results(sliced).stats)
    evaluator.last = evaluator.evaluate_results(results)
    out["wholebody"] = dict(evaluator.last.stats)
    return out


class _PartEvaluator(CocoKeypointEvaluator):
    """``whole`` restricted to keypoints ``[start, stop)``: the ground truth sliced (``num_keypoints``
    recounted for the part), the part's sigmas."""

    def __init__(self, whole: CocoKeypointEvaluator, start: int, stop: int) -> None:
        self.__dict__.update(whole.__dict__)
        self.sigmas = whole.sigmas[start:stop]
        doc = dict(whole.coco.dataset)
        anns = []
        for ann in doc.get("annotations", []):
            kps = list(ann["keypoints"][3 * start : 3 * stop])
            anns.append({**ann, "keypoints": kps, "num_keypoints": int(np.count_nonzero(np.asarray(kps[2::3]) > 0))})
        doc["annotations"] = anns
        self.coco = COCO()
        self.coco.dataset = doc
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco.createIndex()
