"""A tiny trained model exported to ONNX (TorchScript exporter, about 1 s), shared by the ONNX tests;
and a tiny one-stage one (``onestage_exported``, a few seconds)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import tiny_model as tiny  # tests/_helpers (put on sys.path by tests/conftest.py)

from posecore.data.cache import CacheSplit, open_cache
from posecore.data.images import ImageSplit
from posecore.export.onnx import export_onnx
from posecore.export.trained import TrainedModel, load_trained


@dataclass(frozen=True)
class Exported:
    run: tiny.TinyRun
    trained: TrainedModel
    split: CacheSplit | ImageSplit  # the cached val split (whole images for a one-stage model)
    path: Path  # model.onnx


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    root = tmp_path_factory.mktemp("onnx")
    with tiny.one_thread():
        run = tiny.build(root)
        trained = load_trained(run.train_dir)
        split = open_cache(Path(run.params.encode.out))["val"]
        path = export_onnx(trained.model, root / "model.onnx", dynamo=False).path
    return Exported(run, trained, split, path)


@pytest.fixture(scope="module")
def onestage_exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """The same for a one-stage model (yoloxpose-lite0 at 64x64) on its whole-image cache."""
    import tiny_onestage

    root = tmp_path_factory.mktemp("onnx_onestage")
    with tiny.one_thread():
        run = tiny_onestage.build(root)
        trained = load_trained(run.train_dir)
        split = open_cache(Path(run.params.encode.out))["val"]
        path = export_onnx(trained.model, root / "model.onnx", dynamo=False).path
    return Exported(run, trained, split, path)
