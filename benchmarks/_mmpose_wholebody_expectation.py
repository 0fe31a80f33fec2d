"""MMPose 1.3.2's COCO-WholeBody per-part AP for displaced ground truth: run ONLY by the peer venv's python.

    $PEER/venv/bin/python benchmarks/_mmpose_wholebody_expectation.py ../shared/data/mmpose_samples/coco

The expectation ``tests/evaluation/test_coco.py`` checks posecore's per-part AP against, computed
by MMPose's ``CocoWholeBodyMetric`` (xtcocotools, part sigmas) on MMPose's own sample
``test_coco_wholebody.json``. posecore never imports this module; it imports nothing of posecore.

Predictions: every annotation with a labelled keypoint, its 133 ground-truth keypoints (body,
foot, face, left hand, right hand, in that order) moved by ``offsets(n, k)`` px, every keypoint
scored 1, box score 1; the OKS-NMS area is the annotation's box area (``bbox_scales`` = its w, h).
Prints the COCO stats per part as JSON.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import numpy as np

STATS = ("AP", "AP .5", "AP .75", "AP (M)", "AP (L)", "AR", "AR .5", "AR .75", "AR (M)", "AR (L)")
PARTS = ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")


def offsets(n: int, k: int) -> np.ndarray:
    """(n, k, 2) displacements in px: a different, deterministic error per keypoint."""
    i = np.arange(n * k).reshape(n, k)
    return np.stack([(i * 7 % 13) - 6.0, (i * 5 % 11) - 5.0], axis=-1) * 0.5


def main(coco_dir: str) -> None:
    import mmpose
    from mmpose.datasets.datasets.utils import parse_pose_metainfo
    from mmpose.evaluation import CocoWholeBodyMetric
    from xtcocotools.cocoeval import COCOeval

    ann_file = os.path.join(coco_dir, "test_coco_wholebody.json")
    cfg = os.path.join(os.path.dirname(mmpose.__file__), ".mim", "configs", "_base_", "datasets", "coco_wholebody.py")
    meta = parse_pose_metainfo(dict(from_file=cfg))
    anns = [a for a in json.load(open(ann_file))["annotations"]
            if any(v > 0 for p in PARTS for v in a[p][2::3])]  # fmt: skip
    kps = np.array([np.concatenate([np.asarray(a[p], np.float64).reshape(-1, 3) for p in PARTS]) for a in anns])
    moved = kps[..., :2] + offsets(len(anns), kps.shape[1])
    samples = [
        {
            "id": a["id"],
            "img_id": a["image_id"],
            "pred_instances": {
                "keypoints": moved[i][None],
                "keypoint_scores": np.ones((1, kps.shape[1])),
                "bbox_scores": np.ones(1),
            },
            "gt_instances": {"bbox_scales": np.array([[a["bbox"][2], a["bbox"][3]]])},
        }
        for i, a in enumerate(anns)
    ]
    out: dict[str, object] = {"instances": len(anns)}
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "results")
        metric = CocoWholeBodyMetric(ann_file=ann_file, outfile_prefix=prefix)
        metric.dataset_meta = meta
        metric.process([], samples)
        metric.compute_metrics(metric.results)  # rescoring, OKS-NMS, results file
        # The metric prints the per-part stats; rerun its per-part COCOeval calls to keep them.
        coco_det = metric.coco.loadRes(f"{prefix}.keypoints.json")
        sigmas = np.asarray(meta["sigmas"])
        cuts = np.cumsum([0, 17, 6, 68, 21, 21])
        for t, part in enumerate(("body", "foot", "face", "lefthand", "righthand", "wholebody")):
            part_sigmas = sigmas if part == "wholebody" else sigmas[cuts[t] : cuts[t + 1]]
            ev = COCOeval(metric.coco, coco_det, f"keypoints_{part}", part_sigmas, use_area=True)
            ev.params.useSegm = None
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            out[part] = dict(zip(STATS, map(float, ev.stats), strict=True))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main(sys.argv[1])
