"""Loading the trained model from a training folder: the deployed (EMA) weights, and clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import tiny_model as tiny  # tests/_helpers (put on sys.path by tests/conftest.py)
import torch

from posecore.engine.checkpoint import load_checkpoint, save_checkpoint
from posecore.export.trained import load_trained


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    with tiny.one_thread():
        return tiny.build(tmp_path_factory.mktemp("trained"), steps=2)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_ema_weights_are_deployed(trained) -> None:
    loaded = load_trained(trained.train_dir)
    state = loaded.model.state_dict()
    assert loaded.ema and _same(state, trained.ema) and not _same(state, trained.live)
    assert not loaded.model.training
    assert loaded.summary() == {
        "checkpoint": "best.pt",
        "ema": True,
        "epoch": 1,
        "metric_name": "AP",
        "best_metric": 0.5,
    }


def test_without_ema_the_model_weights_are_deployed(trained, tmp_path: Path) -> None:
    train_dir = _copy(trained.train_dir, tmp_path / "train")
    state = load_checkpoint(train_dir / "best.pt")
    state["ema"] = None
    save_checkpoint(train_dir / "best.pt", {k: v for k, v in state.items() if k != "format"})
    loaded = load_trained(train_dir)
    assert not loaded.ema and _same(loaded.model.state_dict(), trained.live)


@pytest.mark.parametrize("missing", ["best.pt", "model.json", "meta.yaml"])
def test_a_missing_file_says_to_train_first(trained, tmp_path: Path, missing: str) -> None:
    train_dir = _copy(trained.train_dir, tmp_path / "train")
    (train_dir / missing).unlink()
    with pytest.raises(FileNotFoundError, match=rf"{missing} does not exist: train a model first"):
        load_trained(train_dir)


def test_weights_that_do_not_fit_the_description_are_refused(trained, tmp_path: Path) -> None:
    train_dir = _copy(trained.train_dir, tmp_path / "train")
    described = json.loads((train_dir / "model.json").read_text())
    described["model"]["head"]["hidden_dims"] = 64
    (train_dir / "model.json").write_text(json.dumps(described))
    with pytest.raises(ValueError, match="does not fit the model described in"):
        load_trained(train_dir)
