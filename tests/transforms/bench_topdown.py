"""Time the batched top-down train pipeline against MMPose's per-sample OpenCV path.

    .venv/bin/python tests/transforms/bench_topdown.py [--batch 64] [--device cpu] [--src 288x384]

Both paths do the same work per sample: flip, half-body, shift/scale/rotate, warp to
192x256, normalise, MSRA heatmap targets (48x64). The batched path runs
``topdown_train_pipeline`` on one (B, 3, H, W) batch of same-size source crops; the
per-sample path loops over the samples with numpy parameters, ``cv2.flip`` +
``cv2.warpAffine`` and encodes each sample alone, as MMPose's dataloader workers do.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from scipy.stats import truncnorm

from posecore.codecs.msra_heatmap import MSRAHeatmap
from posecore.metainfo import load_meta
from posecore.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    KeyedRNG,
    TopdownAugmentation,
    make_topdown_batch,
    topdown_train_pipeline,
)
from posecore.transforms.reference import topdown_sample_cv2


def _per_sample(
    images: np.ndarray, kps: np.ndarray, bboxes: np.ndarray, meta, codec, rs: np.random.RandomState
) -> None:
    w_in, h_in = codec.input_size
    mean, std = np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32)
    upper, lower = meta.upper_body_ids, meta.lower_body_ids
    for img, kp, box in zip(images, kps, bboxes, strict=True):
        center = (box[:2] + box[2:]) / 2
        scale = (box[2:] - box[:2]) * 1.25
        flip = rs.rand() < 0.5
        vis = np.ones(len(kp), np.float32)
        if rs.rand() < 0.3:
            ids = upper if rs.rand() < 0.7 else lower
            sel = kp[ids]
            center, scale = sel.mean(0), (sel.max(0) - sel.min(0)) * 1.5
        t = truncnorm.rvs(-1, 1, size=4)
        if rs.rand() < 0.3:
            center = center + t[:2] * 0.16 * scale
        scale = scale * (t[2] * 0.5 + 1.0)
        rot = t[3] * 80.0 if rs.rand() < 0.6 else 0.0
        crop, kp_in, vis_in = topdown_sample_cv2(
            img, kp, vis, center, scale, rot, flip, meta.flip_indices, (w_in, h_in)
        )
        x = (crop.astype(np.float32) - mean) / std
        torch.from_numpy(x.transpose(2, 0, 1).copy())
        codec.encode(torch.from_numpy(kp_in)[None], torch.from_numpy(vis_in)[None])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--src", default="288x384", help="source crop size WxH")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    src_w, src_h = (int(v) for v in args.src.split("x"))
    b, k = args.batch, 17
    meta = load_meta("coco")
    codec = MSRAHeatmap(input_size=(192, 256), heatmap_size=(48, 64), sigma=2.0)
    rs = np.random.RandomState(0)
    images = rs.randint(0, 256, (b, src_h, src_w, 3), dtype=np.uint8)
    kps = np.stack([rs.uniform(0.2, 0.8, (b, k)) * src_w, rs.uniform(0.1, 0.9, (b, k)) * src_h], -1).astype(np.float32)
    bboxes = np.concatenate([kps.min(1), kps.max(1)], -1)

    dev = torch.device(args.device)
    batch = make_topdown_batch(
        torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(dev),
        torch.from_numpy(kps), torch.ones(b, k), torch.arange(b), bbox=torch.from_numpy(bboxes),
    )  # fmt: skip
    for photometric in (False, True):
        pipeline = topdown_train_pipeline(meta, codec, aug=TopdownAugmentation(photometric=photometric))
        times = []
        for epoch in range(args.repeats + 1):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            pipeline(batch, KeyedRNG(0, epoch))
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        label = "batched train pipeline" + (" + PhotometricDistortion" if photometric else "")
        print(
            f"{label:50s} {statistics.median(times[1:]) * 1e3:8.1f} ms / batch of {b} ({dev.type}, {torch.get_num_threads()} threads)"
        )

    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        _per_sample(images, kps, bboxes, meta, codec, rs)
        times.append(time.perf_counter() - start)
    print(f"{'per-sample cv2 path (one process)':50s} {statistics.median(times) * 1e3:8.1f} ms / batch of {b}")


if __name__ == "__main__":
    main()
