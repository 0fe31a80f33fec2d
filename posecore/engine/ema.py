"""Exponential moving average of a model's weights, with mmdet/MMPose's exponential momentum.

Facts taken from ``mmpose/engine/hooks/ema_hook.py`` (``ExpMomentumEMA``) and mmengine's
``BaseAveragedModel.update_parameters``:

- the first update copies the model; update ``n >= 1`` (``n`` = number of earlier updates) does
  ``avg = (1 - w) * avg + w * live`` with ``w = (1 - momentum) * exp(-(1 + n) / gamma) + momentum``,
  so the average follows the live model closely early on and settles to ``momentum``;
- ``update_buffers=True`` (RTMPose's setting) averages floating-point buffers too (BatchNorm
  running statistics); with ``False`` buffers are copied from the live model.

One deliberate difference: integer buffers (``num_batches_tracked``) are copied at every update,
where mmengine leaves them at their first value.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


def ema_weight(updates: int, momentum: float = 0.0002, gamma: float = 2000.0) -> float:
    """Weight of the live model in update number ``updates`` (0-based; update 0 is a copy)."""
    return (1.0 - momentum) * math.exp(-(1.0 + updates) / gamma) + momentum


class ModelEMA:
    """An averaged copy of a model: ``module`` (eval mode, no gradients) and the update count ``updates``.

    Call :meth:`update` with the *unwrapped* live model after every optimizer step.
    """

    def __init__(
        self, model: nn.Module, momentum: float = 0.0002, gamma: float = 2000.0, update_buffers: bool = True
    ) -> None:
        if not 0.0 < momentum < 1.0:
            raise ValueError(f"EMA momentum must be in (0, 1), got {momentum}")
        if gamma <= 0:
            raise ValueError(f"EMA gamma must be > 0, got {gamma}")
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.momentum = momentum
        self.gamma = gamma
        self.updates = 0
        names = self.module.state_dict() if update_buffers else dict(self.module.named_parameters())
        self._averaged = frozenset(names)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        live = model.state_dict()
        w = ema_weight(self.updates, self.momentum, self.gamma)
        for name, avg in self.module.state_dict().items():
            src = live[name].detach().to(avg.device)
            if self.updates == 0 or name not in self._averaged or not avg.dtype.is_floating_point:
                avg.copy_(src)
            else:
                avg.mul_(1.0 - w).add_(src, alpha=w)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])

    @contextlib.contextmanager
    def swapped_into(self, model: nn.Module) -> Iterator[nn.Module]:
        """Temporarily give ``model`` the averaged weights (and buffers); restored on exit, even on error.

        For code that holds the live model (a hook, a visualiser); otherwise use ``self.module``.
        """
        live = model.state_dict()
        saved = {k: v.detach().clone() for k, v in live.items()}
        try:
            model.load_state_dict(self.module.state_dict())
            yield model
        finally:
            model.load_state_dict(saved)
