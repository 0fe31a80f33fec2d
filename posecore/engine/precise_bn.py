"""PreciseBN: BatchNorm running statistics recomputed for the weights about to be validated.

A BatchNorm layer's running mean and variance are a momentum average of batch statistics taken
while the weights were still moving (EfficientNet-Lite's momentum 0.01 spans about the last 100
steps). Mid-training, and for an EMA of the weights whose buffers average the live model's
buffers once more, they lag the weights they are used with; after a warm start they also carry
the source domain's statistics for a while. PreciseBN (Wu & Johnson, "Rethinking 'Batch' in
BatchNorm", 2021; mmpretrain's ``PreciseBNHook``, Detectron2's ``PreciseBN``) replaces them with
the equal-weight average over a fixed set of training batches under the current weights: no
gradients, no weight changes, so the training trajectory is the same with or without it.

:func:`recompute_bn_stats` does it for any model; the trainer calls it before each validation
with ``train.precise_bn`` training samples (:func:`precise_bn_batches` picks them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from posecore.engine.step import TrainData

__all__ = ["precise_bn_batches", "recompute_bn_stats"]


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, batches: Iterable[Tensor]) -> int:
    """Reset and recompute the running statistics of ``model``'s BatchNorm layers over ``batches``.

    ``batches``: model inputs, e.g. (B, 3, H, W) normalised images, as many as the statistics
    should average. Only layers that run in training mode under ``model.train()`` are touched:
    frozen stages and ``freeze_bn`` layers (kept in eval mode by their modules or hooks) keep
    their statistics. Each layer's new mean/var is the mean over batches of the batch mean and
    unbiased batch variance. The model's mode and every layer's momentum are restored, also on
    error. Returns the number of layers recomputed.

    Raises ValueError when ``batches`` is empty (the statistics would be left reset)."""
    touched: dict[_BatchNorm, float | None] = {}

    def reset_on_first_use(module: nn.Module, args: Any) -> None:
        if module.training and module not in touched:
            assert isinstance(module, _BatchNorm)
            touched[module] = module.momentum
            module.reset_running_stats()
            module.momentum = None  # None: a cumulative, equal-weight average

    was_training = model.training
    hooks = [m.register_forward_pre_hook(reset_on_first_use) for m in model.modules() if isinstance(m, _BatchNorm)]
    seen = 0
    try:
        model.train()
        for inputs in batches:
            model(inputs)
            seen += 1
    finally:
        for hook in hooks:
            hook.remove()
        for module, momentum in touched.items():
            module.momentum = momentum
        model.train(was_training)
    if not seen:
        raise ValueError("PreciseBN got no batches: the running statistics would be left reset")
    return len(touched)


def precise_bn_batches(
    data: TrainData,
    num_samples: int,
    batch_size: int,
    epoch: int,
    seed: int,
    prepare: Callable[[dict[str, Any]], Tensor],
) -> Iterator[Tensor]:
    """Model inputs of ``num_samples`` training samples (fewer when the set is smaller), in batches.

    The samples are a permutation drawn from a generator of their own, seeded by (``seed``,
    ``epoch``), so the global RNG streams are untouched, and are built with
    ``data.batch(indices, epoch)`` (the epoch's training augmentation).
    ``prepare`` turns a batch into model inputs (device move, normalisation)."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(data.num_samples, generator=generator)[: max(0, num_samples)].tolist()
    for start in range(0, len(order), batch_size):
        yield prepare(data.batch(order[start : start + batch_size], epoch))
