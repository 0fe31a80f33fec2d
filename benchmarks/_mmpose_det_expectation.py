"""MMPose 1.3.2's COCO AP for ground-truth keypoints posed on detected boxes: run ONLY by the peer venv's python.

    $PEER/venv/bin/python benchmarks/_mmpose_det_expectation.py ../shared/data/mmpose_samples/coco

The expectation ``tests/evaluation/test_detected_boxes.py`` checks posecore's ``evaluate.boxes=file``
against, computed by MMPose itself (``../shared/peer/README.md`` installs it). posecore never
imports this module; it imports nothing of posecore.

The case is MMPose's own ``tests/data/coco`` sample (``test_coco.json``, 4 images, and the person
boxes ``test_coco_det_AP_H_56.json`` that MMPose's dataset tests load with ``bbox_file``: 118 boxes).
MMPose's ``CocoDataset`` reads the boxes (``data_mode='topdown'``, ``bbox_file``, ``test_mode``).
A perfect pose model stands in for the network, so the number measures the boxes alone: each
box gets the ground-truth keypoints of the labelled person (``num_keypoints > 0``) it overlaps most
(IoU of xyxy boxes, first such person on ties), every keypoint scored 1; a box overlapping no
labelled person gets all keypoints at its centre. The OKS-NMS area of each pose is its box's
area (``bbox_scales`` = the box's w, h). ``CocoMetric`` then scores them with its defaults
(``score_mode='bbox_keypoint'``, ``keypoint_score_thr=0.2``, ``nms_mode='oks_nms'``,
``nms_thr=0.9``), and again with ``nms_mode='none'``: OKS-NMS folds the duplicate poses of one
person into one (AP 1.0 whenever every person has a box), while without it each duplicate is a
false positive ranked by its box's score, which makes the number depend on every box and score.
Prints the number of boxes and the 10 COCO stats per ``nms_mode`` as JSON.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import numpy as np

NMS_MODES = ("oks_nms", "none")


def oracle(box: np.ndarray, people: list[tuple[np.ndarray, np.ndarray]], k: int) -> np.ndarray:
    """(K, 2) keypoints for the xyxy ``box``: those of the person (xyxy box, (K, 2)) it overlaps most."""
    best, best_iou = None, 0.0
    for pbox, kps in people:
        iw = min(box[2], pbox[2]) - max(box[0], pbox[0])
        ih = min(box[3], pbox[3]) - max(box[1], pbox[1])
        inter = max(iw, 0.0) * max(ih, 0.0)
        union = (box[2] - box[0]) * (box[3] - box[1]) + (pbox[2] - pbox[0]) * (pbox[3] - pbox[1]) - inter
        iou = inter / union if union > 0 else 0.0
        if iou > best_iou:
            best, best_iou = kps, iou
    if best is None:
        return np.tile([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], (k, 1))
    return best


def main(coco_dir: str) -> None:
    from mmpose.datasets import CocoDataset
    from mmpose.evaluation import CocoMetric

    ann_file = os.path.join(coco_dir, "test_coco.json")
    dataset = CocoDataset(
        ann_file=ann_file,
        data_root="",
        data_mode="topdown",
        bbox_file=os.path.join(coco_dir, "test_coco_det_AP_H_56.json"),
        test_mode=True,
        pipeline=[],
        data_prefix=dict(img=coco_dir),
    )
    k = dataset.metainfo["num_keypoints"]
    people: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    for ann in json.load(open(ann_file))["annotations"]:
        if ann["num_keypoints"] > 0:
            x, y, w, h = ann["bbox"]
            kps = np.asarray(ann["keypoints"], np.float64).reshape(-1, 3)[:, :2]
            people.setdefault(ann["image_id"], []).append((np.array([x, y, x + w, y + h]), kps))
    samples = []
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        box = np.asarray(info["bbox"], np.float64).reshape(4)
        kps = oracle(box, people.get(info["img_id"], []), k)
        samples.append(
            {
                "id": info["id"],
                "img_id": info["img_id"],
                "pred_instances": {
                    "keypoints": kps[None].astype(np.float32),
                    "keypoint_scores": np.ones((1, k), np.float32),
                    "bbox_scores": np.asarray(info["bbox_score"], np.float32).reshape(1),
                },
                "gt_instances": {"bbox_scales": np.array([[box[2] - box[0], box[3] - box[1]]])},
            }
        )
    out: dict[str, object] = {"boxes": len(dataset)}
    for nms_mode in NMS_MODES:
        with tempfile.TemporaryDirectory() as tmp:
            metric = CocoMetric(ann_file=ann_file, nms_mode=nms_mode, outfile_prefix=os.path.join(tmp, "results"))
            metric.dataset_meta = dataset.metainfo
            metric.process([], [dict(s) for s in samples])
            stats = metric.compute_metrics(metric.results)
        out[nms_mode] = {name: float(v) for name, v in stats.items()}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main(sys.argv[1])
