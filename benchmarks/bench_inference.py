"""Inference speed: ONNX Runtime (fp32, INT8) vs PyTorch eager for every model preset, and end to end.

    python benchmarks/bench_inference.py [--quick] [--threads N] [--presets rtmpose-t,...]

For each preset in ``posecore/models/presets/`` (random weights: speed does not depend on them,
COCO's 17 keypoints): latency at batch 1 (median ms) and throughput at batch 32 (instances/s),
without and with flip test, for PyTorch eager (``model(x)`` / ``model.flip_averaged(x)``, in
channels_last as training runs it), the ONNX export (flip: one run on the 2B batch of the inputs
and their mirror images, then the outputs mapped back and averaged) and its static INT8 copy
(QDQ, calibrated on noise; its accuracy is measured by the export stage, not here). Ratios are
PyTorch time / ONNX time (> 1: ONNX Runtime is faster). Medians: rerun on a busy machine.

End to end for rtmpose-t: 32 person boxes on a 640x480 image -> crop warp (OpenCV) ->
normalise -> network -> flip test -> SimCC decode -> image coordinates, in instances/s.

``--quick`` exports with the TorchScript exporter (about 1 s instead of 10-40 s a model) and
times fewer runs: the whole table in a few minutes on two cores.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from posecore.export.onnx import export_onnx, ort_session, quantize
from posecore.metainfo import load_meta
from posecore.models.estimator import ModelSpec, PoseEstimator, available_presets, build_estimator
from posecore.models.flip import average_flip, flip_outputs
from posecore.transforms.geometry import bbox_xyxy_to_center_scale, fix_aspect_ratio, warp_matrix

BATCH = 32


def median_ms(fn: Callable[[], object], runs: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


class OnnxModel:
    """An ONNX Runtime session that answers like ``PoseEstimator`` (outputs as torch tensors), flip test included."""

    def __init__(self, path: Path, model: PoseEstimator, threads: int) -> None:
        self.session = ort_session(path, threads)
        self.names = [o.name for o in self.session.get_outputs()]
        self.flip_indices = model.flip_indices
        self.spec = model.spec

    def __call__(self, x: np.ndarray) -> dict[str, torch.Tensor]:
        values = self.session.run(self.names, {"inputs": x})
        return {k: torch.from_numpy(v) for k, v in zip(self.names, values, strict=True)}

    def flip_averaged(self, x: np.ndarray) -> dict[str, torch.Tensor]:
        both = self(np.concatenate([x, np.ascontiguousarray(x[..., ::-1])]))
        n = len(x)
        plain = {k: v[:n] for k, v in both.items()}
        back = flip_outputs(
            {k: v[n:] for k, v in both.items()}, self.flip_indices, self.spec.shift_heatmap, self.spec.input_size
        )
        return average_flip(plain, back)


def bench_preset(name: str, workdir: Path, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    meta = load_meta("coco")
    spec = ModelSpec.resolve(name)
    model = build_estimator(spec, meta, pretrained=False).eval()
    eager = copy.deepcopy(model).to(memory_format=torch.channels_last)  # PyTorch's faster CPU layout
    w, h = spec.input_size
    x32 = torch.randn(BATCH, 3, h, w, generator=torch.Generator().manual_seed(0))
    x1 = x32[:1]
    path = workdir / f"{name}.onnx"
    start = time.perf_counter()
    exported = export_onnx(model, path, dynamo=not args.quick)
    export_s = time.perf_counter() - start
    int8_path = quantize(path, workdir / f"{name}.int8.onnx", "static", x32[:8].numpy())
    runtimes: dict[str, Callable[[bool, int], Callable[[], object]]] = {}

    def torch_fn(flip: bool, batch: int) -> Callable[[], object]:
        x = x1 if batch == 1 else x32
        return lambda: _no_grad(eager.flip_averaged if flip else eager, x)

    def onnx_fn(runner: OnnxModel) -> Callable[[bool, int], Callable[[], object]]:
        def make(flip: bool, batch: int) -> Callable[[], object]:
            x = (x1 if batch == 1 else x32).numpy()
            return lambda: runner.flip_averaged(x) if flip else runner(x)

        return make

    runtimes["torch"] = torch_fn
    runtimes["onnx"] = onnx_fn(OnnxModel(path, model, args.threads))
    runtimes["int8"] = onnx_fn(OnnxModel(int8_path, model, args.threads))
    results: dict[str, dict[str, float]] = {}
    for flip in (False, True):
        row: dict[str, float] = {}
        for runtime, make in runtimes.items():
            row[f"{runtime}_b1_ms"] = median_ms(make(flip, 1), args.runs, args.warmup)
            row[f"{runtime}_b32_ips"] = BATCH * 1000.0 / median_ms(make(flip, BATCH), args.runs_b32, 1)
        results["flip" if flip else "plain"] = row
    print(
        f"  {name}: exported with {exported.exporter} in {export_s:.1f} s, "
        f"{path.stat().st_size / 1e6:.1f} MB fp32 / {int8_path.stat().st_size / 1e6:.1f} MB int8",
        flush=True,
    )
    return results


@torch.no_grad()
def _no_grad(fn: Callable[[torch.Tensor], object], x: torch.Tensor) -> object:
    return fn(x)


def print_table(results: dict[str, dict[str, dict[str, float]]]) -> None:
    head = (
        f"{'preset':<22}{'flip':<6}"
        f"{'b1 torch ms':>12}{'onnx ms':>9}{'x':>7}{'int8 ms':>9}{'x':>7}"
        f"{'b32 torch/s':>13}{'onnx/s':>9}{'x':>7}{'int8/s':>9}{'x':>7}"
    )
    print(head)
    print("-" * len(head))
    for name, rows in results.items():
        for mode, r in rows.items():
            print(
                f"{name:<22}{'yes' if mode == 'flip' else 'no':<6}"
                f"{r['torch_b1_ms']:>12.1f}{r['onnx_b1_ms']:>9.1f}{r['torch_b1_ms'] / r['onnx_b1_ms']:>7.2f}"
                f"{r['int8_b1_ms']:>9.1f}{r['torch_b1_ms'] / r['int8_b1_ms']:>7.2f}"
                f"{r['torch_b32_ips']:>13.0f}{r['onnx_b32_ips']:>9.0f}{r['onnx_b32_ips'] / r['torch_b32_ips']:>7.2f}"
                f"{r['int8_b32_ips']:>9.0f}{r['int8_b32_ips'] / r['torch_b32_ips']:>7.2f}"
            )
    print("x: PyTorch time / ONNX Runtime time (> 1: ONNX Runtime faster); /s: instances per second")


def end_to_end(workdir: Path, args: argparse.Namespace) -> None:
    """Boxes on an image -> keypoints in image pixels, for rtmpose-t: instances/s per runtime."""
    meta = load_meta("coco")
    spec = ModelSpec.resolve("rtmpose-t")
    model = build_estimator(spec, meta, pretrained=False).eval()
    w, h = spec.input_size
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    x1, y1 = rng.uniform(0, 500, BATCH), rng.uniform(0, 300, BATCH)
    boxes = np.stack([x1, y1, x1 + rng.uniform(40, 140, BATCH), y1 + rng.uniform(80, 180, BATCH)], 1)
    center, scale = bbox_xyxy_to_center_scale(torch.from_numpy(boxes), 1.25)
    warps = warp_matrix(center, fix_aspect_ratio(scale, w / h), torch.zeros(BATCH), (w, h), dtype=torch.float64)
    mean = np.array(model.mean, np.float32)
    std = np.array(model.std, np.float32)
    path = workdir / "rtmpose-t.onnx"
    if not path.exists():
        export_onnx(model, path, dynamo=not args.quick)
    int8 = workdir / "rtmpose-t.int8.onnx"
    if not int8.exists():
        quantize(path, int8, "static", np.random.default_rng(0).standard_normal((8, 3, h, w), np.float32))
    eager = copy.deepcopy(model).to(memory_format=torch.channels_last)
    runners: dict[str, Callable[[np.ndarray], dict[str, torch.Tensor]]] = {
        "torch": lambda x: _no_grad(eager.flip_averaged, torch.from_numpy(x)),  # type: ignore[dict-item]
        "onnx": OnnxModel(path, model, args.threads).flip_averaged,
        "int8": OnnxModel(int8, model, args.threads).flip_averaged,
    }
    inverse = torch.linalg.inv(
        torch.cat([warps, torch.tensor([[[0.0, 0.0, 1.0]]], dtype=torch.float64).expand(BATCH, 1, 3)], 1)
    )[:, :2]

    def pipeline(run: Callable[[np.ndarray], dict[str, torch.Tensor]]) -> Callable[[], object]:
        def step() -> object:
            crops = np.stack([cv2.warpAffine(image, m.numpy(), (w, h), flags=cv2.INTER_LINEAR) for m in warps])
            x = np.ascontiguousarray(((crops.astype(np.float32) - mean) / std).transpose(0, 3, 1, 2))
            keypoints, scores = model.codec.decode(run(x))
            kp = keypoints.to(torch.float64)
            return kp @ inverse[:, :, :2].transpose(1, 2) + inverse[:, None, :, 2], scores

        return step

    print(f"\nend to end, rtmpose-t, {BATCH} boxes per image, flip test on (crop + normalise + network + decode):")
    for name, run in runners.items():
        ms = median_ms(pipeline(run), args.runs_b32, 1)
        print(f"  {name:<6} {BATCH * 1000.0 / ms:8.0f} instances/s  ({ms:.1f} ms per image)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="TorchScript exporter, fewer runs")
    parser.add_argument("--threads", type=int, default=0, help="torch and ONNX Runtime threads (0: their default)")
    parser.add_argument("--presets", default="", help="comma-separated presets (default: all)")
    args = parser.parse_args()
    args.runs, args.warmup, args.runs_b32 = (5, 1, 2) if args.quick else (50, 5, 10)
    if args.threads:
        torch.set_num_threads(args.threads)
    presets = [p for p in args.presets.split(",") if p] or available_presets()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; presets: {', '.join(presets)}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="posecore-bench-") as tmp:
        for name in presets:
            results[name] = bench_preset(name, Path(tmp), args)
        print()
        print_table(results)
        end_to_end(Path(tmp), args)


if __name__ == "__main__":
    main()
