"""Checkpoints: round trip, atomic replacement, best-metric comparison."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import posecore.io
from posecore.engine.checkpoint import inference_state_dict, is_improvement, load_checkpoint, save_checkpoint


def _state(value: float) -> dict:
    return {"model": {"w": torch.full((4,), value)}, "ema": None, "epoch": int(value), "config": {"lr": 0.1}}


def test_round_trip(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "ck" / "latest.pt", _state(3.0))
    state = load_checkpoint(path)
    assert state["epoch"] == 3 and torch.equal(state["model"]["w"], torch.full((4,), 3.0))
    assert inference_state_dict(state) is state["model"]
    with_ema = {**state, "ema": {"module": {"w": torch.zeros(4)}, "updates": 7}}
    assert torch.equal(inference_state_dict(with_ema)["w"], torch.zeros(4))


def test_failure_while_writing_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "latest.pt"
    save_checkpoint(path, _state(1.0))
    before = path.read_bytes()

    def broken_fsync(fd: int) -> None:  # the bytes are in the temporary file, the disk "fails"
        raise OSError("disk full")

    monkeypatch.setattr(posecore.io.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, _state(2.0))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt"]  # no temporary file left behind


def test_failure_while_serialising_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "latest.pt"
    save_checkpoint(path, _state(1.0))

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        save_checkpoint(path, {**_state(2.0), "bad": Unpicklable()})
    assert load_checkpoint(path)["epoch"] == 1


def test_load_rejects_foreign_files(tmp_path: Path) -> None:
    torch.save({"w": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a posecore training checkpoint"):
        load_checkpoint(tmp_path / "x.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_is_improvement() -> None:
    assert is_improvement(0.1, None)
    assert is_improvement(0.5, 0.4) and not is_improvement(0.4, 0.4)
    assert is_improvement(0.3, 0.4, higher_is_better=False) and not is_improvement(0.5, 0.4, higher_is_better=False)
    assert not is_improvement(math.nan, None)
