"""Registering a lifter's bundle (:mod:`posecore.export.lift_bundle`): the 3D side of :mod:`posecore.registry.bundle`.

:func:`log_lift_bundle` logs into the lifter's training run an ``onnx`` model (the network) and a
``lift`` pyfunc model whose artifact ``artifacts/bundle/`` is the whole bundle folder, registers
``lift`` under ``<register.model_name>-lifting`` (:func:`lift_model_name`: lifters are only ever
compared with lifters) with the alias ``challenger`` and the same version tags as a 2D model
(metric ``MPJPE``, lower is better, the evaluation-data fingerprint, SHA-256 of each file, task
``lifting``), so :func:`posecore.registry.promotion.promote` gates it like any other and
:func:`posecore.registry.pull.pull` downloads it for ``posecore infer --lift DIR``.

The pyfunc model takes one row per 2D track: ``keypoints`` (T x J x [x, y] pixels), optional
``scores`` (T x J), ``image_width`` and ``image_height``; it returns ``joints_3d`` (T x J x
[x, y, z], root-relative camera millimetres) per row. It needs numpy, onnxruntime and pandas.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd

from posecore.registry.bundle import _in_run, _pins, _stage_code, sha256_file, tag_new_version
from posecore.registry.config import RegisterConfig
from posecore.registry.tags import (
    TAG_TASK,
)

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

__all__ = ["BundleLiftModel", "lift_model_name", "log_lift_bundle"]

LIFT_MODEL_NAME = "lift"
_log = logging.getLogger(__name__)


def lift_model_name(base: str) -> str:
    """The registered model lifters go to: ``<base>-lifting``."""
    return f"{base}-lifting"


class BundleLiftModel(mlflow.pyfunc.PythonModel):
    """A lifting bundle as an MLflow pyfunc model (module docstring for the I/O)."""

    def load_context(self, context: Any) -> None:
        from posecore.export.lift_bundle import LiftRuntime

        self.runtime = LiftRuntime(context.artifacts["bundle"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        out = []
        for i, row in enumerate(model_input.to_dict("records")):
            try:
                kp = np.asarray(row["keypoints"], np.float32)
                scores = row.get("scores")
                sc = None if scores is None else np.asarray(scores, np.float32)
                size = (float(row["image_width"]), float(row["image_height"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(
                    f"row {i}: give keypoints (T x J x 2 pixels), image_width, image_height and optionally scores ({exc})"
                ) from exc
            out.append(self.runtime.lift(kp, sc, size).astype(np.float64).tolist())
        return pd.DataFrame({"joints_3d": out})


def lift_signature() -> Any:
    """The registered (pyfunc) lifter's signature: a 2D track per row -> its 3D joints."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema
    from mlflow.types.schema import Array

    track = Array(Array(Array(DataType.double)))
    return ModelSignature(
        Schema(
            [
                ColSpec(track, "keypoints"),
                ColSpec(Array(Array(DataType.double)), "scores", required=False),
                ColSpec(DataType.double, "image_width"),
                ColSpec(DataType.double, "image_height"),
            ]
        ),
        Schema([ColSpec(track, "joints_3d")]),
    )


def log_lift_bundle(
    bundle_dir: str | Path,
    run_id: str,
    cfg: RegisterConfig,
    *,
    metric: str,
    metric_value: float,
    eval_data: str,
    tracking_uri: str,
) -> ModelVersion | None:
    """Log the lifting bundle into ``run_id`` and register it (module docstring); None when ``cfg.register`` is false."""
    import onnx
    from mlflow import MlflowClient

    from posecore.export.lift_bundle import LiftBundleInfo, lift_bundle_files

    bundle = Path(bundle_dir)
    names = lift_bundle_files(bundle)
    info = LiftBundleInfo.read(bundle)
    name = lift_model_name(cfg.model_name)
    hashes = {n: sha256_file(bundle / n) for n in names}
    client = MlflowClient(tracking_uri)
    run = client.get_run(run_id)
    git_commit = run.data.tags.get("git.commit") or str(info.provenance.get("git_commit") or "unknown")
    example = pd.DataFrame(
        {
            "keypoints": [np.full((info.receptive_field, info.num_keypoints, 2), 500.0).tolist()],
            "image_width": [1000.0],
            "image_height": [1000.0],
        }
    )
    with _in_run(tracking_uri, run_id), tempfile.TemporaryDirectory(prefix="posecore-register-") as tmp:
        onnx_info = mlflow.onnx.log_model(
            onnx.load(str(bundle / info.model_file)),
            name="onnx",
            pip_requirements=_pins("onnx", "onnxruntime", "numpy"),
            save_as_external_data=False,
        )
        staged = Path(tmp) / "bundle"
        shutil.copytree(bundle, staged)
        lift_info = mlflow.pyfunc.log_model(
            name=LIFT_MODEL_NAME,
            python_model=BundleLiftModel(),
            artifacts={"bundle": str(staged)},
            code_paths=[str(_stage_code(Path(tmp) / "code"))],
            signature=lift_signature(),
            input_example=example,
            pip_requirements=_pins("mlflow", "onnxruntime", "numpy", "pandas"),
            registered_model_name=name if cfg.register else None,
            metadata={"posecore.io": "keypoints (T x J x 2 px), image_width, image_height -> joints_3d (T x J x 3 mm)"},
        )
    client.set_tag(run_id, TAG_TASK, info.task)
    if not cfg.register:
        return None
    return tag_new_version(
        client, run, name, str(lift_info.registered_model_version), cfg,
        metric=metric, metric_value=metric_value, eval_data=eval_data, task=info.task,
        git_commit=git_commit, onnx_uri=onnx_info.model_uri, hashes=hashes,
    )  # fmt: skip
