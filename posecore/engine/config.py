"""``TrainConfig``: every setting of the training engine, one frozen dataclass.

The defaults reproduce MMPose's top-down heatmap recipe (``td-hm_hrnet-w32_8xb32-210e``:
Adam 5e-4, linear warm-up over 500 iterations from 0.001, step decay x0.1 at epochs 170
and 200, global batch 8 x 32); RTMPose-style runs set ``optimizer: adamw``,
``schedule: cosine``, ``min_lr_ratio: 0.05`` and ``ema: true``.

The lead's ``params.yaml`` has a ``train:`` section parsed into this class by
:mod:`posecore.config` (``range`` metadata bounds numbers, ``Literal`` bounds strings);
:func:`check_train_config` adds the checks that involve several fields.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

Optimizer = Literal["adamw", "adam", "sgd"]
Schedule = Literal["cosine", "step", "constant"]
Amp = Literal["off", "bf16", "fp16"]


@dataclass(frozen=True)
class TrainConfig:
    """Training settings. Batch sizes count samples; steps count optimizer steps.

    ``global_batch_size`` samples make one optimizer step whatever the number of processes:
    each of ``world_size`` processes runs ``global_batch_size / (batch_size_per_device *
    world_size)`` micro-batches of ``batch_size_per_device`` and accumulates their gradients.

    ``amp``: ``"fp16"`` autocasts to float16 with a gradient scaler and needs CUDA;
    ``"bf16"`` autocasts to bfloat16 on CUDA *and* on CPU (no scaler needed);
    ``"off"`` trains in float32. Asking for ``"fp16"`` without a GPU is an error, not a
    silent fallback, so a run never differs from what params.yaml says.

    ``freeze`` lists module-name prefixes (``"backbone"``, ``"backbone.stage1"``) whose
    parameters are not trained and whose modules stay in eval mode; ``freeze_bn`` keeps
    every BatchNorm layer in eval mode (running statistics frozen, affine weights still
    trained unless under a frozen prefix), like MMPose's ``norm_eval``.

    ``lr_mult`` maps module-name prefixes to a factor on ``lr`` for their parameters, like
    MMPose's ``paramwise_cfg=dict(custom_keys={'head': dict(lr_mult=10)})``: ``{head: 10}``
    trains a fine-tuned model's head ten times faster than its backbone. The longest matching
    prefix wins; the schedule scales every group alike.

    EMA follows mmdet/MMPose ``ExpMomentumEMA``: the weight of the live model at update
    ``n`` is ``(1 - ema_momentum) * exp(-(1 + n) / ema_gamma) + ema_momentum``; RTMPose
    uses momentum 0.0002, gamma 2000, ``update_buffers=True``.

    ``precise_bn`` > 0 recomputes the BatchNorm statistics of the weights about to be validated
    (the EMA's when ``ema``) over that many training samples before each validation, so the
    validated and checkpointed model uses statistics of its own weights
    (:mod:`posecore.engine.precise_bn`; mmpretrain's ``PreciseBNHook(num_samples=...)``).
    """

    epochs: int = field(default=210, metadata={"range": (1, 100_000)})
    global_batch_size: int = field(default=256, metadata={"range": (1, 1_000_000)})
    batch_size_per_device: int = field(default=32, metadata={"range": (1, 1_000_000)})
    num_workers: int = field(default=0, metadata={"range": (0, 256)})

    optimizer: Optimizer = "adam"
    lr: float = field(default=5e-4, metadata={"range": (0.0, 100.0)})
    weight_decay: float = field(default=0.0, metadata={"range": (0.0, 10.0)})
    momentum: float = field(default=0.9, metadata={"range": (0.0, 1.0)})
    no_decay_norm_bias: bool = True

    warmup_iters: int = field(default=500, metadata={"range": (0, 10_000_000)})
    warmup_ratio: float = field(default=0.001, metadata={"range": (0.0, 1.0)})
    schedule: Schedule = "step"
    milestones: tuple[int, ...] = (170, 200)
    gamma: float = field(default=0.1, metadata={"range": (0.0, 1.0)})
    min_lr_ratio: float = field(default=0.0, metadata={"range": (0.0, 1.0)})

    grad_clip: float = field(default=0.0, metadata={"range": (0.0, 1e9)})
    amp: Amp = "off"

    ema: bool = False
    ema_momentum: float = field(default=0.0002, metadata={"range": (1e-12, 0.999999)})
    ema_gamma: float = field(default=2000.0, metadata={"range": (1e-6, 1e12)})
    ema_update_buffers: bool = True
    precise_bn: int = field(default=0, metadata={"range": (0, 100_000_000)})

    freeze: tuple[str, ...] = ()
    freeze_bn: bool = False
    lr_mult: dict[str, float] = field(default_factory=dict)

    seed: int = 0
    deterministic: bool = False
    val_interval: int = field(default=10, metadata={"range": (1, 100_000)})
    checkpoint_dir: str = "checkpoints"
    sync_bn: bool = False
    nproc: int = field(default=1, metadata={"range": (1, 1024)})
    log_interval: int = field(default=50, metadata={"range": (1, 10_000_000)})
    progress: bool = True


def check_train_config(cfg: TrainConfig, section: str = "train") -> list[str]:
    """Problems that involve several fields, each naming the dotted keys and a fix."""
    errors: list[str] = []
    per_step = cfg.batch_size_per_device * cfg.nproc
    if cfg.global_batch_size % per_step:
        lo = max(per_step, cfg.global_batch_size // per_step * per_step)
        errors.append(
            f"{section}.global_batch_size ({cfg.global_batch_size}) must be a multiple of "
            f"{section}.batch_size_per_device x {section}.nproc ({cfg.batch_size_per_device} x {cfg.nproc} = "
            f"{per_step}); use e.g. global_batch_size {lo} or {lo + per_step}"
        )
    if list(cfg.milestones) != sorted(set(cfg.milestones)) or any(m < 0 for m in cfg.milestones):
        errors.append(f"{section}.milestones {list(cfg.milestones)} must be increasing, distinct epochs >= 0")
    if any(not p or p.startswith(".") or p.endswith(".") for p in cfg.freeze):
        errors.append(f"{section}.freeze {list(cfg.freeze)}: each entry is a dotted module name like 'backbone.stem'")
    if not math.isfinite(cfg.lr) or cfg.lr <= 0:
        errors.append(f"{section}.lr ({cfg.lr}) must be > 0")
    for prefix, mult in cfg.lr_mult.items():
        if not prefix or prefix.startswith(".") or prefix.endswith("."):
            errors.append(
                f"{section}.lr_mult key {prefix!r}: each key is a dotted module name like 'head' or 'backbone'"
            )
        if isinstance(mult, bool) or not isinstance(mult, int | float) or not math.isfinite(mult) or mult <= 0:
            errors.append(f"{section}.lr_mult.{prefix} ({mult!r}) must be a number > 0 (a factor on {section}.lr)")
    return errors
