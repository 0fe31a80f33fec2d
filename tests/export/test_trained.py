"""Loading the trained model from a training folder: the deployed (EMA) weights, and clear errors."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import tiny_model as tiny  # tests/_helpers (put on sys.path by tests/conftest.py)
import torch

from posecore.engine.checkpoint import load_checkpoint, save_checkpoint
from posecore.export.trained import load_trained, write_model_description
from posecore.metainfo import load_meta


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


def test_the_written_description_loads_back(trained, tmp_path: Path) -> None:
    described = json.loads((trained.train_dir / "model.json").read_text())
    train_dir = tmp_path / "train"
    model_json, meta_yaml = write_model_description(
        train_dir, tiny.spec(), described["meta"], trained.train_dir / "meta.yaml"
    )
    assert json.loads(model_json.read_text()) == described
    assert meta_yaml.read_text() == (trained.train_dir / "meta.yaml").read_text()
    shutil.copyfile(trained.train_dir / "best.pt", train_dir / "best.pt")
    assert _same(load_trained(train_dir).model.state_dict(), trained.ema)


def test_a_dataset_with_other_keypoints_is_refused(trained) -> None:
    loaded = load_trained(trained.train_dir)
    coco = loaded.meta
    loaded.check_dataset(coco, Path("data"))
    with pytest.raises(ValueError, match="predicts 17 keypoints but dataset meta 'mpii' has 16"):
        loaded.check_dataset(load_meta("mpii"), Path("data"))
    renamed = dataclasses.replace(
        coco, name="renamed", keypoints=(dataclasses.replace(coco.keypoints[0], name="snout"), *coco.keypoints[1:])
    )
    with pytest.raises(ValueError, match="data uses 'renamed' with other keypoints"):
        loaded.check_dataset(renamed, Path("data"))
