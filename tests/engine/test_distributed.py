"""torch.distributed helpers on one process, and the torchrun command lines."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from posecore.engine import distributed as D


def test_single_process_helpers_are_no_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    info = D.init_distributed()
    assert (info.rank, info.world_size, info.is_main) == (0, 1, True)
    assert not D.launched_by_torchrun()
    assert D.is_main() and D.get_world_size() == 1
    D.barrier()
    t = torch.tensor([1.0, 3.0])
    out = D.all_reduce_mean(t)
    assert torch.equal(out, t) and out is not t
    assert D.broadcast_object({"a": 1}) == {"a": 1}
    model = nn.Linear(2, 2)
    assert D.wrap_ddp(model, torch.device("cpu"), sync_bn=True) is model
    assert D.unwrap(model) is model


def test_torchrun_command_forms() -> None:
    run = [sys.executable, "-m", "torch.distributed.run"]
    assert D.torchrun_command(["train.py", "--x"], 2) == [*run, "--nproc_per_node=2", "--standalone", "train.py", "--x"]
    assert D.torchrun_command(["-m", "stages.train", "--x"], 4)[-4:] == [
        "--standalone",
        "--module",
        "stages.train",
        "--x",
    ]
    multi = D.torchrun_command(["t.py"], 8, nnodes=2, node_rank=1, master_addr="10.0.0.1", master_port=29400)
    assert multi == [
        *run,
        "--nproc_per_node=8",
        "--nnodes=2",
        "--node_rank=1",
        "--master_addr=10.0.0.1",
        "--master_port=29400",
        "t.py",
    ]
    with pytest.raises(ValueError, match="master_addr"):
        D.torchrun_command(["t.py"], 8, nnodes=2, node_rank=0)
    with pytest.raises(ValueError, match="geometry"):
        D.torchrun_command(["t.py"], 0)
