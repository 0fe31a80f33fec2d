"""Tiny bundles for the inference tests: random-weight models exported here, since no trained one exists.

Each bundle follows the contract in ``posecore/export/__init__.py``: ``model.onnx`` (input
"inputs" (N, 3, h, w), outputs named like the head's outputs, dynamic batch) and
``bundle.json``. A training-checkpoint folder (``best.pt`` + ``model.json`` + ``meta.yaml``)
of the same weights tests the PyTorch path.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from posecore.data.cache import codec_config
from posecore.engine.checkpoint import save_checkpoint
from posecore.export.bundle import BundleInfo, bundle_meta_fields
from posecore.metainfo import DatasetMeta, load_meta, resolve_meta_path
from posecore.models.estimator import ModelSpec, PoseEstimator, build_estimator

INPUT_SIZE = (64, 96)  # (w, h)
# MobileNetV3-Small cut after its stride-8 stage (24 channels): small, and quick to export.
_BACKBONE = {"name": "mobilenetv3_small", "out_indices": [1]}
_DECONV = {"deconv_out_channels": [16]}

# name -> ModelSpec.resolve kwargs; one model per output kind the runtime decodes and flips.
SPECS: dict[str, dict[str, Any]] = {
    "simcc": {"preset": "synthetic-lite0", "backbone": _BACKBONE},
    "msra": {
        "backbone": _BACKBONE,
        "head": {"name": "heatmap", **_DECONV},
        "codec": {"name": "msra_heatmap", "heatmap_size": [16, 24], "sigma": 2.0},
        "shift_heatmap": True,
    },
    "udp": {
        "backbone": _BACKBONE,
        "head": {"name": "heatmap", **_DECONV},
        "codec": {"name": "udp_heatmap", "heatmap_size": [16, 24], "sigma": 2.0},
    },
    "rle": {"backbone": _BACKBONE, "head": {"name": "rle"}, "codec": {"name": "regression"}},
}


@dataclasses.dataclass(frozen=True)
class TinyBundle:
    path: Path
    model: PoseEstimator
    meta: DatasetMeta
    spec: ModelSpec


def bundle_info(model: PoseEstimator, meta: DatasetMeta, outputs: list[str]) -> BundleInfo:
    """bundle.json per the contract, built the way posecore.export builds it."""
    return BundleInfo(
        **bundle_meta_fields(meta),
        input_size=tuple(model.spec.input_size),
        mean=tuple(float(v) for v in model.mean),
        std=tuple(float(v) for v in model.std),
        codec=codec_config(model.codec),
        outputs=tuple(outputs),
        bbox_padding=1.25,
        flip_test=model.spec.flip_test and model.task == "topdown",
        shift_heatmap=model.spec.shift_heatmap,
        provenance={"source": "tests/inference/conftest.py"},
        task=model.task,
    )


def export_onnx(model: PoseEstimator, path: Path) -> list[str]:
    w, h = model.spec.input_size
    x = torch.randn(2, 3, h, w)
    with torch.no_grad():
        keys = list(model(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x,),
            str(path),
            input_names=["inputs"],
            output_names=keys,
            dynamic_axes={"inputs": {0: "batch"}, **{k: {0: "batch"} for k in keys}},
            dynamo=False,
            opset_version=17,
        )
    return keys


def make_bundle(folder: Path, variant: str, meta_name: str = "coco", seed: int = 0) -> TinyBundle:
    folder.mkdir(parents=True, exist_ok=True)
    meta = load_meta(meta_name)
    spec = ModelSpec.resolve(input_size=INPUT_SIZE, **SPECS[variant])
    torch.manual_seed(seed)
    model = build_estimator(spec, meta, pretrained=False).eval()
    outputs = export_onnx(model, folder / "model.onnx")
    bundle_info(model, meta, outputs).write(folder)
    return TinyBundle(folder, model, meta, spec)


def make_checkpoint(folder: Path, bundle: TinyBundle) -> Path:
    """The train stage's output folder for the bundle's weights."""
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(folder / "best.pt", {"model": bundle.model.state_dict(), "ema": None, "epoch": 1})
    (folder / "model.json").write_text(json.dumps({"model": bundle.spec.to_dict(), "meta": bundle.meta.name}))
    (folder / "meta.yaml").write_text(resolve_meta_path(bundle.meta.name).read_text())
    return folder


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TinyBundle]:
    """One COCO bundle per variant in SPECS (built once per session)."""
    root = tmp_path_factory.mktemp("bundles")
    return {name: make_bundle(root / name, name) for name in SPECS}


@pytest.fixture(scope="session")
def coco_bundle(bundles: dict[str, TinyBundle]) -> TinyBundle:
    return bundles["simcc"]


@pytest.fixture(scope="session")
def mouse_bundle(tmp_path_factory: pytest.TempPathFactory) -> TinyBundle:
    return make_bundle(tmp_path_factory.mktemp("mouse") / "bundle", "simcc", meta_name="mirror_mouse")


@pytest.fixture(scope="session")
def onestage_bundle(tmp_path_factory: pytest.TempPathFactory) -> TinyBundle:
    """A one-stage COCO bundle: the yoloxpose-lite0 preset at 64x64 (tests/_helpers/tiny_onestage.py)."""
    import tiny_onestage

    folder = tmp_path_factory.mktemp("onestage") / "bundle"
    folder.mkdir()
    with torch.no_grad():
        model = tiny_onestage.model()
    outputs = export_onnx(model, folder / "model.onnx")
    assert outputs == list(model.codec.output_keys)
    meta = load_meta("coco")
    bundle_info(model, meta, outputs).write(folder)
    return TinyBundle(folder, model, meta, model.spec)


@pytest.fixture(scope="session")
def onestage_checkpoint(tmp_path_factory: pytest.TempPathFactory, onestage_bundle: TinyBundle) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("train_onestage"), onestage_bundle)


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory: pytest.TempPathFactory, coco_bundle: TinyBundle) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("train"), coco_bundle)
