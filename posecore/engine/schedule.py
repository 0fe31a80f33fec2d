"""Per-iteration learning-rate schedule as a pure function, and its ``LambdaLR``.

``lr(step) = cfg.lr * lr_factor(step, total_steps, cfg)`` where ``step`` counts optimizer
steps from 0 (the LR used *by* step ``step``) and the factor is the product of

- warm-up: ``warmup_ratio + (1 - warmup_ratio) * step / warmup_iters`` for
  ``step < warmup_iters``, then 1 (MMEngine ``LinearLR(start_factor=warmup_ratio,
  by_epoch=False, end=warmup_iters)``);
- decay, by ``cfg.schedule``:
  ``"cosine"``: ``min_lr_ratio + (1 - min_lr_ratio) * (1 + cos(pi * t)) / 2`` with
  ``t = (step - warmup_iters) / (total_steps - warmup_iters)`` clamped to [0, 1];
  ``"step"``: ``gamma ** (number of milestones m with step >= round(m * total_steps / epochs))``
  (milestones are epochs, as in MMPose's ``MultiStepLR``);
  ``"constant"``: 1.
"""

from __future__ import annotations

import functools
import math

import torch

from posecore.engine.config import TrainConfig


def warmup_factor(step: int, cfg: TrainConfig) -> float:
    if step >= cfg.warmup_iters:
        return 1.0
    return cfg.warmup_ratio + (1.0 - cfg.warmup_ratio) * step / cfg.warmup_iters


def decay_factor(step: int, total_steps: int, cfg: TrainConfig) -> float:
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "cosine":
        span = max(1, total_steps - cfg.warmup_iters)
        t = min(1.0, max(0.0, (step - cfg.warmup_iters) / span))
        return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))
    if cfg.schedule == "step":
        steps_per_epoch = total_steps / cfg.epochs
        passed = sum(step >= round(m * steps_per_epoch) for m in cfg.milestones)
        return cfg.gamma**passed
    raise ValueError(f"train.schedule {cfg.schedule!r} is not one of 'cosine', 'step', 'constant'")


def lr_factor(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """Multiplier of ``cfg.lr`` for optimizer step ``step`` (0-based) of ``total_steps``."""
    return warmup_factor(step, cfg) * decay_factor(step, total_steps, cfg)


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, cfg: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` stepped once per optimizer step; its state (``last_epoch``) is the step count."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(lr_factor, total_steps=total_steps, cfg=cfg))
