"""Logging an exported bundle into the training run and registering it.

**What is logged and what is registered.** :func:`log_bundle` logs two models into the run:

- ``onnx`` (``mlflow.onnx`` flavour): the network alone, signature ``inputs`` float32
  (-1, 3, h, w) -> the raw outputs (``simcc_x``/``simcc_y``, ``heatmaps``, ...), for consumers that
  bring their own pre- and post-processing. Not registered; the version tag
  ``posecore.onnx_model_uri`` points at it.
- ``pose`` (``python_function`` flavour, :class:`posecore.registry.pyfunc.BundlePoseModel`): the
  whole bundle folder as its artifact ``artifacts/bundle/`` (``weights.pt`` and ``model.json``
  too, for warm starts from ``NAME@champion``) plus the decoding, so person crops go in
  and keypoints come out (see :mod:`posecore.registry.pyfunc` for the request format). **This is
  the registered model** (``NAME``: :func:`~posecore.registry.config.registered_model_name` of
  ``cfg.model_name`` and the bundle's task): ``mlflow models serve -m models:/NAME@champion``
  answers pose requests with it, ``mlflow.pyfunc.load_model("models:/NAME@champion")`` predicts
  with it, and :func:`posecore.registry.pull.pull` downloads its bundle for
  ``posecore infer --model DIR``. At serve time it needs only numpy, onnxruntime, opencv and
  pandas (posecore's sources travel with the model).

The new version gets the alias ``challenger`` and the tags of :mod:`posecore.registry.tags`
(its task among them, also set on the run); registration never touches ``champion`` (that is
:mod:`posecore.registry.promotion`'s job).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from posecore.registry.config import RegisterConfig, RegistryError, registered_model_name
from posecore.registry.fingerprint import recorded_fingerprint
from posecore.registry.tags import (
    CHALLENGER,
    LINEAGE_TAGS,
    TAG_EVAL_DATA,
    TAG_GIT,
    TAG_HIGHER,
    TAG_METRIC,
    TAG_ONNX_URI,
    TAG_RUN,
    TAG_SHA,
    TAG_TASK,
    TAG_VALUE,
    find_metric,
)

if TYPE_CHECKING:
    import onnx
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.models import ModelSignature

    from posecore.export.bundle import BundleInfo

_log = logging.getLogger(__name__)

BUNDLE_ARTIFACT = "artifacts/bundle"
"""Where the bundle lies inside the registered (pyfunc) model."""
POSE_MODEL_NAME = "pose"
ONNX_MODEL_NAME = "onnx"


def log_bundle(
    bundle_dir: str | Path,
    run_id: str,
    cfg: RegisterConfig,
    *,
    metric_value: float | None = None,
    eval_data: str | None = None,
    tracking_uri: str | None = None,
) -> ModelVersion | None:
    """Log the bundle at ``bundle_dir`` into run ``run_id`` and register it as
    ``registered_model_name(cfg.model_name, task)``, the task being bundle.json's.

    Logs the ``onnx`` and the ``pose`` models (module docstring), registers ``pose`` and gives the
    new version the alias ``challenger`` and its tags. ``metric_value`` defaults to the bundle's
    recorded metrics (``bundle.json``), ``eval_data`` to ``cfg.eval_data``, then bundle.json.
    Returns the new version, or None when ``cfg.register`` is false. ``tracking_uri`` defaults to
    MLflow's current one; the champion is never touched here.
    """
    import mlflow
    from mlflow import MlflowClient

    bundle = Path(bundle_dir)
    info = read_bundle(bundle)
    name = registered_model_name(cfg.model_name, info.task)
    metric = cfg.metric_name()
    if metric_value is None:
        recorded = info.provenance.get("metrics") or {}
        metric_value = find_metric(recorded, metric, f"{bundle / 'bundle.json'} provenance")
    eval_data = cfg.eval_data or eval_data or recorded_fingerprint([info.provenance]) or ""
    onnx_model = _load_onnx(info.model_path(bundle))
    onnx_sig = onnx_signature(onnx_model, info.input_size)  # checks the contract before anything is logged
    hashes = {name: sha256_file(bundle / name) for name in bundle_files(info)}

    uri = tracking_uri or mlflow.get_tracking_uri()
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    git_commit = run.data.tags.get("git.commit") or str(info.provenance.get("git_commit") or "unknown")
    with _in_run(uri, run_id), tempfile.TemporaryDirectory(prefix="posecore-register-") as tmp:
        onnx_info = mlflow.onnx.log_model(
            onnx_model,
            name=ONNX_MODEL_NAME,
            signature=onnx_sig,
            pip_requirements=_pins("onnx", "onnxruntime", "numpy"),
            save_as_external_data=False,
            metadata={"posecore.bundle": info.to_json(indent=None)},
        )
        staged = Path(tmp) / "bundle"  # a fixed name: the model always keeps it under artifacts/bundle
        shutil.copytree(bundle, staged)
        pose_info = mlflow.pyfunc.log_model(
            name=POSE_MODEL_NAME,
            python_model=_pose_model(),
            artifacts={"bundle": str(staged)},
            code_paths=[str(_stage_code(Path(tmp) / "code"))],
            signature=pose_signature(),
            input_example=_pose_example(info.input_size),
            pip_requirements=_pins("mlflow", "onnxruntime", "numpy", "opencv-python-headless", "pandas"),
            registered_model_name=name if cfg.register else None,
            metadata={
                "posecore.onnx_model_uri": onnx_info.model_uri,
                "posecore.io": "image: base64 JPEG/PNG person crop -> keypoints (K [x, y], crop px), scores (K)",
            },
        )
    client.set_tag(run_id, "posecore.registry.model_uri", pose_info.model_uri)
    client.set_tag(run_id, TAG_TASK, info.task)  # also for runs trained before the train stage tagged it
    if not cfg.register:
        return None
    return tag_new_version(
        client, run, name, str(pose_info.registered_model_version), cfg,
        metric=metric, metric_value=float(metric_value), eval_data=eval_data, task=info.task,
        git_commit=git_commit, onnx_uri=onnx_info.model_uri, hashes=hashes,
    )  # fmt: skip


def tag_new_version(
    client: Any,
    run: Any,
    name: str,
    version: str,
    cfg: RegisterConfig,
    *,
    metric: str,
    metric_value: float,
    eval_data: str,
    task: str,
    git_commit: str,
    onnx_uri: str,
    hashes: dict[str, str],
) -> ModelVersion:
    """Give a just-registered version the tags :func:`~posecore.registry.promotion.promote` reads (metric,
    direction, evaluation data, task, lineage, file hashes) and the alias ``challenger``; returns it."""
    run_id = run.info.run_id
    tags = {
        TAG_METRIC: metric,
        TAG_VALUE: repr(float(metric_value)),
        TAG_HIGHER: str(cfg.is_higher_better(metric)).lower(),
        TAG_EVAL_DATA: eval_data,
        TAG_TASK: task,
        TAG_GIT: git_commit,
        TAG_RUN: run_id,
        TAG_ONNX_URI: onnx_uri,
        **{TAG_SHA + file: digest for file, digest in hashes.items()},
        **{key: run.data.tags[key] for key in LINEAGE_TAGS if run.data.tags.get(key)},  # the warm-start chain
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, CHALLENGER, version)
    client.set_tag(run_id, "posecore.registry.version", f"{name}/{version}")
    _log.info("registered %s version %s (%s=%s) as %s", name, version, metric, metric_value, CHALLENGER)
    return client.get_model_version(name, version)


def read_bundle(bundle_dir: str | Path) -> BundleInfo:
    """The validated ``bundle.json`` of a bundle folder (:class:`posecore.export.bundle.BundleInfo`),
    after checking that its model file is there."""
    from posecore.export.bundle import INFO_FILE, BundleInfo

    bundle = Path(bundle_dir)
    if not (bundle / INFO_FILE).is_file():
        raise FileNotFoundError(
            f"{bundle} is not a model bundle (no {INFO_FILE}); run the export stage (`dvc repro export`) first"
        )
    info = BundleInfo.read(bundle)
    for name in bundle_files(info):
        if not (bundle / name).is_file():
            raise FileNotFoundError(f"the bundle {bundle} names {name} in {INFO_FILE}, but the file is missing")
    return info


def bundle_files(info: BundleInfo) -> list[str]:
    """The files of a bundle that a registered version records (and :func:`pull` checks) by SHA-256:
    bundle.json, the ONNX model(s), and the PyTorch weights and model description when the bundle has them."""
    from posecore.export.bundle import INFO_FILE

    optional = (info.int8_model_file, info.weights_file, info.spec_file)
    return [INFO_FILE, info.model_file, *(name for name in optional if name)]


def onnx_signature(model: onnx.ModelProto, input_size: Sequence[int] | None = None) -> ModelSignature:
    """The ONNX flavour's signature: ``inputs`` float32 (N, 3, h, w) -> the graph outputs.

    Unknown (symbolic) dimensions become -1; spatial ones are taken from ``input_size`` (w, h,
    bundle.json's) when the graph leaves them open.
    """
    import numpy as np
    import onnx
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    initializers = {i.name for i in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in initializers]

    def spec(value_info: Any) -> TensorSpec:
        tensor = value_info.type.tensor_type
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type))
        shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in tensor.shape.dim)
        return TensorSpec(dtype, shape, value_info.name)

    specs = {i.name: spec(i) for i in graph_inputs}
    main = specs.get("inputs")
    if main is None or len(main.shape) != 4 or main.shape[1] not in (3, -1) or main.type != np.float32:
        found = ", ".join(f"{s.name} {s.type} {s.shape}" for s in specs.values()) or "none"
        raise ValueError(
            f"the bundle's model.onnx must take one input 'inputs' float32 (N, 3, h, w); it takes {found}. "
            "Re-export it with posecore.export"
        )
    shape = list(main.shape)
    if input_size is not None:
        shape[2] = shape[2] if shape[2] > 0 else int(input_size[1])
        shape[3] = shape[3] if shape[3] > 0 else int(input_size[0])
    shape[1] = 3
    specs["inputs"] = TensorSpec(np.dtype(np.float32), tuple(shape), "inputs")
    return ModelSignature(Schema(list(specs.values())), Schema([spec(o) for o in model.graph.output]))


def pose_signature() -> ModelSignature:
    """The registered (pyfunc) model's signature: a base64 ``image`` per crop -> keypoints and scores."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema
    from mlflow.types.schema import Array

    return ModelSignature(
        Schema([ColSpec(DataType.string, "image")]),
        Schema(
            [
                ColSpec(Array(Array(DataType.double)), "keypoints"),
                ColSpec(Array(DataType.double), "scores"),
            ]
        ),
    )


def _pose_example(size: Sequence[int]) -> Any:
    """Two grey crops at the model's input size, base64 PNG: the model's serving input example."""
    import numpy as np
    import pandas as pd

    from posecore.registry.pyfunc import encode_image

    crop = np.full((size[1], size[0], 3), 128, np.uint8)
    return pd.DataFrame({"image": [encode_image(crop), encode_image(crop)]})


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_onnx(path: Path) -> onnx.ModelProto:
    import onnx

    try:
        return onnx.load(str(path))
    except Exception as exc:
        raise ValueError(f"{path} is not a readable ONNX model: {exc}") from exc


def _pins(*dists: str) -> list[str]:
    """``dist==installed version`` for each distribution (MLflow's own inference costs 3-25 s)."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for dist in dists:
        try:
            pins.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            pins.append(dist)
    return pins


def _stage_code(dest: Path) -> Path:
    """A copy of the ``posecore`` sources (no caches) to ship with the pyfunc model."""
    package = Path(__file__).resolve().parents[1]  # posecore/, not posecore/registry/
    target = dest / package.name
    shutil.copytree(package, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", ".*"))
    return target


def _pose_model() -> Any:
    from posecore.registry.pyfunc import BundlePoseModel

    return BundlePoseModel()


@contextlib.contextmanager
def _in_run(tracking_uri: str, run_id: str) -> Iterator[None]:
    """Make ``run_id`` the active run on ``tracking_uri`` (reusing it when it already is)."""
    import mlflow

    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id and mlflow.get_tracking_uri() == tracking_uri:
        yield
        return
    if active is not None:
        raise RegistryError(f"another MLflow run ({active.info.run_id}) is active; cannot log into run {run_id}")
    from mlflow import MlflowClient

    # Resuming makes the run RUNNING; put its own status back after, also when registration fails
    # (the training did not fail).
    client = MlflowClient(tracking_uri)
    status = client.get_run(run_id).info.status
    previous, env = mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri)
    try:
        mlflow.start_run(run_id=run_id)
        try:
            yield
        finally:
            terminal = status in ("FINISHED", "FAILED", "KILLED")
            mlflow.end_run(status=status if terminal else "FINISHED")
            if not terminal:
                client.update_run(run_id, status=status)
    finally:
        mlflow.set_tracking_uri(previous)
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env
