"""Inference speed: ONNX Runtime (fp32, INT8) vs PyTorch eager for every model preset, end to end, and one-stage vs top-down.

    python benchmarks/bench_inference.py [--quick] [--threads N] [--presets rtmpose-t,...]
                                         [--sections presets,end-to-end,onestage] [--people 1,4,8]

For each preset in ``posecore/models/presets/`` (random weights: speed does not depend on them,
COCO's 17 keypoints): latency at batch 1 (median ms) and throughput at batch 32 (instances/s),
without and with flip test, for PyTorch eager (``model(x)`` / ``model.flip_averaged(x)``, in
channels_last as training runs it), the ONNX export (flip: one run on the 2B batch of the inputs
and their mirror images, then the outputs mapped back and averaged) and its static INT8 copy
(QDQ, calibrated on noise; its accuracy is measured by the export stage, not here). Ratios are
PyTorch time / ONNX time (> 1: ONNX Runtime is faster). Medians: rerun on a busy machine.

End to end for rtmpose-t: 32 person boxes on a 640x480 image -> crop warp (OpenCV) ->
normalise -> network -> flip test -> SimCC decode -> image coordinates, in instances/s.

One-stage vs top-down (``--onestage yoloxpose-lite0``, ``--topdown rtmpose-t``): whole synthetic
images at the one-stage model's input size with 1, 4 and 8 people (``posecore.datasets.synthetic``),
one image per call as ``posecore infer`` runs them, through the bundle runtime (ONNX Runtime +
NumPy, no torch): (a) the one-stage bundle alone (letterbox, network, decode, image pixels); (b) the
top-down bundle on the ground-truth boxes (a perfect, free detector; flip test on); (c) the one-stage
bundle as the person detector of the top-down bundle (``posecore infer --detector``). Random
weights find nobody in particular, so the one-stage network's dense outputs are rewritten, after
it ran, to find exactly the scene's people (each at three anchors, two of them jittered duplicates
that NMS removes, as a trained model answers): network time is real, decode and NMS see the work a
trained model gives them, and the top-down model gets one crop per person. Columns: images/s;
the last line is each route's time at 8 people over its time at 1 (1.0: the route does not slow
down with crowds).

``--quick`` exports with the TorchScript exporter (about 1 s instead of 10-40 s a model) and
times fewer runs: the whole table in a few minutes on two cores. One-stage presets have no place
in the preset table (dense outputs; their flip test mirrors only the keypoint heatmaps): they are
timed in the last section, flip test as their bundle says.
"""

from __future__ import annotations

import argparse
import copy
import functools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from posecore.codecs.base import Poses
from posecore.datasets.synthetic import image_rng, render_image
from posecore.export.onnx import export_onnx, make_bundle_info, ort_session, output_names, quantize
from posecore.inference import BundleModel, Detections, OneStageDetector, predict_poses
from posecore.inference.model import predict_whole_images
from posecore.metainfo import load_meta
from posecore.models.estimator import ModelSpec, PoseEstimator, available_presets, build_estimator
from posecore.models.flip import average_flip, flip_outputs
from posecore.transforms.geometry import bbox_xyxy_to_center_scale, fix_aspect_ratio, warp_matrix
from posecore.transforms.letterbox import letterbox

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


# --------------------------------------------------------------------------- one-stage vs top-down


def write_bundle(name: str, folder: Path, args: argparse.Namespace, input_size: tuple[int, int] | None) -> Path:
    """Export preset ``name`` (random weights, COCO keypoints) as a bundle folder, as the export stage writes it."""
    meta = load_meta("coco")
    spec = ModelSpec.resolve(name, **({"input_size": input_size} if input_size else {}))
    model = build_estimator(spec, meta, pretrained=False).eval()
    folder.mkdir(parents=True, exist_ok=True)
    export_onnx(model, folder / "model.onnx", dynamo=not args.quick)
    # flip test as the export stage records it with evaluate.flip_test on (a one-stage network: its heatmaps, if any)
    info = make_bundle_info(model, meta, outputs=output_names(model), bbox_padding=1.25, flip_test=model.has_flip_test)
    info.write(folder)
    return folder


def scenes(people: int, count: int, size: tuple[int, int]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``count`` synthetic scenes of ``size`` (W, H) with ``people`` people each (fewer when one hides
    entirely): image (H, W, 3) uint8 RGB, boxes (n, 4) xyxy and keypoints (n, 17, 3) in image pixels."""
    out = []
    for i in range(count):
        image, anns = render_image(image_rng(people, "val", i), size[0], size[1], people, people)
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a.bbox for a in anns)], np.float64).reshape(-1, 4)
        keypoints = np.array([a.keypoints for a in anns], np.float64).reshape(-1, 17, 3)
        out.append((image, boxes, keypoints))
    return out


def found(outputs: dict[str, np.ndarray], boxes: np.ndarray, keypoints: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """One image's dense outputs (1, A, ...) rewritten to find exactly these people (input pixels):
    each at three anchors, the true one first, two duplicates 1 px off (NMS keeps one); every other
    anchor scores ~1e-3, under any threshold."""
    out = {k: v.copy() for k, v in outputs.items()}
    rng = np.random.default_rng(seed)
    anchors = rng.choice(out["obj_logits"].shape[1], (len(boxes), 3), replace=False)
    out["obj_logits"][:] = -7.0
    for p, (box, kp) in enumerate(zip(boxes, keypoints, strict=True)):
        xy = np.where(kp[:, 2:] > 0, kp[:, :2], (box[:2] + box[2:]) / 2)
        for d, a in enumerate(anchors[p]):
            shift = np.zeros(2) if d == 0 else rng.uniform(-1.0, 1.0, 2)
            out["obj_logits"][0, a] = 4.0 - 0.1 * p - 2.0 * (d > 0)
            out["boxes"][0, a] = box + np.tile(shift, 2)
            out["keypoints"][0, a] = xy + shift
            out["vis_logits"][0, a] = np.where(kp[:, 2] > 0, 3.0, -3.0)
    return out


class SceneOneStage:
    """A one-stage bundle whose answers are the current scene's people (:func:`found`), after its real network run."""

    def __init__(self, bundle: Path, flip_test: bool | None = None) -> None:
        self.model = BundleModel(bundle, providers=["CPUExecutionProvider"], flip_test=flip_test)
        self.info = self.model.info
        self.people: tuple[np.ndarray, np.ndarray] = (np.zeros((0, 4)), np.zeros((0, 17, 3)))

    def show(self, image: np.ndarray, boxes: np.ndarray, keypoints: np.ndarray) -> None:
        """The scene about to be predicted: its people, mapped into input pixels once, outside the timing."""
        _, warp = letterbox(image, self.info.input_size)
        s, t = warp.diagonal(), warp[:, 2]
        kp = keypoints.copy()
        kp[..., :2] = kp[..., :2] * s + t
        self.people = ((boxes.reshape(-1, 2, 2) * s + t).reshape(-1, 4), kp)

    def predict_images(self, images: list[np.ndarray], batch_size: int = 8) -> list[Poses]:
        def run(x: np.ndarray) -> list[Poses]:
            # outputs(): the network as `posecore infer` runs it (the mirrored batch too when the bundle flip-tests)
            return self.model.decoder(found(self.model.outputs(x), *self.people, seed=0))  # type: ignore[return-value]

        return predict_whole_images(run, images, self.info, batch_size)


def onestage_vs_topdown(workdir: Path, args: argparse.Namespace) -> None:
    """Images/s of a one-stage bundle, a top-down bundle on ground-truth boxes, and the two chained, by people per image."""
    size = (args.onestage_input, args.onestage_input) if args.onestage_input else None
    one_bundle = write_bundle(args.onestage, workdir / "onestage", args, size)
    one = SceneOneStage(one_bundle)
    top = BundleModel(write_bundle(args.topdown, workdir / "topdown", args, None), providers=["CPUExecutionProvider"])
    finder = SceneOneStage(one_bundle, flip_test=False)  # as load_detector loads it: boxes only, no flip test
    detector = OneStageDetector(finder, score_thr=0.3)
    w, h = one.info.input_size
    counts = [int(c) for c in args.people.split(",")]
    rows: dict[int, dict[str, float]] = {}
    for people in counts:
        images = scenes(people, args.scene_images, (w, h))
        routes: dict[str, Callable[[np.ndarray, np.ndarray], object]] = {
            "onestage": lambda image, _: one.predict_images([image]),
            "topdown_gt": lambda image, boxes: predict_poses(top, image, Detections(boxes, np.ones(len(boxes)))),
            "chained": lambda image, _: predict_poses(top, image, detector(image)),
        }
        row = {}
        for route, step in routes.items():
            times = []
            for image, boxes, keypoints in images:
                one.show(image, boxes, keypoints)
                finder.show(image, boxes, keypoints)
                times.append(median_ms(functools.partial(step, image, boxes), args.runs_scene, 1))
            row[route] = statistics.median(times)
        row["people"] = statistics.mean(len(b) for _, b, _ in images)
        rows[people] = row
    print(
        f"\none-stage ({args.onestage}, {w}x{h}) vs top-down ({args.topdown}, flip test) on {w}x{h} synthetic images, "
        "one image per call, bundle runtime (ONNX Runtime + NumPy):"
    )
    head = f"{'people':>7}{'seen':>6}{'one-stage img/s':>17}{'top-down, GT boxes':>20}{'x':>7}{'one-stage det + top-down':>26}{'x':>7}"
    print(head)
    print("-" * len(head))
    for people, r in rows.items():
        print(
            f"{people:>7}{r['people']:>6.1f}{1000.0 / r['onestage']:>17.1f}{1000.0 / r['topdown_gt']:>20.1f}"
            f"{r['topdown_gt'] / r['onestage']:>7.2f}{1000.0 / r['chained']:>26.1f}{r['chained'] / r['onestage']:>7.2f}"
        )
    if len(rows) > 1:
        lo, hi = rows[min(rows)], rows[max(rows)]
        ratios = "  ".join(
            f"{name} {hi[key] / lo[key]:.2f}"
            for name, key in (
                ("one-stage", "onestage"),
                ("top-down GT boxes", "topdown_gt"),
                ("one-stage det + top-down", "chained"),
            )
        )
        print(f"time at {max(rows)} people / at {min(rows)}: {ratios}")
    print("x: route time / one-stage time (> 1: one-stage faster); seen: people annotated per image (some hide)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="TorchScript exporter, fewer runs")
    parser.add_argument("--threads", type=int, default=0, help="torch and ONNX Runtime threads (0: their default)")
    parser.add_argument("--presets", default="", help="comma-separated top-down presets (default: all)")
    parser.add_argument("--sections", default="presets,end-to-end,onestage", help="which parts to run")
    parser.add_argument("--onestage", default="yoloxpose-lite0", help="one-stage preset of the last section")
    parser.add_argument("--topdown", default="rtmpose-t", help="top-down preset of the last section")
    parser.add_argument("--onestage-input", type=int, default=0, help="its square input size (0: the preset's)")
    parser.add_argument("--people", default="1,4,8", help="people per image in the last section")
    parser.add_argument("--scene-images", type=int, default=0, help="images per people count (0: 8, 3 with --quick)")
    args = parser.parse_args()
    args.runs, args.warmup, args.runs_b32 = (5, 1, 2) if args.quick else (50, 5, 10)
    args.runs_scene = 3 if args.quick else 10
    args.scene_images = args.scene_images or (3 if args.quick else 8)
    sections = set(args.sections.split(","))
    if args.threads:
        torch.set_num_threads(args.threads)
    topdown = [p for p in available_presets() if ModelSpec.resolve(p).task == "topdown"]
    presets = [p for p in args.presets.split(",") if p] or topdown
    shown = f"; presets: {', '.join(presets)}" if "presets" in sections else ""
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads{shown}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="posecore-bench-") as tmp:
        if "presets" in sections:
            for name in presets:
                results[name] = bench_preset(name, Path(tmp), args)
            print()
            print_table(results)
        if "end-to-end" in sections:
            end_to_end(Path(tmp), args)
        if "onestage" in sections:
            onestage_vs_topdown(Path(tmp), args)


if __name__ == "__main__":
    main()
