"""One training step, side by side: the engine's fast paths against the plain ones they replace.

    python benchmarks/bench_step.py [--presets yoloxpose-lite0,synthetic-lite0-heatmap] [--batch 32]
                                    [--steps 8] [--warmup 2] [--json PATH]

Per preset (for COCO's 17 keypoints), built as ``stages/train.py`` builds it (channels_last, train mode, frozen stages as
the preset says), one process alternates two variants on the same random batch, step by step:

- ``plain``: every conv-BN-activation block runs its BatchNorm as a separate layer, and the
  optimizer is torch's AdamW with its per-parameter loop (``fused=False, foreach=False``);
- ``engine``: what training runs (``posecore.engine.optim.build_optimizer``: fused AdamW; eval-mode
  BatchNorm folded into its convolution by ``ConvBNAct``).

A step is forward, a loss (the mean of every output), backward and the optimizer step. The
table has the median step time of each and their ratio (engine / plain; below 1 is faster).
Alternating in one process keeps a busy machine's slowdowns on both sides alike. The two
variants train separate copies of the model, so neither sees the other's updates.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from posecore.engine.config import TrainConfig  # noqa: E402
from posecore.engine.optim import build_optimizer, param_groups  # noqa: E402
from posecore.metainfo import load_meta  # noqa: E402
from posecore.models.backbones._common import ConvBNAct  # noqa: E402
from posecore.models.estimator import ModelSpec, build_estimator  # noqa: E402

DEFAULT_PRESETS = ("yoloxpose-lite0", "synthetic-lite0-heatmap")


def _plain_conv_bn_act(self: ConvBNAct, x: torch.Tensor) -> torch.Tensor:
    return self.act(self.bn(self.conv(x)))


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> float:
    start = time.perf_counter()
    out = model(x)
    tensors = out.values() if isinstance(out, dict) else (out if isinstance(out, tuple | list) else (out,))
    loss = sum(t.float().mean() for t in tensors)
    opt.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[union-attr]
    opt.step()
    return time.perf_counter() - start


def bench_preset(name: str, batch: int, steps: int, warmup: int) -> dict[str, Any]:
    """Median step seconds of ``plain`` and ``engine`` for one preset, alternating step by step."""
    torch.manual_seed(0)
    spec = ModelSpec.resolve(name)
    meta = load_meta("coco")  # the body presets' 17 keypoints
    engine_model = build_estimator(spec, meta).to(memory_format=torch.channels_last).train()
    plain_model = copy.deepcopy(engine_model)
    cfg = TrainConfig(optimizer="adamw", lr=1e-4, weight_decay=0.05)
    engine_opt = build_optimizer(engine_model, cfg)
    plain_opt = torch.optim.AdamW(
        param_groups(plain_model, cfg.weight_decay, cfg.no_decay_norm_bias),
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        fused=False,
        foreach=False,
    )
    w, h = spec.input_size
    x = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(1)).contiguous(
        memory_format=torch.channels_last
    )
    folded: Callable[..., torch.Tensor] = ConvBNAct.forward
    times: dict[str, list[float]] = {"plain": [], "engine": []}
    try:
        for _ in range(warmup + steps):
            ConvBNAct.forward = _plain_conv_bn_act  # type: ignore[method-assign]
            times["plain"].append(_step(plain_model, plain_opt, x))
            ConvBNAct.forward = folded  # type: ignore[method-assign]
            times["engine"].append(_step(engine_model, engine_opt, x))
    finally:
        ConvBNAct.forward = folded  # type: ignore[method-assign]
    plain = statistics.median(times["plain"][warmup:])
    engine = statistics.median(times["engine"][warmup:])
    return {
        "preset": name,
        "input": f"{w}x{h}",
        "batch": batch,
        "plain_s": plain,
        "engine_s": engine,
        "ratio": engine / plain,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default=",".join(DEFAULT_PRESETS), help="comma-separated presets")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8, help="measured steps of each variant")
    parser.add_argument("--warmup", type=int, default=2, help="steps of each variant left out")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.batch < 1:
        parser.error("--steps and --batch must be >= 1, --warmup >= 0")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; CPU, batch {args.batch}"
    )
    rows = [bench_preset(p, args.batch, args.steps, args.warmup) for p in args.presets.split(",") if p]
    print(f"{'preset':<28} {'input':>8} {'plain s':>9} {'engine s':>9} {'engine/plain':>13}")
    for r in rows:
        print(f"{r['preset']:<28} {r['input']:>8} {r['plain_s']:>9.3f} {r['engine_s']:>9.3f} {r['ratio']:>13.3f}")
    if args.json:
        args.json.write_text(json.dumps({"benchmark": "step", "results": rows}, indent=2))


if __name__ == "__main__":
    main()
