"""Stage ``train``: the synthetic-pretraining recipe, train on the embedded synthetic people and then fine-tune
on your own data with another skeleton (COCO-17 -> LSP-14), through the stage as ``dvc repro`` runs it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import scipy.io
import tiny_model as tiny  # tests/_helpers (put on sys.path by tests/conftest.py)
import torch

from posecore.data.build import build_cache
from posecore.data.config import EncodeParams
from posecore.datasets.converters import SourceSpec, convert
from posecore.engine.checkpoint import load_checkpoint
from posecore.metainfo import load_meta
from posecore.models.estimator import build_estimator
from stages.train import run

N_LSP = 12


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with tiny.one_thread():
        yield


def _mini_lspet(shared_data: Path, out: Path) -> Path:
    """The first ``N_LSP`` people of ../shared/data/lspet, as its own LSP-Extended folder."""
    src = shared_data / "lspet"
    (out / "images").mkdir(parents=True)
    joints = scipy.io.loadmat(str(src / "joints.mat"))["joints"]
    scipy.io.savemat(str(out / "joints.mat"), {"joints": joints[:, :, :N_LSP]})
    for n in range(1, N_LSP + 1):
        shutil.copy(src / "images" / f"im{n:05d}.jpg", out / "images" / f"im{n:05d}.jpg")
    return out


def test_synthetic_pretraining_then_fine_tuning_on_another_skeleton(shared_data: Path, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    pretrained = tiny.build(tmp_path / "synthetic")  # the synthetic run's training folder (COCO-17)
    data, cache = tmp_path / "lsp", tmp_path / "lsp_cache"
    convert(SourceSpec(source="lsp", meta="lsp", root=str(_mini_lspet(shared_data, tmp_path / "lspet"))), data)
    build_cache(data, cache, EncodeParams(out=str(cache), workers=1), tiny.spec().build_codec())
    out = tmp_path / "models" / "lsp"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params = tiny.parse_params(
        {
            **pretrained.raw_params,
            "data": {"source": "lsp", "meta": "lsp", "root": str(tmp_path / "lspet"), "out": str(data)},
            "encode": {"out": str(cache), "workers": 1},
            "model": {**tiny.MODEL, "init": {"from": str(pretrained.train_dir)}},
            "train": {
                "checkpoint_dir": str(out),
                "epochs": 1,
                "global_batch_size": 4,
                "batch_size_per_device": 4,
                "num_workers": 0,
                "warmup_iters": 1,
                "val_interval": 1,
                "progress": False,
            },
            "evaluate": {"metric": "PCK", "batch_size": 4},
            "tracking": {"tracking_uri": uri, "system_metrics": False},
        }
    )
    outputs = run(params)

    lsp, coco = load_meta(data / "meta.yaml"), load_meta("coco")
    shared = [name for name in lsp.keypoint_names if name in coco.keypoint_names]
    assert len(shared) == 12 and set(lsp.keypoint_names) - set(shared) == {"head_top", "neck"}
    run_data = MlflowClient(uri).get_run(outputs.run_id).data
    assert run_data.metrics["init/fresh_keypoints"] == 2, "head_top and neck have no COCO counterpart"
    assert run_data.metrics["init/transferred"] > 0 and run_data.metrics["init/loaded"] > 0
    assert run_data.metrics["init/mismatched"] == 0 and run_data.tags["posecore.init.source"]
    assert str(pretrained.train_dir) in run_data.tags["posecore.init.source"]

    # The fine-tuning started from the synthetic backbone: one short epoch later it is still far
    # closer to it than a freshly initialised backbone is.
    tuned = load_checkpoint(out / "best.pt")["model"]
    fresh = build_estimator(tiny.spec(), lsp, pretrained=False).state_dict()
    keys = [k for k, v in pretrained.ema.items() if k.startswith("backbone.") and v.is_floating_point()]

    def distance(state: dict[str, torch.Tensor]) -> float:
        return sum(float((state[k].float() - pretrained.ema[k].float()).norm()) for k in keys)

    assert keys and distance(tuned) < 0.2 * distance(fresh)
    assert json.loads((out / "model.json").read_text())["meta"] == lsp.name


@pytest.mark.parametrize(
    ("source", "size", "hinted"), [("lsp", 2000, True), ("lsp", 50_000, False), ("synthetic", 10, False)]
)
def test_a_small_real_dataset_started_cold_gets_the_recipe_hint(
    caplog: pytest.LogCaptureFixture, source: str, size: int, hinted: bool
) -> None:
    from stages.train import _warm_start

    params = tiny.parse_params({"data": {"source": source, "meta": "lsp" if source == "lsp" else "coco"}})
    with caplog.at_level("INFO", logger="stages.train"):
        assert _warm_start(params, None, load_meta("coco"), None, size) is None  # type: ignore[arg-type]
    assert ("model.init.from=posecore-pose@champion" in caplog.text) is hinted
