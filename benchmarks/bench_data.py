"""Training-data throughput: MMPose's per-sample path vs the cached, batched path, side by side.

(a) direct: per sample, decode the JPEG, sample MMPose's augmentation, flip + crop with
    cv2.warpAffine, encode the targets for that one instance (what MMPose 1.x's dataloader
    does per sample; it packs uint8 images and normalises them later, in the model's data
    preprocessor on the device);
(b) cached: one call per batch of 64 on memory-mapped uint8 crops: flip/half-body/shift/
    scale/rotate + warp + encode, vectorised, images kept uint8 (what the train stage's
    batch builders run; the train stage normalises on the device, like MMPose);
(c) cached + normalise: (b) followed by the normalisation to float32, for reference (the
    cost the training process pays per batch on a CPU-only run).

All run in this one process on the same real images (``../shared/data/lspet`` by default)
and the same codec, under two thread budgets, each path getting the same one: 1 thread (a
DataLoader worker: PyTorch gives workers one thread and MMPose's ``env_cfg`` sets OpenCV's
threads to 0, i.e. none) and every core of the machine (one process that has the machine
to itself). Prints samples/s per process for each path and the ratios.

    python benchmarks/bench_data.py [--data lspet|coco_mini] [--samples 512] [--input 192x256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from posecore.codecs import build_codec
from posecore.data.build import build_cache
from posecore.data.cache import CachedTopdownData, CacheSpec, open_cache
from posecore.datasets.coco import CocoPoseDataset
from posecore.datasets.converters import SourceSpec, convert
from posecore.metainfo import load_meta
from posecore.transforms import Normalize, topdown_train_pipeline
from posecore.transforms.reference import topdown_sample_cv2

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _source(name: str) -> SourceSpec:
    if name == "lspet":
        return SourceSpec(source="lsp", meta="lsp", root=str(SHARED / "lspet"))
    return SourceSpec(
        source="coco",
        meta="coco",
        root=str(SHARED / "coco_mini"),
        annotations={
            "train": "annotations/person_keypoints_train2017.json",
            "val": "annotations/person_keypoints_val2017.json",
        },
        images={"train": "train2017", "val": "val2017"},
    )


def direct(instances: list, meta, codec, input_size: tuple[int, int], rng: np.random.Generator) -> float:  # noqa: ANN001
    """Per-sample MMPose-style loading; returns samples/s."""
    flip_indices = meta.flip_indices
    start = time.perf_counter()
    for inst in instances:
        image = cv2.cvtColor(cv2.imread(str(inst.image_path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        x1, y1, x2, y2 = inst.bbox
        center = ((x1 + x2) / 2, (y1 + y2) / 2)
        scale = ((x2 - x1) * 1.25, (y2 - y1) * 1.25)
        s = float(np.clip(rng.normal(), -1, 1) * 0.25 + 1.0)
        rot = float(np.clip(rng.normal(), -1, 1) * 80.0) if rng.random() < 0.6 else 0.0
        crop, kp, vis = topdown_sample_cv2(
            image,
            inst.keypoints,
            inst.keypoints_visible,
            center,
            (scale[0] * s, scale[1] * s),
            rot,
            bool(rng.random() < 0.5),
            flip_indices,
            input_size,
        )
        torch.from_numpy(crop).permute(2, 0, 1)  # PackPoseInputs: HWC uint8 -> CHW uint8 tensor
        codec.encode(torch.from_numpy(kp[None]).float(), torch.from_numpy(vis[None]).float())
    return len(instances) / (time.perf_counter() - start)


def cached(data: CachedTopdownData, n: int, batch: int, normalize: Normalize | None = None) -> float:
    sync = torch.cuda.synchronize if data.device.type == "cuda" else (lambda: None)
    start = time.perf_counter()
    done = 0
    for i in range(0, n, batch):
        idx = list(range(i, min(n, i + batch)))
        out = data.batch(idx, epoch=0)
        if normalize is not None:
            normalize.inputs(out)
        done += len(idx)
    sync()
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=["lspet", "coco_mini"], default="lspet")
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per path (best one counts)")
    parser.add_argument("--input", default="192x256", help="model input WxH")
    parser.add_argument("--codec", default="msra_heatmap", choices=["msra_heatmap", "simcc"])
    parser.add_argument(
        "--device",
        default="cpu",
        help="where the cached path warps and encodes (e.g. cuda; the direct path stays on the CPU)",
    )
    args = parser.parse_args()
    w, h = (int(v) for v in args.input.split("x"))
    codec = (
        build_codec("msra_heatmap", input_size=(w, h), heatmap_size=(w // 4, h // 4), sigma=2.0)
        if args.codec == "msra_heatmap"
        else build_codec("simcc", input_size=(w, h), sigma=(4.9, 5.66), split_ratio=2.0, normalize=False)
    )
    budgets = sorted({1, os.cpu_count() or 1})
    with tempfile.TemporaryDirectory() as tmp:
        converted, cache_dir = Path(tmp) / "converted", Path(tmp) / "cache"
        convert(_source(args.data), converted)
        t0 = time.perf_counter()
        report = build_cache(converted, cache_dir, CacheSpec(), codec)
        build_s = time.perf_counter() - t0
        meta = load_meta(converted / "meta.yaml")
        instances = list(CocoPoseDataset(converted, "train").instances)[: args.samples]
        split = open_cache(cache_dir)["train"]
        data = CachedTopdownData(
            split,
            topdown_train_pipeline(meta, codec, normalize=None, keep_uint8=True),
            device=torch.device(args.device),
        )
        n = min(args.samples, len(split))
        # Steady state, as from the second epoch of training on: one untimed pass of each path
        # (files and shards in the page cache, thread pools started), then the best of --repeats.
        paths = [
            lambda: direct(instances[:n], meta, codec, (w, h), np.random.default_rng(0)),
            lambda: cached(data, n, args.batch),
            lambda: cached(data, n, args.batch, Normalize()),
        ]
        results = {}
        for threads in budgets:
            torch.set_num_threads(threads)
            cv2.setNumThreads(threads)
            rates = [[path() for path in paths] for _ in range(args.repeats + 1)][1:]
            results[threads] = [max(column) for column in zip(*rates, strict=True)]
    print(
        f"data: {args.data}, {n} training instances, input {w}x{h}, codec {args.codec}, cached on {args.device}, "
        f"best of {args.repeats} passes after a warm-up pass; samples/s per process"
    )
    print(
        f"cache build: {report['counts']['train'] + report['counts']['val']} instances in {build_s:.1f} s (one-off, DVC stage)"
    )
    labels = [
        "(a) direct: decode + cv2 affine + encode",
        f"(b) cached + batched (batch {args.batch})",
        "(c) (b) + normalise to float32",
    ]
    print(f"{'path':<44}" + "".join(f"{f'{t} thread' + ('s' if t > 1 else ''):>12}" for t in budgets))
    for i, label in enumerate(labels):
        print(f"{label:<44}" + "".join(f"{results[t][i]:>12.1f}" for t in budgets))
    for t in budgets:
        a, b, c = results[t]
        print(f"{t} thread{'s' if t > 1 else ''}: ratio (b)/(a) {b / a:.1f}x (goal >= 10x); (c)/(a) {c / a:.1f}x")


if __name__ == "__main__":
    main()
