"""A tiny trained model exported to ONNX (TorchScript exporter, about 1 s), shared by the ONNX tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import tiny_model as tiny  # tests/_helpers (put on sys.path by tests/conftest.py)

from posecore.data.cache import CacheSplit, open_cache
from posecore.export.onnx import export_onnx
from posecore.export.trained import TrainedModel, load_trained


@dataclass(frozen=True)
class Exported:
    run: tiny.TinyRun
    trained: TrainedModel
    split: CacheSplit  # the cached val split
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
