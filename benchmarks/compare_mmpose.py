"""Against MMPose 1.3.2: the same workloads through MMPose and through posecore, in one run, one table.

    python benchmarks/compare_mmpose.py --peer-python /path/to/mmpose-venv/bin/python [--threads 1]
        [--repeats 7] [--workloads codecs,pipeline,cocoeval] [--out compare.json]

MMPose runs in its own venv (``../shared/peer/README.md``), as a subprocess of its python running
``benchmarks/_mmpose_peer.py``; posecore never imports mmpose. Both sides get the same inputs
(written to a temporary folder here), the same thread budget (``--threads``, default 1, as a
DataLoader worker: ``OMP_NUM_THREADS``..., torch and cv2 threads) and the same timer (the peer
module's ``timed_runs``, warm-up first). The peer runs first, then posecore: they never compete.
Workloads, each as the library runs it in training and evaluation:

* MSRA heatmap (192x256 input, 48x64 heatmaps, 17 keypoints, sigma 2) and SimCC (split ratio 2,
  sigma (4.9, 5.66), as RTMPose) encode and decode, microseconds per instance over the same 64
  instances: MMPose one call per instance (``GenerateTarget`` encodes one instance per sample,
  its heads decode a batch in a loop); posecore one batch-64 call / 64, and, for honesty, 64
  batch-1 calls / 64. Decoded keypoints of both are compared (max abs difference, px).
* Top-down training data, samples/s in one process: MMPose's td-hm COCO pipeline
  (``CocoDataset``: LoadImage, GetBBoxCenterScale, RandomFlip, RandomHalfBody,
  RandomBBoxTransform, TopdownAffine, GenerateTarget, PackPoseInputs) vs the cached and direct
  paths of ``benchmarks/bench_data.py`` (imported, not copied), on ``../shared/data/coco_mini``'s
  train images and annotations.
* COCO keypoint evaluation, seconds: MMPose's ``CocoMetric`` (xtcocotools) vs posecore's
  ``CocoKeypointEvaluator`` (pycocotools), defaults of both (bbox_keypoint rescoring, OKS-NMS
  0.9), on the peer's synthetic set (``make_synth_coco.py``: 5000 images x 3 people, from
  ``mmpose_samples/coco/test_coco.json``); GT loading timed apart; the 10 stats compared.

The table shows medians of ``--repeats`` runs (``--coco-repeats`` for the evaluation); ``--out``
gets every run and the ratios of medians and of bests (JSON). Missing data or peer scripts skip
that workload with a note; a missing peer python exits with status 2. (A little over 400 lines:
the posecore side of three workloads and their comparison read best top to bottom in one file.)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np
import torch

from posecore.codecs import Codec, build_codec
from posecore.data.build import build_cache
from posecore.data.cache import CachedTopdownData, CacheSpec, open_cache
from posecore.datasets.coco import CocoPoseDataset
from posecore.datasets.converters import convert
from posecore.evaluation import STATS_NAMES, CocoKeypointEvaluator, KeypointPredictions
from posecore.metainfo import load_meta
from posecore.transforms import topdown_train_pipeline

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared"
INPUT_SIZE = (192, 256)
HEATMAP_SIZE = (48, 64)
WORKLOADS = ("codecs", "pipeline", "cocoeval")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules.setdefault(name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


timed_runs: Callable[..., list[float]] = _module("_mmpose_peer").timed_runs  # one timer for both sides


@dataclass
class Row:
    """One table line: per-run values of each side (seconds, or samples/s when ``higher_is_better``)."""

    workload: str
    unit: str
    mmpose: list[float] | None
    posecore: list[float] | None
    higher_is_better: bool = False
    goal: float | None = None
    scale: float = 1.0  # display factor (1e6 shows seconds as microseconds)


def speedup(mmpose: float, posecore: float, higher_is_better: bool) -> float:
    """How many times faster posecore is: time ratio mmpose/posecore, or rate ratio posecore/mmpose."""
    return posecore / mmpose if higher_is_better else mmpose / posecore


def row_summary(row: Row) -> dict[str, Any]:
    """Medians, bests and both ratios of a row (ratios None when a side is missing)."""
    out: dict[str, Any] = asdict(row)
    for side in ("mmpose", "posecore"):
        values = getattr(row, side)
        out[f"{side}_median"] = statistics.median(values) if values else None
        out[f"{side}_best"] = (max if row.higher_is_better else min)(values) if values else None
    for kind in ("median", "best"):
        a, b = out[f"mmpose_{kind}"], out[f"posecore_{kind}"]
        out[f"ratio_{kind}"] = speedup(a, b, row.higher_is_better) if a and b else None
    return out


def format_table(rows: list[Row]) -> str:
    """Markdown table: workload | MMPose 1.3.2 | posecore | ratio | goal.

    Sides are medians; ratio = posecore speedup of the medians, then of the bests (contention only
    slows a run, so bests are the less noisy figure on a shared machine); goals judge the medians.
    """
    lines = ["| workload | MMPose 1.3.2 | posecore | ratio | goal |", "| --- | ---: | ---: | ---: | --- |"]
    for row in rows:
        s = row_summary(row)

        def cell(side: str, s: dict[str, Any] = s, row: Row = row) -> str:
            value = s[f"{side}_median"]
            return "-" if value is None else f"{value * row.scale:.4g} {row.unit}"

        ratio, top = s["ratio_median"], s["ratio_best"]
        goal = ""
        if row.goal is not None:
            goal = f">= {row.goal:g}x" + ("" if ratio is None else (" (met)" if ratio >= row.goal else " (not met)"))
        lines.append(
            f"| {row.workload} | {cell('mmpose')} | {cell('posecore')} | "
            f"{'-' if ratio is None else f'{ratio:.1f}x [best {top:.1f}x]'} | {goal} |"
        )
    return "\n".join(lines)


def check_peer_python(path: str) -> str:
    """MMPose's version in the peer interpreter at ``path``; exits with status 2 and a fix when it is unusable."""
    how = "install MMPose 1.3.2 in its own venv as ../shared/peer/README.md says and pass its bin/python"
    problem = None
    if not (Path(path).is_file() and os.access(path, os.X_OK)):
        problem = "does not exist or is not executable"
    else:
        cmd = [path, "-c", "import mmpose; print(mmpose.__version__)"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            problem = f"cannot import mmpose ({proc.stderr.strip()[-300:]})"
    if problem:
        print(f"error: --peer-python {path} {problem}; {how}", file=sys.stderr)
        raise SystemExit(2)
    return proc.stdout.strip()


def codec_pair() -> tuple[Codec, Codec]:
    msra = build_codec("msra_heatmap", input_size=INPUT_SIZE, heatmap_size=HEATMAP_SIZE, sigma=2.0)
    simcc = build_codec("simcc", input_size=INPUT_SIZE, sigma=(4.9, 5.66), split_ratio=2.0, normalize=False)
    return msra, simcc


def codec_inputs(n: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """keypoints (n, 17, 2) in 10-90% of the input, visible (n, 17) (80% ones); decoder inputs =
    posecore's targets + N(0, 0.02) noise: heatmaps (n, 17, 64, 48), simcc_x (n, 17, 384), simcc_y (n, 17, 512)."""
    rng = np.random.default_rng(seed)
    size = np.array(INPUT_SIZE, np.float32)
    kp = (0.1 * size + 0.8 * size * rng.random((n, 17, 2))).astype(np.float32)
    vis = (rng.random((n, 17)) < 0.8).astype(np.float32)
    msra, simcc = codec_pair()
    targets = msra.encode(torch.from_numpy(kp), torch.from_numpy(vis))
    targets |= simcc.encode(torch.from_numpy(kp), torch.from_numpy(vis))
    out = {"keypoints": kp, "visible": vis}
    for key in ("heatmaps", "simcc_x", "simcc_y"):
        t = targets[key].numpy()
        out[key] = (t + rng.normal(0, 0.02, t.shape)).astype(np.float32)
    return out


def posecore_codecs(inputs: dict[str, np.ndarray], repeats: int) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Seconds per instance of each op at batch n (one call) and batch 1 (n calls); decoded keypoints."""
    kp, vis = torch.from_numpy(inputs["keypoints"]), torch.from_numpy(inputs["visible"])
    n = kp.shape[0]
    times: dict[str, list[float]] = {}
    decoded: dict[str, Any] = {}
    for name, codec in zip(("msra", "simcc"), codec_pair(), strict=True):
        outputs = {key: torch.from_numpy(inputs[key]) for key in codec.target_keys}
        singles = [{k: v[i : i + 1] for k, v in outputs.items()} for i in range(n)]
        times[f"{name}_encode_batch"] = timed_runs(lambda c=codec: c.encode(kp, vis), repeats, n)
        times[f"{name}_encode_b1"] = timed_runs(
            lambda c=codec: [c.encode(kp[i : i + 1], vis[i : i + 1]) for i in range(n)], repeats, n
        )
        times[f"{name}_decode_batch"] = timed_runs(lambda c=codec, o=outputs: c.decode(o), repeats, n)
        times[f"{name}_decode_b1"] = timed_runs(lambda c=codec, s=singles: [c.decode(o) for o in s], repeats, n)
        decoded[f"{name}_keypoints"] = codec.decode(outputs)[0].numpy()
        decoded[f"{name}_targets"] = {k: v.numpy() for k, v in codec.encode(kp, vis).items()}
    return times, decoded


def _aggregate_rate(rate: Callable[[], float], samples: int, min_s: float = 0.3) -> float:
    """samples/s over as many passes of ``rate`` (one pass of ``samples``) as fill ``min_s``."""
    elapsed = passes = 0
    while elapsed < min_s:
        elapsed += samples / rate()
        passes += 1
    return passes * samples / elapsed


def posecore_pipeline(data: str, repeats: int, batch: int = 64, samples: int | None = None) -> dict[str, Any]:
    """samples/s of bench_data's direct and cached paths on ``data``'s train split (cache built first, untimed)."""
    bench_data = _module("bench_data")
    msra, _ = codec_pair()
    with tempfile.TemporaryDirectory() as tmp:
        converted, cache_dir = Path(tmp) / "converted", Path(tmp) / "cache"
        convert(bench_data._source(data), converted)
        start = time.perf_counter()
        build_cache(converted, cache_dir, CacheSpec(), msra)
        build_s = time.perf_counter() - start
        meta = load_meta(converted / "meta.yaml")
        split = open_cache(cache_dir)["train"]
        n = min(samples or len(split), len(split))
        instances = list(CocoPoseDataset(converted, "train").instances)[:n]
        cached = CachedTopdownData(split, topdown_train_pipeline(meta, msra, normalize=None, keep_uint8=True))
        rng = np.random.default_rng(0)
        paths = {
            "direct": lambda: bench_data.direct(instances, meta, msra, INPUT_SIZE, rng),
            "cached": lambda: bench_data.cached(cached, n, batch),
        }
        out: dict[str, Any] = {"instances": n, "cache_build_s": build_s, "batch": batch}
        for name, path in paths.items():
            path()  # warm-up: page cache, thread pools
            out[name] = [_aggregate_rate(path, n) for _ in range(repeats)]
    return out


def synth_coco(peer_python: str, script: Path, tmp: Path, size: str) -> tuple[Path, Path]:
    """Run the peer's ``make_synth_coco.py`` (NumPy only, deterministic) in ``tmp``; (gt, dt) json paths."""
    src = SHARED / "data" / "mmpose_samples" / "coco" / "test_coco.json"
    (tmp / "data" / "coco").mkdir(parents=True, exist_ok=True)
    (tmp / "data" / "coco" / "test_coco.json").write_bytes(src.read_bytes())
    images, per = size.split("x")
    env = os.environ | {"PEER": str(tmp)}
    subprocess.run([peer_python, str(script), images, per], env=env, check=True, capture_output=True)
    return synth_paths(tmp, size)


def synth_paths(tmp: Path, size: str) -> tuple[Path, Path]:
    return tmp / "data" / "synth" / f"gt_{size}.json", tmp / "data" / "synth" / f"dt_{size}.json"


def posecore_cocoeval(gt: Path, dt: Path, repeats: int) -> dict[str, Any]:
    """Seconds to load the GT and to evaluate the detections (rescoring, OKS-NMS, COCOeval); the 10 stats."""
    meta = load_meta("coco")
    dets = json.loads(dt.read_text())
    kps = np.array([d["keypoints"] for d in dets], np.float64).reshape(len(dets), -1, 3)
    predictions = KeypointPredictions(
        image_ids=np.array([d["image_id"] for d in dets]),
        keypoints=kps[..., :2],
        keypoint_scores=kps[..., 2],
        bbox_scores=np.array([d["score"] for d in dets]),
        instance_ids=np.arange(len(dets)),
    )
    load_s, eval_s, stats = [], [], {}
    for _ in range(repeats + 1):  # the first, warm-up run is dropped
        start = time.perf_counter()
        evaluator = CocoKeypointEvaluator(gt, meta)
        load_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        stats = evaluator.evaluate(predictions)
        eval_s.append(time.perf_counter() - start)
    return {"predictions": len(dets), "load_gt_s": load_s[1:], "evaluate_s": eval_s[1:], "stats": stats}


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def codec_rows(peer: dict[str, list[float]], mine: dict[str, list[float]]) -> list[Row]:
    """MMPose per-instance calls against posecore at batch 64 (with the goal) and at batch 1."""
    rows = []
    goals = {"encode": 20.0, "decode": 5.0}
    for name, label in (("msra", "MSRA heatmap"), ("simcc", "SimCC")):
        for op in ("encode", "decode"):
            theirs = peer[f"{name}_{op}"]
            for batch, key, goal in ((64, "batch", goals[op]), (1, "b1", None)):
                workload = f"{label} {op}, posecore at batch {batch}"
                rows.append(Row(workload, "us", theirs, mine[f"{name}_{op}_{key}"], goal=goal, scale=1e6))
    return rows


def compare_codecs(
    peer: dict[str, Any], inputs: dict[str, np.ndarray], peer_npz: Path, repeats: int
) -> tuple[list[Row], dict]:
    """Rows of the codec workloads and how far the outputs of the two agree (max abs difference)."""
    times, mine = posecore_codecs(inputs, repeats)
    theirs = np.load(peer_npz)
    agreement = {
        "msra_encode_heatmaps": max_abs_diff(theirs["msra_heatmaps"], mine["msra_targets"]["heatmaps"]),
        "msra_decode_keypoints_px": max_abs_diff(theirs["msra_keypoints"], mine["msra_keypoints"]),
        "simcc_encode_x": max_abs_diff(theirs["simcc_x"], mine["simcc_targets"]["simcc_x"]),
        "simcc_encode_y": max_abs_diff(theirs["simcc_y"], mine["simcc_targets"]["simcc_y"]),
        "simcc_decode_keypoints_px": max_abs_diff(theirs["simcc_keypoints"], mine["simcc_keypoints"]),
    }
    return codec_rows(peer["codecs"], times), agreement


def compare_pipeline(peer: dict[str, Any], data: str, repeats: int) -> tuple[list[Row], dict]:
    mine = posecore_pipeline(data, repeats)
    theirs = peer["pipeline"]["samples_per_s"]
    cached = f"train pipeline, posecore cached (batch {mine['batch']})"
    rows = [
        Row(cached, "samples/s", theirs, mine["cached"], higher_is_better=True, goal=10.0),
        Row("train pipeline, posecore direct (per sample)", "samples/s", theirs, mine["direct"], higher_is_better=True),
    ]
    info = {"data": data, "mmpose_instances": peer["pipeline"]["instances"], "posecore_instances": mine["instances"]}
    return rows, info | {"posecore_cache_build_s": mine["cache_build_s"]}


def compare_cocoeval(peer: dict[str, Any], gt: Path, dt: Path, size: str, repeats: int) -> tuple[list[Row], dict]:
    mine = posecore_cocoeval(gt, dt, repeats)
    theirs = peer["cocoeval"]
    label = f"COCO eval {size} ({mine['predictions']} dets)"
    rows = [
        Row(f"{label}: rescore + NMS + COCOeval", "s", theirs["evaluate_s"], mine["evaluate_s"]),
        Row(f"{label}: load GT", "s", theirs["load_gt_s"], mine["load_gt_s"]),
    ]
    stats = [mine["stats"][name] for name in STATS_NAMES]
    info = {
        "stats_names": list(STATS_NAMES),
        "posecore_stats": stats,
        "mmpose_stats": theirs["stats"],
        "max_abs_stat_diff": max_abs_diff(np.array(stats), np.array(theirs["stats"])),
    }
    return rows, info


def peer_inputs(args: argparse.Namespace, workloads: list[str], tmp: Path, notes: list[str]) -> list[str]:
    """Write the shared inputs into ``tmp``; the peer script's arguments. Drops (with a note) workloads lacking data."""
    peer_args: list[str] = []
    np.savez(tmp / "codec_inputs.npz", **codec_inputs())
    source = _module("bench_data")._source(args.data)
    root = Path(source.root)
    if "pipeline" in workloads and not root.is_dir():
        notes.append(f"pipeline skipped: data folder {root} is absent")
        workloads.remove("pipeline")
    if "pipeline" in workloads:
        peer_args += ["--pipeline-ann", str(root / source.annotations["train"]), "--pipeline-root", str(root)]
        peer_args += ["--pipeline-images", source.images["train"] + "/", "--pipeline-samples", str(args.samples)]
    script, samples = args.peer_scripts / "make_synth_coco.py", SHARED / "data" / "mmpose_samples"
    if "cocoeval" in workloads and not (script.is_file() and samples.is_dir()):
        notes.append(f"cocoeval skipped: {script} or {samples} is absent")
        workloads.remove("cocoeval")
    if "cocoeval" in workloads:
        gt, dt = synth_coco(args.peer_python, script, tmp, args.coco_size)
        peer_args += ["--coco-gt", str(gt), "--coco-dt", str(dt), "--coco-repeats", str(args.coco_repeats)]
    return peer_args


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer-python", required=True, help="python of the venv holding MMPose 1.3.2")
    parser.add_argument("--threads", type=int, default=1, help="thread budget of both sides (default 1)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per measurement, after a warm-up")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated subset of " + str(WORKLOADS))
    parser.add_argument("--data", default="coco_mini", help="pipeline data in ../shared/data (COCO format)")
    parser.add_argument("--samples", type=int, default=344, help="MMPose pipeline samples per timed run")
    parser.add_argument("--coco-size", default="5000x3", help="synthetic evaluation set: images x people")
    parser.add_argument("--coco-repeats", type=int, default=3)
    parser.add_argument("--peer-scripts", type=Path, default=SHARED / "peer", help="folder of make_synth_coco.py")
    parser.add_argument("--out", type=Path, help="write every run, medians, bests and ratios here as JSON")
    args = parser.parse_args(argv)
    if unknown := sorted(set(args.workloads.split(",")) - set(WORKLOADS)):
        parser.error(f"unknown workloads {unknown}; choose from {list(WORKLOADS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workloads = [w for w in WORKLOADS if w in args.workloads.split(",")]
    version = check_peer_python(args.peer_python)
    for var in THREAD_VARS:
        os.environ[var] = str(args.threads)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    notes: list[str] = []
    rows: list[Row] = []
    report: dict[str, Any] = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}
    report.update(mmpose_version=version, threads=args.threads, repeats=args.repeats, coco_repeats=args.coco_repeats)
    report["loadavg_before"] = [round(x, 2) for x in os.getloadavg()]  # a busy machine slows whichever side runs then
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        peer_args = peer_inputs(args, workloads, tmp, notes)
        print(f"[compare] MMPose {version} side ({','.join(workloads)})", file=sys.stderr, flush=True)
        cmd = [args.peer_python, str(HERE / "_mmpose_peer.py"), "--inputs", tmp_dir, "--out", str(tmp / "peer.json")]
        cmd += ["--threads", str(args.threads), "--repeats", str(args.repeats), "--workloads", ",".join(workloads)]
        subprocess.run([*cmd, *peer_args], check=True, env=os.environ | {"PYTHONNOUSERSITE": "1"})
        peer = json.loads((tmp / "peer.json").read_text())
        report["peer"] = {k: peer[k] for k in ("versions", "threads")}
        report["posecore"] = {"threads": {"torch": torch.get_num_threads(), "cv2": cv2.getNumThreads()}}
        print("[compare] posecore side", file=sys.stderr, flush=True)
        if "codecs" in workloads:
            inputs = dict(np.load(tmp / "codec_inputs.npz"))
            new, report["codecs_agreement"] = compare_codecs(peer, inputs, tmp / "peer.json.npz", args.repeats)
            rows += new
        if "pipeline" in workloads:
            new, report["pipeline"] = compare_pipeline(peer, args.data, args.repeats)
            rows += new
        if "cocoeval" in workloads:
            gt, dt = synth_paths(tmp, args.coco_size)
            new, report["cocoeval"] = compare_cocoeval(peer, gt, dt, args.coco_size, args.coco_repeats)
            rows += new
    table = format_table(rows)
    print(f"MMPose {version} vs posecore, {args.threads} thread(s), medians of {args.repeats} runs")
    print("ratio = posecore speedup (MMPose time / posecore time, or posecore samples/s / MMPose samples/s)")
    print("of the medians [of the best runs]; goals are judged on the medians\n")
    print(table + "\n")
    for key in ("codecs_agreement", "pipeline", "cocoeval"):
        if key in report:
            print(f"{key}: {json.dumps(report[key], default=float)}")
    report["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(f"load average (1, 5, 15 min) before {report['loadavg_before']}, after {report['loadavg_after']}")
    for note in notes:
        print(note)
    report.update(rows=[row_summary(r) for r in rows], table=table, notes=notes)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
