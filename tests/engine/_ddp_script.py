"""A toy training run for the engine tests: run under torchrun, as a plain subprocess, or imported.

``python _ddp_script.py --out DIR [options]`` trains a small BN-free MLP on
:class:`ToyData` with :func:`posecore.engine.fit` and saves each rank's final weights to
``DIR/rank{r}.pt``. ``POSECORE_TEST_KILL_AT=E,N`` makes the process SIGKILL itself when it
builds its N-th batch of epoch E (0-based), to test resumption after a hard crash.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from posecore.engine import TrainConfig, fit
from posecore.engine.distributed import session
from posecore.engine.seed import seed_everything

IN_DIM, OUT_DIM = 6, 3


class ToyData:
    """Regression ``y = sin(x @ A) + noise``; x is fixed per sample, noise keyed by (sample, epoch).

    ``inputs`` (B, 6) float32, ``target`` (B, 3) float32.
    """

    def __init__(self, num_samples: int = 80, seed: int = 7, kill_at: tuple[int, int] | None = None) -> None:
        self.num_samples = num_samples
        rng = np.random.default_rng(seed)
        self.x = rng.normal(size=(num_samples, IN_DIM)).astype(np.float32)
        self.a = rng.normal(size=(IN_DIM, OUT_DIM)).astype(np.float32)
        self.seed = seed
        self.calls: dict[int, int] = {}
        self.kill_at = kill_at

    def batch(self, indices: list[int], epoch: int) -> dict[str, Tensor]:
        self.calls[epoch] = self.calls.get(epoch, 0) + 1
        if self.kill_at == (epoch, self.calls[epoch]):
            os.kill(os.getpid(), signal.SIGKILL)
        x = self.x[indices]
        noise = np.stack([np.random.default_rng([self.seed, i, epoch]).normal(size=OUT_DIM) for i in indices])
        y = np.sin(x @ self.a) + 0.1 * noise.astype(np.float32)
        return {"inputs": torch.from_numpy(x), "target": torch.from_numpy(y.astype(np.float32))}


def make_model(seed: int = 0, dropout: float = 0.0) -> nn.Module:
    """Linear(6, 16), LayerNorm, Tanh, Linear(16, 3), then Dropout (a consumer of the global torch RNG)."""
    seed_everything(seed)
    return nn.Sequential(
        nn.Linear(IN_DIM, 16), nn.LayerNorm(16), nn.Tanh(), nn.Linear(16, OUT_DIM), nn.Dropout(dropout)
    )


def loss_fn(outputs: Tensor, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    return {"mse": F.mse_loss(outputs, batch["target"])}


def validate(model: nn.Module, epoch: int) -> dict[str, float]:
    data = ToyData(num_samples=32, seed=99)
    batch = data.batch(list(range(32)), 0)
    with torch.no_grad():
        mse = F.mse_loss(model.eval()(batch["inputs"]), batch["target"])
    return {"neg_mse": -float(mse)}


def make_cfg(**overrides: object) -> TrainConfig:
    base = TrainConfig(
        epochs=2,
        global_batch_size=8,
        batch_size_per_device=4,
        optimizer="adamw",
        lr=0.02,
        weight_decay=0.01,
        warmup_iters=5,
        warmup_ratio=0.1,
        schedule="cosine",
        min_lr_ratio=0.1,
        grad_clip=1.0,
        ema=True,
        ema_gamma=20.0,
        val_interval=1,
        log_interval=5,
        progress=False,
    )
    return dataclasses.replace(base, **overrides)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--micro", type=int, default=4)
    p.add_argument("--global-batch", type=int, default=8)
    p.add_argument("--num-samples", type=int, default=80)
    p.add_argument("--deterministic", action="store_true")
    p.add_argument("--resume", type=Path)
    p.add_argument("--dropout", type=float, default=0.0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = make_cfg(
        epochs=args.epochs,
        batch_size_per_device=args.micro,
        global_batch_size=args.global_batch,
        deterministic=args.deterministic,
        checkpoint_dir=str(args.out / "ckpt"),
    )
    kill = os.environ.get("POSECORE_TEST_KILL_AT")
    kill_at = (int(kill.split(",")[0]), int(kill.split(",")[1])) if kill else None
    with session() as info:
        model = make_model(cfg.seed, args.dropout)
        result = fit(
            model,
            loss_fn,
            ToyData(args.num_samples, kill_at=kill_at),
            cfg,
            validate=validate,
            metric_name="neg_mse",
            resume=args.resume,
        )
        torch.save(
            {"model": model.state_dict(), "global_step": result.global_step, "world_size": info.world_size},
            args.out / f"rank{info.rank}.pt",
        )


if __name__ == "__main__":
    main()
