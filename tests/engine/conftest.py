"""Engine test fixtures: the toy run of ``_ddp_script.py`` (imported, or run as a subprocess),
and isolation of the process-wide torch state that ``fit`` sets."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch

from posecore.engine.distributed import torchrun_command
from posecore.engine.seed import capture_rng_state, restore_rng_state

SCRIPT = Path(__file__).with_name("_ddp_script.py")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def toy() -> ModuleType:
    """``_ddp_script``: ``ToyData``, ``make_model``, ``loss_fn``, ``validate``, ``make_cfg``."""
    spec = importlib.util.spec_from_file_location("_engine_toy", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _isolate_torch_globals():
    """``fit`` seeds the global RNGs and may switch deterministic mode: undo both after each test."""
    rng = capture_rng_state()
    deterministic = torch.are_deterministic_algorithms_enabled()
    yield
    restore_rng_state(rng)
    if torch.are_deterministic_algorithms_enabled() != deterministic:  # the call costs seconds the first time
        torch.use_deterministic_algorithms(deterministic)


def script_env(**extra: str) -> dict[str, str]:
    """A clean environment for a toy-run subprocess: one thread, no inherited torchrun variables."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}
    }
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), **extra)
    return env


def toy_command(args: list[str], torchrun_nproc: int = 0) -> list[str]:
    """``_ddp_script.py args`` as a plain process, or under ``torchrun --standalone`` with ``torchrun_nproc`` workers."""
    argv = [str(SCRIPT), *args]
    return torchrun_command(argv, torchrun_nproc) if torchrun_nproc else [sys.executable, *argv]


@pytest.fixture(scope="session")
def run_toy() -> Callable[..., subprocess.Popen]:
    """Start the toy run in a subprocess (``Popen``, output captured); the caller waits."""

    def start(args: list[str], *, torchrun_nproc: int = 0, **env: str) -> subprocess.Popen:
        return subprocess.Popen(
            toy_command(args, torchrun_nproc),
            cwd=REPO,
            env=script_env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    return start
