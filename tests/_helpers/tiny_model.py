"""A tiny "trained" model and everything around it, as the pipeline leaves it after ``train``, in seconds.

``build(root)`` writes under ``root``: a synthetic dataset (6 train / 4 val images, 128x128),
its converted form and target-encoding cache, and ``models/train`` with ``best.pt`` (the format
``posecore.engine.trainer.fit`` writes; EMA weights that differ from the live ones),
``model.json`` and ``meta.yaml``. No real training: a MobileNetV3-small + RTMCC model at 64x64
fitted for a few dozen steps on the val targets, so its outputs are not degenerate.
Loaded with ``importlib`` by the tests that need it (tests are not a package here).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from posecore.config import Params, parse_params
from posecore.data.build import build_cache
from posecore.data.cache import open_cache
from posecore.data.config import EncodeParams
from posecore.datasets.converters import SourceSpec, convert
from posecore.datasets.synthetic import SynthParams, generate
from posecore.engine.checkpoint import BEST, save_checkpoint
from posecore.metainfo import load_meta
from posecore.models.estimator import ModelSpec, PoseEstimator, build_estimator

__all__ = ["TinyRun", "build", "one_thread", "parse_params", "spec", "start_mlflow_run"]

INPUT_SIZE = (64, 64)
MODEL = {"preset": "synthetic-lite0", "input_size": list(INPUT_SIZE), "backbone": {"name": "mobilenetv3_small"}}


@dataclass
class TinyRun:
    root: Path
    raw_params: dict[str, Any]
    live: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor]

    @property
    def params(self) -> Params:
        return parse_params(self.raw_params)

    @property
    def train_dir(self) -> Path:
        return Path(self.raw_params["train"]["checkpoint_dir"])

    def write_params(self, path: Path, **sections: dict[str, Any]) -> Path:
        raw = json.loads(json.dumps(self.raw_params))
        for name, values in sections.items():
            raw.setdefault(name, {}).update(values)
        path.write_text(yaml.safe_dump(raw))
        return path


def spec() -> ModelSpec:
    return ModelSpec.resolve(MODEL["preset"], backbone=MODEL["backbone"], input_size=INPUT_SIZE)


def _fit_a_little(model: PoseEstimator, cache: Path, steps: int) -> None:
    from posecore.evaluation.topdown import normalized_inputs

    split = open_cache(cache)["val"]
    idx = list(range(len(split)))
    inputs = normalized_inputs(split, idx, model.mean, model.std)
    targets = split.targets(idx)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        losses = model.loss(model(inputs), targets)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    model.eval()


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Tiny tensors: extra intra-op threads only contend (20x slower on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build(root: Path, steps: int = 30, seed: int = 0) -> TinyRun:
    with one_thread():
        return _build(root, steps, seed)


def _build(root: Path, steps: int, seed: int) -> TinyRun:
    torch.manual_seed(seed)
    synth, converted, cache = root / "synthetic", root / "converted", root / "cache"
    train_dir = root / "models" / "train"
    synth_params = SynthParams(
        out=str(synth), n_train=6, n_val=4, seed=seed, width=128, height=128, min_people=1, max_people=2, workers=1
    )
    generate(synth_params, synth)
    convert(SourceSpec(source="synthetic", meta="coco", root=str(synth)), converted)
    encode = EncodeParams(out=str(cache), workers=1)
    model_spec = spec()
    build_cache(converted, cache, encode, model_spec.build_codec())

    meta = load_meta(converted / "meta.yaml")
    model = build_estimator(model_spec, meta, pretrained=False)
    live = {k: v.clone() for k, v in model.state_dict().items()}
    _fit_a_little(model, cache, steps)
    ema = {k: v.clone() for k, v in model.state_dict().items()}
    train_dir.mkdir(parents=True)
    save_checkpoint(
        train_dir / BEST,
        {
            "model": live,
            "ema": {"module": ema, "updates": steps},
            "epoch": 1,
            "global_step": steps,
            "best_metric": 0.5,
            "best_epoch": 1,
            "metric_name": "AP",
            "val_history": [],
            "config": {},
        },
    )
    (train_dir / "model.json").write_text(json.dumps({"model": model_spec.to_dict(), "meta": meta.name}))
    shutil.copyfile(converted / "meta.yaml", train_dir / "meta.yaml")
    raw = {
        "synth": {"out": str(synth)},
        "data": {"source": "synthetic", "meta": "coco", "root": str(synth), "out": str(converted)},
        "model": MODEL,
        "encode": {"out": str(cache), "workers": 1},
        "train": {"checkpoint_dir": str(train_dir)},
        "evaluate": {"batch_size": 4},
    }
    return TinyRun(root, raw, live, ema)


def start_mlflow_run(train_dir: Path, store: Path) -> str:
    """A finished MLflow run in a SQLite store under ``store``, its id file in ``train_dir`` (as ``train`` leaves it)."""
    from posecore.experiment import MlflowRun

    store.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{store / 'mlflow.db'}"
    run = MlflowRun(
        uri,
        experiment="test",
        run_id_file=train_dir / "mlflow_run_id",
        artifact_location=(store / "artifacts").as_uri(),
        curves_artifact=None,
    )
    with run:
        pass
    assert run.run_id is not None
    return uri
