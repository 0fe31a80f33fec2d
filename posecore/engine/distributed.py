"""torch.distributed from torchrun's environment, and re-launching a command under torchrun.

A process started by ``torchrun`` finds ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT`` in its environment; :func:`init_distributed` joins the
process group with NCCL when CUDA is available, else gloo (CPU). Without those variables, or
with ``WORLD_SIZE=1``, everything here is a no-op on a single process, so the same code runs
with or without torchrun.

A stage whose ``train.nproc`` is above 1 re-executes itself::

    if cfg.nproc > 1 and not launched_by_torchrun():
        sys.exit(launch(["-m", "stages.train", *sys.argv[1:]], cfg.nproc))
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run and the device it computes on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def init_distributed(timeout: timedelta = timedelta(minutes=30)) -> DistInfo:
    """Join the process group described by torchrun's variables (idempotent); pick this process's device."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=timeout)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def destroy() -> None:
    """Leave the process group, if joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def session(timeout: timedelta = timedelta(minutes=30)) -> Iterator[DistInfo]:
    """``init_distributed`` for the duration of a block, then :func:`destroy` (also on error)."""
    try:
        yield init_distributed(timeout)
    finally:
        destroy()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if _active() else 0


def get_world_size() -> int:
    return dist.get_world_size() if _active() else 1


def is_main() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if not _active():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over all processes (a new tensor; the input is untouched)."""
    out = tensor.detach().clone()
    if _active():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= dist.get_world_size()
    return out


def broadcast_object(obj: T, src: int = 0) -> T:
    """``obj`` as it is on rank ``src``, on every process (picklable objects)."""
    if not _active():
        return obj
    box: list[Any] = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def wrap_ddp(
    model: nn.Module, device: torch.device, sync_bn: bool = False, *, find_unused_parameters: bool = False
) -> nn.Module:
    """``DistributedDataParallel`` around ``model`` (already on ``device``); the model itself when not distributed.

    ``sync_bn`` converts BatchNorm layers to ``SyncBatchNorm`` in place first (they keep the
    same parameter objects, so an optimizer built before stays valid). torch runs SyncBatchNorm
    only on GPUs, so asking for it in a multi-process CPU run is an error.
    """
    if not _active():
        return model
    if sync_bn:
        if device.type != "cuda":
            raise ValueError("train.sync_bn needs CUDA: torch's SyncBatchNorm does not run on CPU; set sync_bn: false")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if device.type == "cuda":
        return DistributedDataParallel(
            model, device_ids=[device.index], output_device=device.index, find_unused_parameters=find_unused_parameters
        )
    return DistributedDataParallel(model, find_unused_parameters=find_unused_parameters)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def torchrun_command(
    argv: Sequence[str],
    nproc: int,
    *,
    nnodes: int = 1,
    node_rank: int = 0,
    master_addr: str | None = None,
    master_port: int | None = None,
) -> list[str]:
    """The command line that runs ``argv`` (``script.py args`` or ``-m module args``) on ``nproc`` processes per node.

    One node without an address uses ``--standalone`` (torchrun picks a free port); otherwise
    a static rendezvous on ``master_addr:master_port`` shared by all ``nnodes`` nodes.
    """
    if nproc < 1 or nnodes < 1 or not 0 <= node_rank < nnodes:
        raise ValueError(f"bad launch geometry: nproc={nproc}, nnodes={nnodes}, node_rank={node_rank}")
    if not argv:
        raise ValueError("nothing to launch: argv is empty")
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    if nnodes == 1 and master_addr is None and master_port is None:
        cmd.append("--standalone")
    else:
        if nnodes > 1 and (master_addr is None or master_port is None):
            raise ValueError("a multi-node launch needs master_addr and master_port (the rank-0 node's address)")
        cmd += [f"--nnodes={nnodes}", f"--node_rank={node_rank}"]
        cmd += [f"--master_addr={master_addr or '127.0.0.1'}", f"--master_port={master_port or 29500}"]
    argv = list(argv)
    if argv[0] == "-m":
        cmd += ["--module", *argv[1:]]
    else:
        cmd += argv
    return cmd


def launch(
    argv: Sequence[str],
    nproc: int,
    *,
    nnodes: int = 1,
    node_rank: int = 0,
    master_addr: str | None = None,
    master_port: int | None = None,
    env: dict[str, str] | None = None,
) -> int:
    """Run ``argv`` under torchrun (see :func:`torchrun_command`) and return its exit code."""
    cmd = torchrun_command(
        argv, nproc, nnodes=nnodes, node_rank=node_rank, master_addr=master_addr, master_port=master_port
    )
    return subprocess.run(cmd, env=env, check=False).returncode
