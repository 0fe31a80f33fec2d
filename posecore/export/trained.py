"""The trained model as the train stage left it: ``best.pt`` + ``model.json`` + ``meta.yaml`` -> a :class:`PoseEstimator`.

The train stage writes ``model.json`` and ``meta.yaml`` with :func:`write_model_description`; the
evaluate and export stages (and anything else that starts from a training folder) read it back
with :func:`load_trained`.
The deployed weights are the EMA weights when the run kept an EMA (those were validated and
selected ``best.pt``), else the model's (:func:`posecore.engine.checkpoint.inference_state_dict`).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from posecore.engine.checkpoint import BEST, inference_state_dict, load_checkpoint
from posecore.export.bundle import SPEC_FILE, WEIGHTS_FILE
from posecore.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from posecore.metainfo import DatasetMeta, load_meta
from posecore.models.estimator import ModelSpec, PoseEstimator, build_estimator, check_meta_matches

MODEL_JSON = "model.json"
META_YAML = "meta.yaml"
RUN_ID_FILE = "mlflow_run_id"


@dataclass
class TrainedModel:
    """model in eval mode; ``ema``: whether its weights are the EMA's; the checkpoint's bookkeeping."""

    model: PoseEstimator
    spec: ModelSpec
    meta: DatasetMeta
    checkpoint: Path
    ema: bool
    epoch: int | None
    metric_name: str | None
    best_metric: float | None

    @property
    def run_id_file(self) -> Path:
        return self.checkpoint.parent / RUN_ID_FILE

    def check_dataset(self, meta: DatasetMeta, dataset_dir: Path) -> None:
        """Raise ValueError unless the dataset at ``dataset_dir`` (its ``meta``) has the keypoints, in
        order, that the model was trained to predict: scores against other keypoints mean nothing."""
        check_meta_matches(self.model, meta)
        if meta.keypoint_names != self.meta.keypoint_names:
            raise ValueError(
                f"the model was trained on meta {self.meta.name!r} but {dataset_dir} uses {meta.name!r} "
                "with other keypoints; evaluate on the dataset the model was trained for"
            )

    def summary(self) -> dict[str, Any]:
        """JSON-able provenance of the weights."""
        return {
            "checkpoint": self.checkpoint.name,
            "ema": self.ema,
            "epoch": self.epoch,
            "metric_name": self.metric_name,
            "best_metric": self.best_metric,
        }


def model_description(spec: ModelSpec, meta_name: str) -> dict[str, Any]:
    """The contents of ``model.json``: the resolved model and the dataset meta's name."""
    return {"model": spec.to_dict(), "meta": meta_name}


def write_model_description(train_dir: Path, spec: ModelSpec, meta_name: str, meta_file: Path) -> tuple[Path, Path]:
    """Write ``model.json`` (:func:`model_description`) and ``meta.yaml`` (a copy of ``meta_file``)
    into ``train_dir``, so :func:`load_trained` rebuilds the exact model; returns both paths."""
    model_json = atomic_write_json(train_dir / MODEL_JSON, model_description(spec, meta_name), indent=2)
    return model_json, atomic_write_text(train_dir / META_YAML, meta_file.read_text())


def write_bundle_weights(trained: TrainedModel, folder: Path) -> tuple[Path, Path]:
    """Write the PyTorch side of a bundle into ``folder``: ``weights.pt`` (the deployed state dict as
    plain CPU tensors, so it loads with ``weights_only=True``) and ``model.json``
    (:func:`model_description`); returns both paths. See :mod:`posecore.export.bundle`."""
    state = {key: value.detach().cpu().contiguous() for key, value in trained.model.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    weights = atomic_write_bytes(folder / WEIGHTS_FILE, buf.getvalue())
    described = model_description(trained.spec, trained.meta.name)
    return weights, atomic_write_json(folder / SPEC_FILE, described, indent=2)


def load_trained(train_dir: str | Path, device: str | torch.device = "cpu", checkpoint: str = BEST) -> TrainedModel:
    """Rebuild the exact trained model from ``train_dir`` (``train.checkpoint_dir``)."""
    train_dir = Path(train_dir)
    spec_file, meta_file, ckpt_file = train_dir / MODEL_JSON, train_dir / META_YAML, train_dir / checkpoint
    for path in (spec_file, meta_file, ckpt_file):
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: train a model first (`dvc repro train`)")
    described = json.loads(spec_file.read_text())
    spec = ModelSpec.from_dict(described["model"])
    meta = load_meta(meta_file)
    if described.get("meta") not in (None, meta.name):
        raise ValueError(f"{spec_file} names meta {described['meta']!r} but {meta_file} is {meta.name!r}")
    state = load_checkpoint(ckpt_file, map_location="cpu")
    model = build_estimator(spec, meta, pretrained=False)
    weights = inference_state_dict(state)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise ValueError(f"{ckpt_file} does not fit the model described in {spec_file}: {exc}") from exc
    model.to(device).eval()
    best = state.get("best_metric")
    return TrainedModel(
        model=model,
        spec=spec,
        meta=meta,
        checkpoint=ckpt_file,
        ema=bool(state.get("ema")),
        epoch=state.get("best_epoch", state.get("epoch")),
        metric_name=state.get("metric_name"),
        best_metric=None if best is None else float(best),
    )
