"""The training loop, generic over models and data: :func:`fit`.

One optimizer step consumes ``cfg.global_batch_size`` samples chosen by
:class:`~posecore.engine.sampler.GlobalBatchSampler`; every process runs its
``accum_steps`` micro-batches (gradients synced by DDP on the last one only), the summed
loss is scaled by ``1 / accum_steps``, and then come gradient clipping, the optimizer and LR
scheduler steps, and the EMA update. After each epoch rank 0 validates when due (with the EMA
weights when ``cfg.ema``), writes ``best.pt`` on improvement and then ``latest.pt``.

Contracts:

- ``model(batch["inputs"])`` returns the outputs given to ``loss_fn(outputs, batch)``, which
  returns named scalar losses; their sum is minimised and each is logged.
- ``data`` (:class:`TrainData`) builds a batch from sample indices and the epoch, with any
  augmentation randomness keyed by (sample index, epoch), never by the process or worker.
- ``validate(model, epoch)`` runs on rank 0 only (the others wait) with the unwrapped model in
  whatever mode it sets, and returns metrics; ``epoch`` is the 1-based epoch just finished.
  Global RNG states are restored after it, so validation never changes the training stream.
- The caller owns the process group: wrap the call in :func:`posecore.engine.distributed.session`
  when started by torchrun; ``fit`` joins it if needed and never leaves it.
- Call :func:`~posecore.engine.seed.seed_everything` before building the model so initial
  weights are reproducible; ``fit`` seeds again at its start.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from posecore.engine.checkpoint import BEST, LATEST, is_improvement, load_checkpoint, save_checkpoint
from posecore.engine.config import TrainConfig, check_train_config
from posecore.engine.distributed import (
    DistInfo,
    barrier,
    broadcast_object,
    init_distributed,
    is_main,
    wrap_ddp,
)
from posecore.engine.ema import ModelEMA
from posecore.engine.optim import build_optimizer, freeze_modules
from posecore.engine.precise_bn import precise_bn_batches, recompute_bn_stats
from posecore.engine.sampler import GlobalBatchSampler
from posecore.engine.schedule import build_scheduler
from posecore.engine.seed import capture_rng_state, restore_rng_state, seed_everything
from posecore.engine.step import (
    INPUTS_KEY,
    BatchDataset,
    BatchKeys,
    Counters,
    LossFn,
    LossWindow,
    Parts,
    PreprocessFn,
    Step,
    TrainData,
    TrainLogger,
    ValidateFn,
    apply_gradients,
    autocast_context,
    forward_backward,
    to_device,
)
from posecore.progress import Progress, format_duration

_log = logging.getLogger("posecore.engine")

# Settings that may change between a run and its resumption without changing the result.
_RUNTIME_SETTINGS = frozenset(
    {"nproc", "batch_size_per_device", "num_workers", "log_interval", "progress", "checkpoint_dir", "val_interval"}
)


@dataclass(frozen=True)
class FitResult:
    """Where training ended. ``val_history``: one ``{"epoch": e, **metrics}`` per validation, across resumes."""

    epochs: int
    global_step: int
    best_metric: float | None
    best_epoch: int | None
    val_history: list[dict[str, float]]
    latest: Path
    best: Path | None


def _validate(validate: ValidateFn, model: nn.Module, epoch: int, info: DistInfo) -> dict[str, float]:
    metrics: dict[str, float] = {}
    if info.is_main:
        rng = capture_rng_state()
        try:
            metrics = {k: float(v) for k, v in validate(model, epoch).items()}
        finally:
            restore_rng_state(rng)
    return broadcast_object(metrics)


def _precise_bn(model: nn.Module, data: TrainData, step: Step, epoch: int) -> None:
    """``cfg.precise_bn`` samples of ``epoch``'s training batches through ``model`` in training mode
    (every rank alike, so SyncBatchNorm layers meet); the global RNG streams are restored after."""
    cfg = step.cfg

    def prepare(batch: dict[str, Any]) -> torch.Tensor:
        batch = to_device(batch, step.device)
        return (step.preprocess(batch) if step.preprocess is not None else batch)[INPUTS_KEY]

    t0 = time.perf_counter()
    rng = capture_rng_state()
    try:
        with step.autocast():
            batches = precise_bn_batches(data, cfg.precise_bn, cfg.batch_size_per_device, epoch, cfg.seed, prepare)
            layers = recompute_bn_stats(model, batches)
    finally:
        restore_rng_state(rng)
    if is_main():
        _log.info(
            "PreciseBN: %d BatchNorm layers recomputed over %d training samples in %s",
            layers,
            min(cfg.precise_bn, data.num_samples),
            format_duration(time.perf_counter() - t0),
        )


def _check_resume(ckpt: dict[str, Any], cfg: TrainConfig, steps_per_epoch: int, path: Path) -> None:
    saved, now = ckpt["config"], dataclasses.asdict(cfg)
    changed = sorted(k for k in now if k not in _RUNTIME_SETTINGS and k in saved and _plain(saved[k]) != _plain(now[k]))
    if changed:
        warnings.warn(
            f"resuming {path} with changed settings {changed}: the result will differ from an uninterrupted run",
            stacklevel=3,
        )
    if ckpt["global_step"] != ckpt["epoch"] * steps_per_epoch:
        warnings.warn(
            f"{path} ended at step {ckpt['global_step']} after {ckpt['epoch']} epochs, but an epoch is now "
            f"{steps_per_epoch} steps: the training set or global batch size changed",
            stacklevel=3,
        )


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value


def fit(
    model: nn.Module,
    loss_fn: LossFn,
    data: TrainData,
    cfg: TrainConfig,
    *,
    validate: ValidateFn | None = None,
    metric_name: str = "AP",
    higher_is_better: bool = True,
    logger: TrainLogger | None = None,
    resume: str | Path | None = None,
    device: torch.device | str | None = None,
    preprocess: PreprocessFn | None = None,
) -> FitResult:
    """Train ``model`` in place for ``cfg.epochs`` epochs (continuing from ``resume``, a ``latest.pt``).

    Checkpoints go to ``cfg.checkpoint_dir``: ``latest.pt`` after every epoch, ``best.pt`` when
    ``metrics[metric_name]`` improves (higher is better unless ``higher_is_better=False``).
    Resuming restores weights, optimizer, scheduler, EMA, grad scaler, RNG states and counters,
    and continues at the start of the next epoch: the final weights equal those of an
    uninterrupted run (bit-for-bit on CPU with ``cfg.deterministic``), also when the number of
    processes changed in between (then equal up to float rounding).

    ``preprocess`` runs on every micro-batch after it is moved to ``device`` and before the
    forward (MMPose's data preprocessor): e.g. uint8 images -> normalised float32, so the
    data workers and the host-to-device copy move a quarter of the bytes.

    ``model`` is modified in place: moved to ``device``, ``cfg.freeze`` applied, and with
    ``cfg.sync_bn`` in a multi-GPU run its BatchNorm layers become SyncBatchNorm (same state-dict keys).
    """
    info = init_distributed()
    device = torch.device(device) if device is not None else info.device
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    problems = check_train_config(dataclasses.replace(cfg, nproc=info.world_size))
    if problems:
        raise ValueError("invalid training configuration:\n  - " + "\n  - ".join(problems))
    autocast = autocast_context(cfg.amp, device)
    seed_everything(cfg.seed, cfg.deterministic)

    sampler = GlobalBatchSampler(
        data.num_samples, cfg.global_batch_size, cfg.batch_size_per_device, info.world_size, info.rank, cfg.seed
    )
    total_steps = cfg.epochs * sampler.steps_per_epoch
    model.to(device)
    freeze_modules(model, cfg.freeze, cfg.freeze_bn)
    optimizer = build_optimizer(model, cfg)
    parts = Parts(
        model=model,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, total_steps, cfg),
        scaler=torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16"),
        ema=ModelEMA(model, cfg.ema_momentum, cfg.ema_gamma, cfg.ema_update_buffers) if cfg.ema else None,
    )
    progress = Counters()
    if resume is not None:
        ckpt = load_checkpoint(
            resume, map_location="cpu"
        )  # RNG states must stay on the CPU; load_state_dict moves the rest
        _check_resume(ckpt, cfg, sampler.steps_per_epoch, Path(resume))
        progress = parts.load_state_dict(ckpt)
        del ckpt

    step = Step(
        cfg=cfg,
        device=device,
        train_model=wrap_ddp(model, device, cfg.sync_bn),
        loss_fn=loss_fn,
        autocast=autocast,
        accum_steps=sampler.accum_steps,
        preprocess=preprocess,
    )
    loader = torch.utils.data.DataLoader(
        BatchDataset(data),
        batch_size=None,
        sampler=BatchKeys(sampler),
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=cfg.num_workers > 0,
        generator=torch.Generator().manual_seed(cfg.seed),  # keeps the global RNG stream untouched
    )
    ckpt_dir = Path(cfg.checkpoint_dir)
    logger = logger if info.is_main else None  # only rank 0 logs
    if logger is not None:
        logger.log_params(dataclasses.asdict(cfg))
    # a bar on a terminal, else a line every $POSECORE_PROGRESS_S seconds (default 30) in the log
    bar = Progress(
        "train", total=total_steps, unit="step", initial=progress.global_step, enabled=info.is_main and cfg.progress
    )
    with bar:  # closes the bar; logs the final line unless training failed
        for epoch in range(progress.epoch, cfg.epochs):
            window = LossWindow()  # log windows never span epochs, so logs repeat exactly after a resume
            sampler.set_epoch(epoch)
            bar.set_prefix(f"epoch {epoch + 1}/{cfg.epochs}")
            step.train_model.train()
            t0 = time.perf_counter()
            for mb, batch in zip(sampler, loader, strict=True):
                window.add(forward_backward(step, parts.scaler, batch, sync=mb.is_last))
                if not mb.is_last:
                    continue
                lr, grad_norm = apply_gradients(step, parts)
                progress.global_step += 1
                if progress.global_step % cfg.log_interval == 0:
                    metrics = {f"train/{k}": v for k, v in window.pop_mean().items()} | {"train/lr": lr}
                    if grad_norm is not None:
                        metrics["train/grad_norm"] = grad_norm
                    _report_step(metrics, progress, cfg, logger, bar)
                bar.update(1)  # after the report: a progress line shows this step's loss
            progress.epoch = epoch + 1
            epoch_s = time.perf_counter() - t0
            if info.is_main:
                took = format_duration(epoch_s)
                status = "".join(f", {k}={v:.4g}" for k, v in bar.status.items())
                _log.info(
                    "epoch %d/%d done in %s (step %d%s)", progress.epoch, cfg.epochs, took, progress.global_step, status
                )

            improved = False
            due = progress.epoch % cfg.val_interval == 0 or progress.epoch == cfg.epochs
            if validate is not None and due:
                eval_model = parts.ema.module if parts.ema is not None else model
                if cfg.precise_bn:
                    _precise_bn(eval_model, data, step, progress.epoch - 1)
                metrics = _validate(validate, eval_model, progress.epoch, info)
                if metric_name not in metrics:
                    raise KeyError(
                        f"validate returned {sorted(metrics)}; metric_name {metric_name!r} is not among them"
                    )
                value = metrics[metric_name]
                improved = is_improvement(value, progress.best_metric, higher_is_better)
                if improved:
                    progress.best_metric, progress.best_epoch = value, progress.epoch
                progress.val_history.append({"epoch": progress.epoch, **metrics})
                if logger is not None:
                    logger.log_metrics({f"val/{k}": v for k, v in metrics.items()}, step=progress.global_step)
                _log.info("epoch %d validation: %s", progress.epoch, metrics)
            if logger is not None:
                logger.log_metrics({"epoch": float(progress.epoch), "time/epoch_s": epoch_s}, step=progress.global_step)
            if info.is_main:
                state = parts.state_dict(progress, cfg, metric_name)
                if improved:  # best first: a crash before latest.pt is rewritten redoes this epoch
                    save_checkpoint(ckpt_dir / BEST, state)
                save_checkpoint(ckpt_dir / LATEST, state)
                del state
            barrier()
    barrier()
    return FitResult(
        epochs=progress.epoch,
        global_step=progress.global_step,
        best_metric=progress.best_metric,
        best_epoch=progress.best_epoch,
        val_history=progress.val_history,
        latest=ckpt_dir / LATEST,
        best=ckpt_dir / BEST if progress.best_epoch is not None else None,
    )


def _report_step(
    metrics: dict[str, float], progress: Counters, cfg: TrainConfig, logger: TrainLogger | None, bar: Progress
) -> None:
    """Rank 0 logs (``logger`` None elsewhere); every rank checks the (all-reduced) loss is finite."""
    loss, lr = metrics["train/loss"], metrics["train/lr"]
    if not math.isfinite(loss) and cfg.amp != "fp16":
        raise FloatingPointError(
            f"training loss is {loss} at step {progress.global_step} (epoch {progress.epoch + 1}); "
            "lower train.lr or set train.grad_clip"
        )
    if logger is not None:
        logger.log_metrics(metrics, step=progress.global_step)
    if is_main():  # every log_interval steps: DEBUG; the progress line (INFO) carries loss and lr
        _log.debug("step %d epoch %d loss %.5g lr %.3g", progress.global_step, progress.epoch + 1, loss, lr)
    bar.set_status(loss=loss, lr=lr)
