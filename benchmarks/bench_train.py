"""Training throughput per model preset: samples/s, step time and the share of it spent waiting for data.

    python benchmarks/bench_train.py [--presets synthetic-lite0,...] [--steps N] [--batch 64]
                                     [--device cpu|cuda] [--num-workers 1] [--quick] [--json PATH]

Every preset in ``posecore/models/presets/`` is built at its default input size and trained by
the real engine, :func:`posecore.engine.fit`, set up as ``stages/train.py`` does it (channels_last,
the ``train:`` settings of params.yaml: optimizer, schedule, EMA, ``log_interval``; AMP off on the
CPU), on batches from the real producer: :class:`~posecore.data.cache.CachedTopdownData` behind
the trainer's own DataLoader with ``train.num_workers`` background batch builders.

The data is a small synthetic set (``--images`` train images, rendered, converted and cached once
per codec in a temporary folder; ``data/cache`` is used instead when its key matches the preset's
codec), read with indices modulo its size, so any number of steps can run.

How it is timed: the engine has no hook for it, so for the length of the run ``DataLoader`` is
replaced by a subclass whose iterator records when ``fit`` asks for a batch and when it gets it.
data wait = time blocked in ``next()``; step = from one request to the next (wait + forward,
backward, optimizer, scheduler, EMA, logging bookkeeping). The first ``--warmup`` steps (worker
start-up, kernel selection) are left out. ``build ms`` is the time a background builder took for
one batch (measured inside the worker): with ``w`` workers the producer keeps up while
``build / w`` stays below the compute part of a step. On CUDA the device is synchronised once at
the end, so samples/s is exact and per-step times are CPU-side averages.

By default each preset runs ``--budget-s`` seconds of measured steps (at least 2, at most 50):
the table for all presets takes about 5 minutes on two CPU cores (7 when other jobs share them),
most of it ResNet-50.
``--quick``: batch 16 and a 5 s budget. Numbers on a shared machine are noisy: rerun.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import torch

from posecore.config import load_params
from posecore.data.build import build_cache
from posecore.data.cache import CachedTopdownData, CacheSpec, cache_key, open_cache
from posecore.datasets.converters import SourceSpec, convert
from posecore.datasets.synthetic import SynthParams, generate
from posecore.engine import TrainConfig, fit
from posecore.engine.seed import seed_everything
from posecore.metainfo import load_meta
from posecore.models.estimator import ModelSpec, available_presets, build_estimator
from posecore.transforms import Normalize, topdown_train_pipeline

REPO = Path(__file__).resolve().parents[1]
BUILD_KEY = "bench_build_s"  # extra batch key: seconds the producer spent on the batch
MIN_STEPS, MAX_STEPS = 2, 50


class _Enough(Exception):
    """Raised from the batch iterator to end ``fit`` once enough steps are measured."""


class _ModuloData:
    """A ``TrainData`` of ``num_samples`` samples over a smaller cache (index modulo its size);
    each batch carries the seconds it took to build under ``BUILD_KEY``."""

    def __init__(self, inner: CachedTopdownData, num_samples: int) -> None:
        self.inner = inner
        self._num_samples = num_samples

    @property
    def num_samples(self) -> int:
        return self._num_samples

    def batch(self, indices: list[int], epoch: int) -> dict[str, Any]:
        start = time.perf_counter()
        n = self.inner.num_samples
        out = self.inner.batch([i % n for i in indices], epoch)
        out[BUILD_KEY] = time.perf_counter() - start
        return out


@dataclasses.dataclass
class _Record:
    requested: list[float] = dataclasses.field(default_factory=list)  # fit asked for batch i
    received: list[float] = dataclasses.field(default_factory=list)  # ... and got it
    build_s: list[float] = dataclasses.field(default_factory=list)
    end: float = math.nan  # fit asked for the batch after the last measured one


@contextmanager
def _timed_loader(record: _Record, stop: Callable[[_Record], bool], sync: Callable[[], None]) -> Iterator[None]:
    """While active, ``torch.utils.data.DataLoader`` (what ``fit`` builds) records batch timings."""
    base = torch.utils.data.DataLoader

    class TimedLoader(base):  # type: ignore[misc, valid-type]
        def __iter__(self) -> Iterator[Any]:
            inner = super().__iter__()
            while True:
                requested = time.perf_counter()
                if stop(record):
                    sync()
                    record.end = time.perf_counter()
                    raise _Enough
                batch = next(inner)  # StopIteration ends this generator too
                record.received.append(time.perf_counter())
                record.requested.append(requested)
                record.build_s.append(float(batch.pop(BUILD_KEY, math.nan)))
                yield batch

    with mock.patch.object(torch.utils.data, "DataLoader", TimedLoader):
        yield


def _synthetic_dataset(root: Path, images: int) -> Path:
    generate(SynthParams(n_train=images, n_val=2, workers=min(2, os.cpu_count() or 1)), root / "synthetic")
    convert(SourceSpec(source="synthetic", meta="coco", root=str(root / "synthetic")), root / "converted")
    return root / "converted"


class _Caches:
    """One target-encoding cache per distinct codec: ``data/cache`` when its key matches, else built here."""

    def __init__(self, workdir: Path, images: int, spec: CacheSpec, repo_dataset: Path, repo_cache: Path) -> None:
        self.workdir, self.images, self.spec = workdir, images, spec
        self.repo_dataset, self.repo_cache = repo_dataset, repo_cache
        self._dataset: Path | None = None
        self._built: dict[str, Path] = {}

    def get(self, model: ModelSpec) -> tuple[Path, Path, str]:
        """(dataset folder, cache folder, where it came from) for ``model``'s codec."""
        codec = model.build_codec()
        if (self.repo_cache / "key.json").is_file() and (self.repo_dataset / "meta.yaml").is_file():
            try:
                open_cache(self.repo_cache, cache_key(self.repo_dataset, self.spec, codec))
                return self.repo_dataset, self.repo_cache, "data/cache"
            except (ValueError, FileNotFoundError):
                pass
        if self._dataset is None:
            self._dataset = _synthetic_dataset(self.workdir, self.images)
        tag = json.dumps([model.input_size, model.codec], sort_keys=True)
        if tag not in self._built:
            out = self.workdir / f"cache{len(self._built)}"
            build_cache(self._dataset, out, self.spec, codec)
            self._built[tag] = out
        return self._dataset, self._built[tag], f"synthetic {self.images} images"


def bench_preset(name: str, caches: _Caches, base: TrainConfig, args: argparse.Namespace) -> dict[str, Any]:
    spec = ModelSpec.resolve(name)
    dataset, cache_dir, source = caches.get(spec)
    meta = load_meta(dataset / "meta.yaml")
    codec = spec.build_codec()
    split = open_cache(cache_dir)["train"]
    cfg = dataclasses.replace(
        base,
        epochs=1,
        global_batch_size=args.batch,
        batch_size_per_device=args.batch,
        num_workers=args.num_workers,
        amp=args.amp,
        nproc=1,
        progress=False,
        val_interval=1,
        checkpoint_dir=str(caches.workdir / "checkpoints"),  # never written: the run stops mid-epoch
    )
    seed_everything(cfg.seed, cfg.deterministic)
    model = build_estimator(spec, meta, pretrained=False).to(memory_format=torch.channels_last)
    pipeline = topdown_train_pipeline(meta, codec, normalize=None, keep_uint8=True)
    max_steps = args.steps or MAX_STEPS
    data = _ModuloData(CachedTopdownData(split, pipeline, seed=cfg.seed), (args.warmup + max_steps + 1) * args.batch)

    def loss_fn(outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return model.loss(outputs, batch["targets"])

    def stop(rec: _Record) -> bool:
        measured = len(rec.requested) - args.warmup
        if measured <= 0:
            return False
        if args.steps:
            return measured >= args.steps
        elapsed = time.perf_counter() - rec.requested[args.warmup]
        return measured >= MAX_STEPS or (measured >= MIN_STEPS and elapsed >= args.budget_s)

    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    record = _Record()
    with _timed_loader(record, stop, sync):
        try:
            fit(model, loss_fn, data, cfg, device=device, preprocess=Normalize(model.mean, model.std).inputs)
        except _Enough:
            pass
    gc.collect()  # shuts the persistent batch builders down before the next preset

    w = args.warmup
    starts = record.requested[w:]
    ends = record.requested[w + 1 :] + [record.end]
    waits = [got - asked for asked, got in zip(starts, record.received[w:], strict=True)]
    steps = [e - s for s, e in zip(starts, ends, strict=True)]
    total = record.end - starts[0]
    builds = [b for b in record.build_s[w:] if math.isfinite(b)]
    return {
        "preset": name,
        "input_size": list(spec.input_size),
        "batch": args.batch,
        "steps": len(steps),
        "samples_per_s": args.batch * len(steps) / total,
        "step_ms": 1e3 * total / len(steps),
        "step_ms_median": 1e3 * statistics.median(steps),
        "data_wait_ms": 1e3 * statistics.fmean(waits),
        "wait_share": sum(waits) / total,
        "build_ms": 1e3 * statistics.fmean(builds) if builds else math.nan,
        "data": source,
        "step_times_ms": [round(1e3 * t, 2) for t in steps],
        "wait_times_ms": [round(1e3 * t, 2) for t in waits],
    }


def print_table(results: list[dict[str, Any]]) -> None:
    head = (
        f"{'preset':<22}{'input':>9}{'batch':>7}{'steps':>7}{'samples/s':>11}{'step ms':>10}"
        f"{'data wait ms':>14}{'wait share %':>14}{'build ms':>10}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        w, h = r["input_size"]
        print(
            f"{r['preset']:<22}{f'{w}x{h}':>9}{r['batch']:>7}{r['steps']:>7}{r['samples_per_s']:>11.1f}"
            f"{r['step_ms']:>10.0f}{r['data_wait_ms']:>14.1f}{100 * r['wait_share']:>14.2f}{r['build_ms']:>10.0f}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    params = load_params(REPO / "params.yaml")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="", help="comma-separated presets (default: all)")
    parser.add_argument("--steps", type=int, default=0, help="measured steps per preset (default: --budget-s)")
    parser.add_argument("--budget-s", type=float, default=20.0, help="measured seconds per preset without --steps")
    parser.add_argument("--warmup", type=int, default=1, help="steps left out of the timings")
    parser.add_argument("--batch", type=int, default=None, help="default: train.batch_size_per_device")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--num-workers", type=int, default=params.train.num_workers, help="default: train.num_workers")
    parser.add_argument("--amp", choices=["off", "bf16", "fp16"], help="default: train.amp on CUDA, off on the CPU")
    parser.add_argument("--images", type=int, default=64, help="synthetic train images in the cache")
    parser.add_argument("--quick", action="store_true", help="batch 16, 5 s per preset")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.batch is None:
        args.batch = 16 if args.quick else params.train.batch_size_per_device
    if args.quick:
        args.budget_s = min(args.budget_s, 5.0)
    if args.amp is None:
        args.amp = params.train.amp if args.device == "cuda" else "off"
    presets = [p for p in args.presets.split(",") if p] or available_presets()
    unknown = sorted(set(presets) - set(available_presets()))
    if unknown:
        parser.error(f"unknown presets {unknown}; available: {', '.join(available_presets())}")
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else (platform.processor() or "cpu")
    print(
        f"torch {torch.__version__}, device {args.device} ({device_name}), {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs; batch {args.batch}, num_workers {args.num_workers}, amp {args.amp}, "
        f"warm-up {args.warmup} step(s), "
        + (f"{args.steps} measured steps" if args.steps else f"~{args.budget_s:g} s measured per preset"),
        flush=True,
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="posecore-bench-train-") as tmp:
        caches = _Caches(Path(tmp), args.images, params.encode, REPO / params.data.out, REPO / params.encode.out)
        for name in presets:
            start = time.perf_counter()
            results.append(bench_preset(name, caches, params.train, args))
            print(f"  {name}: {time.perf_counter() - start:.0f} s (data: {results[-1]['data']})", flush=True)
    print()
    print_table(results)
    print(
        "step: wait + forward/backward/optimizer (train.* of params.yaml); data wait: blocked in next() on the "
        f"trainer's DataLoader (goal: < 5% of the step); build: one batch in a background builder "
        f"({args.num_workers} worker(s), sharing the CPUs with the training process)"
    )
    if args.json:
        report = {
            "benchmark": "train",
            "machine": {
                "torch": torch.__version__,
                "device": args.device,
                "device_name": device_name,
                "threads": torch.get_num_threads(),
                "cpus": os.cpu_count(),
                "python": sys.version.split()[0],
            },
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "results": results,
        }
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
