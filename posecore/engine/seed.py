"""Seeding, deterministic mode, and the RNG states a checkpoint carries.

Every process of a run uses the same seed: data randomness is keyed by sample index and
epoch (see :mod:`posecore.engine.sampler`), so the global RNGs only drive model-side
randomness (dropout, drop-path), which DDP does not need to differ between ranks. That is
also why rank 0's RNG states are enough to resume every rank.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch


def set_deterministic(enabled: bool = True) -> None:
    """Ask torch for deterministic kernels (an error on ops that have none) and fixed cuDNN algorithms.

    cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG`` before CUDA starts; it is set here unless the
    environment already has it.
    """
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.deterministic = enabled
    if enabled:
        torch.backends.cudnn.benchmark = False


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (CPU and every CUDA device); ``deterministic`` also sets
    :func:`set_deterministic` (it is left untouched when False)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        set_deterministic(True)


def capture_rng_state() -> dict[str, Any]:
    """Every global RNG state, as plain types and tensors (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:  # a different GPU count: keep what matters, each process's own device
            torch.cuda.set_rng_state(cuda_states[min(torch.cuda.current_device(), len(cuda_states) - 1)])
