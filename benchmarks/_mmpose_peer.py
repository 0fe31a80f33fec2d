"""The MMPose 1.3.2 side of ``benchmarks/compare_mmpose.py``: run ONLY by the peer venv's python.

posecore never imports this module, and this module imports nothing of posecore: it is started
as a subprocess with MMPose's own interpreter (``--peer-python``) and only imports the standard
library, NumPy, OpenCV, torch, mmengine, mmcv and mmpose. The inputs come from the posecore side
(``--inputs`` folder: the same keypoints, heatmaps, SimCC labels, images and annotation files
posecore is timed on); the timings go to ``--out`` as JSON, MMPose's own encode/decode results to
``<out>.npz`` so that the posecore side can report how far the two implementations agree.

Workloads, as MMPose runs them (per instance; its ``HeatmapHead``/``RTMCCHead`` decode a batch
in a loop and ``GenerateTarget`` encodes one instance per sample):

* ``MSRAHeatmap`` (sigma 2) and ``SimCCLabel`` (RTMPose's sigma (4.9, 5.66), split ratio 2)
  encode and decode, one call per instance over the same 64 instances;
* the td-hm COCO training pipeline (LoadImage ... PackPoseInputs) through ``CocoDataset``;
* ``CocoMetric`` (xtcocotools) from predictions to the 10 stats.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import statistics
import time
import warnings

import cv2
import numpy as np
import torch

INPUT_SIZE = (192, 256)
HEATMAP_SIZE = (48, 64)


def timed_runs(fn, repeats: int, items: int, min_run_s: float = 0.2) -> list[float]:
    """Seconds per item for each of ``repeats`` runs; a run repeats ``fn`` (``items`` items) for >= min_run_s."""
    fn()  # warm-up
    start = time.perf_counter()
    fn()
    inner = max(1, int(min_run_s / max(time.perf_counter() - start, 1e-9)))
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        runs.append((time.perf_counter() - start) / (inner * items))
    return runs


def codecs(inputs: str, repeats: int, out_npz: str) -> dict:
    from mmpose.codecs import MSRAHeatmap, SimCCLabel

    data = np.load(os.path.join(inputs, "codec_inputs.npz"))
    kp, vis = data["keypoints"], data["visible"]
    hms, sx, sy = data["heatmaps"], data["simcc_x"], data["simcc_y"]
    n = kp.shape[0]
    msra = MSRAHeatmap(input_size=INPUT_SIZE, heatmap_size=HEATMAP_SIZE, sigma=2)
    simcc = SimCCLabel(input_size=INPUT_SIZE, sigma=(4.9, 5.66), simcc_split_ratio=2.0, normalize=False)
    result = {
        "msra_encode": timed_runs(lambda: [msra.encode(kp[i : i + 1], vis[i : i + 1]) for i in range(n)], repeats, n),
        "msra_decode": timed_runs(lambda: [msra.decode(hms[i]) for i in range(n)], repeats, n),
        "simcc_encode": timed_runs(lambda: [simcc.encode(kp[i : i + 1], vis[i : i + 1]) for i in range(n)], repeats, n),
        "simcc_decode": timed_runs(lambda: [simcc.decode(sx[i : i + 1], sy[i : i + 1]) for i in range(n)], repeats, n),
    }
    encoded = [simcc.encode(kp[i : i + 1], vis[i : i + 1]) for i in range(n)]
    np.savez(
        out_npz,
        msra_heatmaps=np.stack([msra.encode(kp[i : i + 1], vis[i : i + 1])["heatmaps"] for i in range(n)]),
        msra_keypoints=np.concatenate([msra.decode(hms[i])[0] for i in range(n)]),
        simcc_x=np.concatenate([e["keypoint_x_labels"] for e in encoded]),
        simcc_y=np.concatenate([e["keypoint_y_labels"] for e in encoded]),
        simcc_keypoints=np.concatenate([simcc.decode(sx[i : i + 1], sy[i : i + 1])[0] for i in range(n)]),
    )
    return result


def pipeline(ann_file: str, data_root: str, images: str, samples: int, repeats: int) -> dict:
    """td-hm_res50 COCO training pipeline, samples/s of ``dataset[i]`` in one process."""
    import mmpose.datasets.transforms  # noqa: F401 - registers the transforms
    from mmengine.registry import init_default_scope
    from mmpose.datasets import CocoDataset

    init_default_scope("mmpose")
    codec = dict(type="MSRAHeatmap", input_size=INPUT_SIZE, heatmap_size=HEATMAP_SIZE, sigma=2)
    steps = [
        dict(type="LoadImage"),
        dict(type="GetBBoxCenterScale"),
        dict(type="RandomFlip", direction="horizontal"),
        dict(type="RandomHalfBody"),
        dict(type="RandomBBoxTransform"),
        dict(type="TopdownAffine", input_size=INPUT_SIZE),
        dict(type="GenerateTarget", encoder=codec),
        dict(type="PackPoseInputs"),
    ]
    np.random.seed(0)
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the packaged COCO meta config is used
        ds = CocoDataset(
            ann_file=ann_file,
            data_root=data_root,
            data_prefix=dict(img=images),
            data_mode="topdown",
            test_mode=False,
            pipeline=steps,
        )
    n = len(ds)
    for i in range(2 * n):  # warm-up: page cache, lazy imports
        ds[i % n]
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(samples):
            ds[i % n]
        rates.append(samples / (time.perf_counter() - start))
    return {"instances": n, "samples_per_run": samples, "samples_per_s": rates}


def cocoeval(gt: str, dt: str, repeats: int) -> dict:
    """``CocoMetric`` with its defaults (bbox_keypoint rescoring, OKS-NMS 0.9, use_area) from predictions to stats."""
    from mmengine.logging import MMLogger
    from mmpose.datasets import CocoDataset
    from mmpose.datasets.datasets.utils import parse_pose_metainfo
    from mmpose.evaluation import CocoMetric

    MMLogger.get_current_instance().setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the packaged COCO meta config is used
        meta = parse_pose_metainfo(CocoDataset.METAINFO)
    with open(dt) as f:
        dets = json.load(f)
    samples = []
    for i, d in enumerate(dets):
        k = np.asarray(d["keypoints"], np.float64).reshape(1, -1, 3)  # float64 on both sides: the same OKS
        pred = dict(keypoints=k[..., :2], keypoint_scores=k[..., 2], bbox_scores=np.array([d["score"]]))
        samples.append(dict(id=i, img_id=d["image_id"], pred_instances=pred, gt_instances={}))
    load_s, eval_s, stats = [], [], None
    for _ in range(repeats + 1):  # the first, warm-up run is dropped
        with contextlib.redirect_stdout(io.StringIO()):
            start = time.perf_counter()
            metric = CocoMetric(ann_file=gt)
            metric.dataset_meta = meta
            load_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            metric.process([], samples)
            values = metric.evaluate(len(samples))
            eval_s.append(time.perf_counter() - start)
        stats = [float(values[f"coco/{name}"]) for name in ("AP", "AP .5", "AP .75", "AP (M)", "AP (L)")]
        stats += [float(values[f"coco/{name}"]) for name in ("AR", "AR .5", "AR .75", "AR (M)", "AR (L)")]
    return {"predictions": len(samples), "load_gt_s": load_s[1:], "evaluate_s": eval_s[1:], "stats": stats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", required=True, help="folder written by compare_mmpose.py")
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--workloads", default="codecs,pipeline,cocoeval")
    parser.add_argument("--pipeline-ann")
    parser.add_argument("--pipeline-root")
    parser.add_argument("--pipeline-images", default="")
    parser.add_argument("--pipeline-samples", type=int, default=344)
    parser.add_argument("--coco-gt")
    parser.add_argument("--coco-dt")
    parser.add_argument("--coco-repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    import mmpose

    workloads = args.workloads.split(",")
    report: dict = {
        "versions": {"mmpose": mmpose.__version__, "numpy": np.__version__, "torch": torch.__version__},
        "threads": {"torch": torch.get_num_threads(), "cv2": cv2.getNumThreads()},
    }
    if "codecs" in workloads:
        report["codecs"] = codecs(args.inputs, args.repeats, args.out + ".npz")
    if "pipeline" in workloads and args.pipeline_ann:
        report["pipeline"] = pipeline(
            args.pipeline_ann, args.pipeline_root, args.pipeline_images, args.pipeline_samples, args.repeats
        )
    if "cocoeval" in workloads and args.coco_gt:
        report["cocoeval"] = cocoeval(args.coco_gt, args.coco_dt, args.coco_repeats)
    for section in ("codecs", "pipeline", "cocoeval"):
        for key, values in report.get(section, {}).items():
            if isinstance(values, list) and values and key != "stats":
                print(f"[mmpose] {section} {key}: median {statistics.median(values):.6g}", flush=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
