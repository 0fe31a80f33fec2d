"""One optimizer step of :func:`posecore.engine.trainer.fit` and what a checkpoint holds.

The pieces the loop composes: :class:`Parts` (model, optimizer, scheduler, scaler, EMA:
everything a checkpoint saves), :class:`Counters` (epoch, step, best metric), the micro-batch
forward/backward with gradient accumulation and DDP ``no_sync``, the gradient application
(clipping, optimizer, scheduler, EMA) and the loss window behind the logged means. Also the
contracts ``fit`` is generic over (:class:`TrainData`, :class:`TrainLogger`, ``LossFn``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import warnings
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from posecore.engine.config import TrainConfig
from posecore.engine.distributed import all_reduce_mean
from posecore.engine.ema import ModelEMA
from posecore.engine.sampler import GlobalBatchSampler
from posecore.engine.seed import capture_rng_state, restore_rng_state

INPUTS_KEY = "inputs"


class TrainData(Protocol):
    """A training set that builds batches itself: ``batch(indices, epoch)`` returns
    ``{"inputs": (B, ...) Tensor, <targets>: (B, ...) Tensor, ...}`` for ``B = len(indices)``."""

    @property
    def num_samples(self) -> int: ...

    def batch(self, indices: list[int], epoch: int) -> dict[str, Tensor]: ...


class TrainLogger(Protocol):
    """Experiment tracking (MLflow); only rank 0 calls it."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_artifact(self, path: Path) -> None: ...


LossFn = Callable[[Any, dict[str, Tensor]], Mapping[str, Tensor]]
ValidateFn = Callable[[nn.Module, int], Mapping[str, float]]
PreprocessFn = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class Counters:
    """The counters a checkpoint restores."""

    epoch: int = 0
    global_step: int = 0
    best_metric: float | None = None
    best_epoch: int | None = None
    val_history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class Parts:
    """Everything training updates; what a checkpoint saves and restores."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    ema: ModelEMA | None

    def state_dict(self, progress: Counters, cfg: TrainConfig, metric_name: str) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng_state(),
            "epoch": progress.epoch,
            "global_step": progress.global_step,
            "best_metric": progress.best_metric,
            "best_epoch": progress.best_epoch,
            "metric_name": metric_name,
            "val_history": progress.val_history,
            "config": dataclasses.asdict(cfg),
        }

    def load_state_dict(self, ckpt: dict[str, Any]) -> Counters:
        self.model.load_state_dict(ckpt["model"])
        if self.ema is not None:
            if ckpt["ema"] is None:
                warnings.warn("the checkpoint has no EMA; the average restarts from the current weights", stacklevel=3)
            else:
                self.ema.load_state_dict(ckpt["ema"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.scaler.is_enabled() and ckpt["scaler"]:
            self.scaler.load_state_dict(ckpt["scaler"])
        restore_rng_state(ckpt["rng"])
        return Counters(
            epoch=int(ckpt["epoch"]),
            global_step=int(ckpt["global_step"]),
            best_metric=ckpt["best_metric"],
            best_epoch=ckpt["best_epoch"],
            val_history=list(ckpt["val_history"]),
        )


@dataclass(frozen=True)
class Step:
    """The fixed pieces of one optimizer step."""

    cfg: TrainConfig
    device: torch.device
    train_model: nn.Module
    loss_fn: LossFn
    autocast: Callable[[], AbstractContextManager]
    accum_steps: int
    preprocess: PreprocessFn | None = None


class BatchDataset(torch.utils.data.Dataset):
    """Adapts :class:`TrainData` to a DataLoader whose keys are ``(epoch, sample indices)``."""

    def __init__(self, data: TrainData) -> None:
        self.data = data

    def __getitem__(self, key: tuple[int, tuple[int, ...]]) -> dict[str, Tensor]:
        epoch, indices = key
        return self.data.batch(list(indices), epoch)


class BatchKeys(torch.utils.data.Sampler):
    def __init__(self, sampler: GlobalBatchSampler) -> None:
        self.sampler = sampler

    def __iter__(self):
        return ((self.sampler.epoch, tuple(mb.indices)) for mb in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def autocast_context(amp: str, device: torch.device) -> Callable[[], AbstractContextManager]:
    if amp == "off":
        return contextlib.nullcontext
    if amp == "fp16" and device.type != "cuda":
        raise ValueError(
            f"train.amp 'fp16' needs a CUDA device (float16 with a gradient scaler), this run is on {device}; "
            "use 'bf16' (supported on CPU) or 'off'"
        )
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return functools.partial(torch.autocast, device_type=device.type, dtype=dtype)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors of the batch, also inside nested dicts (``targets``), moved to ``device``."""
    return {
        k: v.to(device, non_blocking=True)
        if isinstance(v, Tensor)
        else to_device(v, device)
        if isinstance(v, dict)
        else v
        for k, v in batch.items()
    }


def forward_backward(step: Step, scaler: torch.amp.GradScaler, batch: dict[str, Any], sync: bool) -> dict[str, Tensor]:
    """Forward, loss and backward of one micro-batch; returns the detached losses incl. their sum ``loss``."""
    batch = to_device(batch, step.device)
    if step.preprocess is not None:
        batch = step.preprocess(batch)
    no_sync = not sync and isinstance(step.train_model, DistributedDataParallel)
    with step.train_model.no_sync() if no_sync else contextlib.nullcontext():
        with step.autocast():
            outputs = step.train_model(batch[INPUTS_KEY])
            losses = dict(step.loss_fn(outputs, batch))
        if not losses:
            raise ValueError("loss_fn returned no losses")
        total = functools.reduce(torch.add, losses.values())
        scaler.scale(total / step.accum_steps).backward()
    return {"loss": total.detach().float(), **{k: v.detach().float() for k, v in losses.items()}}


def apply_gradients(step: Step, parts: Parts) -> tuple[float, float | None]:
    """Clip (when asked), step the optimizer, scheduler and EMA; returns the LR used and the
    gradient norm before clipping (None without clipping)."""
    lr = float(parts.optimizer.param_groups[0]["lr"])
    grad_norm = None
    if step.cfg.grad_clip > 0:
        parts.scaler.unscale_(parts.optimizer)
        params = [p for g in parts.optimizer.param_groups for p in g["params"] if p.grad is not None]
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, step.cfg.grad_clip))
    parts.scaler.step(parts.optimizer)
    parts.scaler.update()
    parts.optimizer.zero_grad(set_to_none=True)
    parts.scheduler.step()
    if parts.ema is not None:
        parts.ema.update(parts.model)
    return lr, grad_norm


class LossWindow:
    """Sums of the micro-batch losses since the last log line."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.count = 0

    def add(self, losses: dict[str, Tensor]) -> None:
        for k, v in losses.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
        self.count += 1

    def pop_mean(self) -> dict[str, float]:
        """Mean over micro-batches and processes (a collective: every rank must call it)."""
        keys = sorted(self.sums)
        means = all_reduce_mean(torch.stack([self.sums[k] for k in keys]) / self.count).tolist()
        self.sums, self.count = {}, 0
        return dict(zip(keys, means, strict=True))
