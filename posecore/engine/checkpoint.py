"""Training checkpoints: one ``torch.save`` dict, written atomically.

A checkpoint (see :func:`posecore.engine.trainer.fit`) holds::

    format        int, CHECKPOINT_FORMAT
    model         state_dict of the unwrapped model (no ``module.`` prefix)
    ema           {"module": state_dict, "updates": int} or None
    optimizer, scheduler, scaler   their state_dicts
    rng           posecore.engine.seed.capture_rng_state() of rank 0
    epoch         completed epochs; training resumes at the start of epoch ``epoch``
    global_step   completed optimizer steps
    best_metric, best_epoch, metric_name, val_history
    config        dataclasses.asdict(TrainConfig)

Everything is plain types and tensors, so :func:`load_checkpoint` uses ``weights_only=True``.
The file is serialised in memory and renamed into place by :mod:`posecore.io`, so a crash or
error during a save leaves the previous file intact. ``latest.pt`` is rewritten after every
epoch; ``best.pt`` when the validation metric improves (see :func:`is_improvement`).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import torch

from posecore.io import atomic_write_bytes

CHECKPOINT_FORMAT = 1
LATEST = "latest.pt"
BEST = "best.pt"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` through a temporary file and a rename."""
    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a posecore training checkpoint (format {CHECKPOINT_FORMAT})")
    return state


def inference_state_dict(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights to deploy: the EMA weights when the run kept an EMA (they were validated), else the model's."""
    ema = checkpoint.get("ema")
    return ema["module"] if ema else checkpoint["model"]


def is_improvement(value: float, best: float | None, higher_is_better: bool = True) -> bool:
    """Strictly better than ``best`` (``None`` = nothing yet); NaN never improves."""
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value > best if higher_is_better else value < best
