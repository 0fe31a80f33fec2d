"""Codec throughput: encode / decode time per instance at batch 1 and batch 64, side by side.

    python benchmarks/bench_codecs.py [--threads 1] [--device cpu] [--repeats 5]

Each codec runs on 64 instances of 17 keypoints in a 192x256 input (48x64 heatmaps): once as
64 batch-1 calls (a per-instance loop over the torch codec) and once as one batch-64 call; the
"speedup" is the per-instance time of the first over the second. "numpy loop" is the MMPose
style baseline: per-instance, per-keypoint NumPy/OpenCV loops (``tests/codecs/_mmpose_reference.py``).
Times are the best of ``--repeats`` runs, in microseconds per instance. The table is printed
for each torch thread budget in ``--threads`` (default: 1 and every core of the machine).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from posecore.codecs import Codec, build_codec

INPUT_SIZE = (192, 256)
HEATMAP_SIZE = (48, 64)
BATCH = 64
NUM_KEYPOINTS = 17

VARIANTS: list[tuple[str, str, dict[str, object]]] = [
    ("msra", "msra_heatmap", {"heatmap_size": HEATMAP_SIZE}),
    ("msra+dark", "msra_heatmap", {"heatmap_size": HEATMAP_SIZE, "use_dark": True}),
    ("udp", "udp_heatmap", {"heatmap_size": HEATMAP_SIZE}),
    ("udp combined", "udp_heatmap", {"heatmap_size": HEATMAP_SIZE, "heatmap_type": "combined"}),
    ("simcc", "simcc", {"sigma": (4.9, 5.66)}),
    ("simcc+dark", "simcc", {"sigma": (4.9, 5.66), "use_dark": True}),
    ("regression", "regression", {}),
    ("integral", "integral_regression", {"heatmap_size": HEATMAP_SIZE}),
]


def _reference():
    path = Path(__file__).resolve().parents[1] / "tests" / "codecs" / "_mmpose_reference.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("_mmpose_reference", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def best_of(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    fn()  # warm-up (allocator, caches)
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def numpy_loops(ref, vid: str, codec: Codec, kp: np.ndarray, vis: np.ndarray, outputs: dict) -> tuple:
    """(encode, decode) closures running the MMPose-style loops over all instances, or None."""
    n = kp.shape[0]
    scale_msra = np.array(INPUT_SIZE, np.float32) / np.array(HEATMAP_SIZE)
    scale_udp = (np.array(INPUT_SIZE) - 1) / (np.array(HEATMAP_SIZE) - 1)
    np_out = {k: v.cpu().numpy() for k, v in outputs.items()}
    if vid in ("msra", "msra+dark"):
        dark = vid == "msra+dark"
        return (
            lambda: [ref.msra_encode(kp[i], vis[i], INPUT_SIZE, HEATMAP_SIZE, 2.0, dark) for i in range(n)],
            lambda: [
                ref.heatmap_decode(np_out["heatmaps"][i], scale_msra, "dark" if dark else "quarter") for i in range(n)
            ],
        )
    if vid == "udp":
        return (
            lambda: [ref.udp_encode(kp[i], vis[i], INPUT_SIZE, HEATMAP_SIZE, 2.0) for i in range(n)],
            lambda: [ref.heatmap_decode(np_out["heatmaps"][i], scale_udp, "dark_udp") for i in range(n)],
        )
    if vid == "udp combined":
        rf = codec.radius_factor  # type: ignore[attr-defined]
        return (
            lambda: [ref.udp_combined_encode(kp[i], vis[i], INPUT_SIZE, HEATMAP_SIZE, rf) for i in range(n)],
            lambda: [ref.udp_combined_decode(np_out["heatmaps"][i], HEATMAP_SIZE, INPUT_SIZE, rf) for i in range(n)],
        )
    if vid in ("simcc", "simcc+dark"):
        dark = vid == "simcc+dark"
        sigma = codec.sigma  # type: ignore[attr-defined]
        return (
            lambda: [ref.simcc_encode(kp[i], vis[i], INPUT_SIZE, sigma, 2.0) for i in range(n)],
            lambda: [ref.simcc_decode(np_out["simcc_x"][i], np_out["simcc_y"][i], 2.0, sigma, dark) for i in range(n)],
        )
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--threads", default=None, help="comma-separated torch CPU thread budgets (default: 1 and every core)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    budgets = [int(t) for t in args.threads.split(",")] if args.threads else sorted({1, os.cpu_count() or 1})
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    ref = _reference()

    g = torch.Generator().manual_seed(0)
    size = torch.tensor(INPUT_SIZE, dtype=torch.float32)
    keypoints = (0.1 * size + 0.8 * size * torch.rand(BATCH, NUM_KEYPOINTS, 2, generator=g)).to(device)
    visible = (torch.rand(BATCH, NUM_KEYPOINTS, generator=g) < 0.8).float().to(device)

    print(f"device={device} batch={BATCH} K={NUM_KEYPOINTS} input={INPUT_SIZE} heatmap={HEATMAP_SIZE}")
    print(f"microseconds per instance, best of {args.repeats}")
    header = (
        f"{'codec':13s} | {'enc b1':>8s} {'enc b64':>8s} {'speedup':>7s} | {'dec b1':>8s} {'dec b64':>8s} "
        f"{'speedup':>7s} | {'np enc':>8s} {'np dec':>8s}"
    )
    for threads in budgets:
        torch.set_num_threads(threads)
        print(f"\ntorch threads: {threads}")
        print(header)
        print("-" * len(header))
        for vid, name, extra in VARIANTS:
            codec = build_codec(name, input_size=INPUT_SIZE, **extra)
            print(bench_one(vid, codec, keypoints, visible, ref, args.repeats, sync))


def bench_one(vid: str, codec: Codec, keypoints, visible, ref, repeats: int, sync: Callable[[], None]) -> str:
    """One table row: torch batch-1 loop vs one batch-64 call, plus the NumPy loop baseline."""
    targets = codec.encode(keypoints, visible)
    outputs = {k: v + 0.01 * torch.rand_like(v) for k, v in targets.items() if k in codec.target_keys}
    singles = [{k: v[i : i + 1] for k, v in outputs.items()} for i in range(BATCH)]

    enc1 = best_of(
        lambda: [codec.encode(keypoints[i : i + 1], visible[i : i + 1]) for i in range(BATCH)], repeats, sync
    )
    enc64 = best_of(lambda: codec.encode(keypoints, visible), repeats, sync)
    dec1 = best_of(lambda: [codec.decode(s) for s in singles], repeats, sync)
    dec64 = best_of(lambda: codec.decode(outputs), repeats, sync)

    np_enc = np_dec = "-"
    kp_np, vis_np = keypoints.cpu().numpy(), visible.cpu().numpy()
    loops = numpy_loops(ref, vid, codec, kp_np, vis_np, outputs) if ref is not None else None
    if loops is not None:
        reps = max(1, repeats // 2)
        np_enc = f"{best_of(loops[0], reps, lambda: None) / BATCH * 1e6:8.1f}"
        np_dec = f"{best_of(loops[1], reps, lambda: None) / BATCH * 1e6:8.1f}"

    us = 1e6 / BATCH
    return (
        f"{vid:13s} | {enc1 * us:8.1f} {enc64 * us:8.1f} {enc1 / enc64:6.1f}x | "
        f"{dec1 * us:8.1f} {dec64 * us:8.1f} {dec1 / dec64:6.1f}x | {np_enc:>8s} {np_dec:>8s}"
    )


if __name__ == "__main__":
    main()
