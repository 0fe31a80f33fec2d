"""The model registry: register an exported bundle, promote it by alias, pull it back.

The register stage does, in the training run::

    version = log_bundle(Path("models/bundle"), run_id, cfg, metric_value=0.71, eval_data="md5:...")
    decision = promote(MlflowClient(uri), cfg.model_name, version.version, cfg)

**What is logged and what is registered.** :func:`log_bundle` logs two models into the run:

- ``onnx`` (``mlflow.onnx`` flavour): the network alone, signature ``inputs`` float32
  (-1, 3, h, w) -> the raw outputs (``simcc_x``/``simcc_y``, ``heatmaps``, ...), for consumers that
  bring their own pre- and post-processing. Not registered; the version tag
  ``posecore.onnx_model_uri`` points at it.
- ``pose`` (``python_function`` flavour, :class:`posecore.registry_pyfunc.BundlePoseModel`): the
  whole bundle folder as its artifact ``artifacts/bundle/`` plus the decoding, so person crops go in
  and keypoints come out (see :mod:`posecore.registry_pyfunc` for the request format). **This is
  the registered model** (``cfg.model_name``): ``mlflow models serve -m models:/NAME@champion``
  answers pose requests with it, ``mlflow.pyfunc.load_model("models:/NAME@champion")`` predicts
  with it, and :func:`pull` downloads its bundle for ``posecore infer --model DIR``. At serve time it
  needs only numpy, onnxruntime, opencv and pandas (posecore's sources travel with the model).

**Aliases and tags.** A new version gets the alias ``challenger`` and the version tags
``posecore.metric.name``, ``posecore.metric.value``, ``posecore.metric.higher_is_better``,
``posecore.eval_data`` (a fingerprint of the evaluation data), ``posecore.git_commit``,
``posecore.run_id`` and the SHA-256 of ``model.onnx`` and ``bundle.json`` (checked by :func:`pull`).
:func:`promote` moves ``champion`` to it only when its metric beats the champion's by more than
nothing and at least ``min_improvement``, on the same evaluation data; it records the decision,
the reason and both numbers as ``posecore.promotion.*`` version tags and in the version's run
(``registry/*`` metrics, ``posecore.promotion.*`` tags). The first version becomes champion.

**Guarantees.** The registry is never without a champion once it had one: the alias is only ever
*moved* (MLflow keeps one row per (model, alias), so moving it is one write, and there is never
more than one champion), never deleted, and the promotion's other writes come after that one — a
failure anywhere leaves the previous champion or the new one, never none (registration itself
never touches ``champion``). Concurrent promotions of one model are made to decide one after the
other, each against the champion the previous one left, so the best of them ends as champion:

- SQLite and file stores (one machine): an exclusive ``flock`` on a lock file next to the
  database (``<db>.posecore-promote.lock``) around read-compare-move. This holds for threads and
  processes on that machine, whatever their timing.
- Any other store (an MLflow server, a shared SQL database): MLflow offers no conditional update,
  so :func:`promote` runs a compare-and-set loop: read the champion, decide, re-read it right
  before moving the alias (a change means deciding again), move it, wait ``settle_s`` (jittered),
  read it again and decide again if someone else moved it meanwhile. A better version that lost a
  race re-takes the alias, a worse one backs off. What this cannot exclude: a writer that stalls
  for longer than ``settle_s`` between its re-read and its write can overwrite a better champion
  whose writer had already verified and returned. Exactly one champion always holds.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import math
import os
import random
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

if TYPE_CHECKING:
    import onnx
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.models import ModelSignature

    from posecore.export.bundle import BundleInfo

_log = logging.getLogger("posecore.registry")

CHAMPION = "champion"
CHALLENGER = "challenger"
BUNDLE_ARTIFACT = "artifacts/bundle"
"""Where the bundle lies inside the registered (pyfunc) model."""
POSE_MODEL_NAME = "pose"
ONNX_MODEL_NAME = "onnx"
LOWER_IS_BETTER = frozenset({"EPE", "NME", "MPJPE", "loss"})
"""Metrics for which smaller values are better (the default of ``higher_is_better``)."""

TAG_METRIC = "posecore.metric.name"
TAG_VALUE = "posecore.metric.value"
TAG_HIGHER = "posecore.metric.higher_is_better"
TAG_EVAL_DATA = "posecore.eval_data"
TAG_GIT = "posecore.git_commit"
TAG_RUN = "posecore.run_id"
TAG_ONNX_URI = "posecore.onnx_model_uri"
TAG_SHA = "posecore.bundle.sha256."  # + file name
TAG_DECISION = "posecore.promotion.decision"
TAG_REASON = "posecore.promotion.reason"
TAG_CHAMPION_METRIC = "posecore.promotion.champion_metric"
TAG_CHALLENGER_METRIC = "posecore.promotion.challenger_metric"
TAG_CHAMPION_VERSION = "posecore.promotion.champion_version"
TAG_DECIDED_AT = "posecore.promotion.decided_at"
TAG_REPLACED_BY = "posecore.promotion.replaced_by"

_EVAL_DATA_KEYS = ("eval_data", "eval_data_fingerprint", "data_fingerprint")
_REF_RE = re.compile(r"^(?:models:/)?(?P<name>[^@/]+?)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+))$")


class RegistryError(RuntimeError):
    """A registry operation cannot go on (bad bundle, unknown model, lock not obtained, ...)."""


@dataclass(frozen=True)
class RegisterConfig:
    """How a trained model is registered and promoted (``register:`` in params.yaml).

    ``metric``: the metric compared between versions; empty means ``evaluate.metric`` (the one that
    also selects ``best.pt``), ``"AP"`` outside the pipeline. ``higher_is_better``: None means from
    the metric (EPE, NME, MPJPE, loss: lower is better). ``min_improvement``: the margin by which a
    challenger must beat the champion (in the metric's units; equal is never enough).
    ``eval_data``: a fingerprint of the evaluation data; empty means the ``eval_data`` key of the
    metrics file or bundle.json, else ``md5:<md5 of the val annotations>`` (what DVC records).
    ``bundle``: the exported bundle folder; empty means ``export.out``. ``metrics``: the evaluate
    stage's metrics JSON; empty means ``<evaluate.out>/metrics.json``. ``out``: the register
    stage's result (a DVC metric). ``register``: false logs the models into the training run
    without registering or promoting.
    """

    model_name: str = "posecore-pose"
    metric: str = ""
    higher_is_better: bool | None = None
    min_improvement: float = field(default=0.0, metadata={"range": (0.0, 1e12)})
    eval_data: str = ""
    register: bool = True
    bundle: str = ""
    metrics: str = ""
    out: str = "reports/register.json"

    def metric_name(self, default: str = "AP") -> str:
        return self.metric or default

    def is_higher_better(self, metric: str) -> bool:
        if self.higher_is_better is not None:
            return self.higher_is_better
        return metric not in LOWER_IS_BETTER


@dataclass(frozen=True)
class PromotionDecision:
    """What :func:`promote` decided for one version, and why.

    ``decision``: ``"promoted"`` (it is champion now), ``"rejected"`` (the champion stays),
    ``"unchanged"`` (it already was champion). ``champion_version``/``champion_metric``: the
    champion it was compared with (None for the first version).
    """

    model_name: str
    version: str
    decision: str
    reason: str
    metric: str
    challenger_metric: float | None
    champion_metric: float | None
    champion_version: str | None
    higher_is_better: bool
    min_improvement: float
    forced: bool = False

    @property
    def promoted(self) -> bool:
        return self.decision == "promoted"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "promoted": self.promoted}


# --------------------------------------------------------------------------- logging and registration


def log_bundle(
    bundle_dir: str | Path,
    run_id: str,
    cfg: RegisterConfig,
    *,
    metric_value: float | None = None,
    eval_data: str | None = None,
    tracking_uri: str | None = None,
) -> ModelVersion | None:
    """Log the bundle at ``bundle_dir`` into run ``run_id`` and register it as ``cfg.model_name``.

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
    metric = cfg.metric_name()
    if metric_value is None:
        recorded = info.provenance.get("metrics") or {}
        metric_value = find_metric(recorded, metric, f"{bundle / 'bundle.json'} provenance")
    eval_data = cfg.eval_data or eval_data or str(_first(info.provenance, _EVAL_DATA_KEYS) or "")
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
            registered_model_name=cfg.model_name if cfg.register else None,
            metadata={
                "posecore.onnx_model_uri": onnx_info.model_uri,
                "posecore.io": "image: base64 JPEG/PNG person crop -> keypoints (K [x, y], crop px), scores (K)",
            },
        )
    client.set_tag(run_id, "posecore.registry.model_uri", pose_info.model_uri)
    if not cfg.register:
        return None
    version = str(pose_info.registered_model_version)
    tags = {
        TAG_METRIC: metric,
        TAG_VALUE: repr(float(metric_value)),
        TAG_HIGHER: str(cfg.is_higher_better(metric)).lower(),
        TAG_EVAL_DATA: eval_data,
        TAG_GIT: git_commit,
        TAG_RUN: run_id,
        TAG_ONNX_URI: onnx_info.model_uri,
        **{TAG_SHA + name: digest for name, digest in hashes.items()},
    }
    for key, value in tags.items():
        client.set_model_version_tag(cfg.model_name, version, key, value)
    client.set_registered_model_alias(cfg.model_name, CHALLENGER, version)
    client.set_tag(run_id, "posecore.registry.version", f"{cfg.model_name}/{version}")
    _log.info("registered %s version %s (%s=%s) as %s", cfg.model_name, version, metric, metric_value, CHALLENGER)
    return client.get_model_version(cfg.model_name, version)


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
    """The files of a bundle that a registered version records (and :func:`pull` checks) by SHA-256."""
    from posecore.export.bundle import INFO_FILE

    return [INFO_FILE, info.model_file, *([info.int8_model_file] if info.int8_model_file else [])]


def find_metric(metrics: Mapping[str, Any], name: str, where: str = "metrics") -> float:
    """The value of metric ``name`` in a (possibly nested) metrics mapping.

    Accepts ``name`` itself or a key ending in ``/name`` or ``.name`` (``test/AP``, ``val.AP``);
    with several such keys the shortest wins. Raises ValueError naming the keys there are.
    """
    flat = _flatten_metrics(metrics)
    if name in flat:
        return flat[name]
    hits = sorted((k for k in flat if k.endswith((f"/{name}", f".{name}"))), key=len)
    if not hits:
        raise ValueError(
            f"metric {name!r} not found in {where}; metrics there: {', '.join(sorted(flat)) or 'none'} "
            "(set register.metric or evaluate.metric to one of them)"
        )
    return flat[hits[0]]


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

    from posecore.registry_pyfunc import encode_image

    crop = np.full((size[1], size[0], 3), 128, np.uint8)
    return pd.DataFrame({"image": [encode_image(crop), encode_image(crop)]})


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _first(mapping: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if mapping.get(key) not in (None, ""):
            return mapping[key]
    return None


def _flatten_metrics(tree: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten_metrics(value, f"{name}/"))
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            flat[name] = float(value)
    return flat


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
    package = Path(__file__).resolve().parent
    target = dest / package.name
    shutil.copytree(package, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", ".*"))
    return target


def _pose_model() -> Any:
    from posecore.registry_pyfunc import BundlePoseModel

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


# --------------------------------------------------------------------------- promotion


def promote(
    client: MlflowClient,
    model_name: str,
    version: str | int,
    cfg: RegisterConfig,
    *,
    force: bool = False,
    lock_timeout_s: float = 120.0,
    settle_s: float = 0.5,
    max_attempts: int = 8,
) -> PromotionDecision:
    """Make ``version`` the champion of ``model_name`` if it beats the current one (module docstring).

    The metric, its direction and the evaluation-data fingerprint come from the version's tags
    (written by :func:`log_bundle`); ``cfg`` gives ``min_improvement`` (and the metric and
    direction for versions without those tags). ``force`` promotes whatever the numbers (the
    decision and both numbers are still recorded). Raises :class:`RegistryError` when the lock is
    not obtained within ``lock_timeout_s`` or the champion keeps changing for ``max_attempts``.
    """
    version = str(version)
    lock = _lock_file(client)
    try:
        if lock is not None:
            with _file_lock(lock, lock_timeout_s):
                decision = _decide_and_move(client, model_name, version, cfg, force)
                _record(client, decision)  # inside: MLflow's SQL store races on concurrent writes of one tag
            return decision
        decision = _promote_cas(client, model_name, version, cfg, force, settle_s, max_attempts)
    except Exception as exc:
        _record_failure(client, model_name, version, exc)
        raise
    _record(client, decision)
    return decision


def _decide_and_move(
    client: MlflowClient, model_name: str, version: str, cfg: RegisterConfig, force: bool
) -> PromotionDecision:
    champion = _champion(client, model_name)
    decision = decide(_version(client, model_name, version), champion, cfg, force=force)
    if decision.promoted:
        client.set_registered_model_alias(model_name, CHAMPION, version)
    return decision


def _promote_cas(
    client: MlflowClient,
    model_name: str,
    version: str,
    cfg: RegisterConfig,
    force: bool,
    settle_s: float,
    max_attempts: int,
) -> PromotionDecision:
    challenger = _version(client, model_name, version)
    for _ in range(max_attempts):
        champion = _champion(client, model_name)
        decision = decide(challenger, champion, cfg, force=force)
        if not decision.promoted:
            return decision
        seen = str(champion.version) if champion is not None else None
        if _champion_version(client, model_name) != seen:  # moved since we read it: decide again
            continue
        client.set_registered_model_alias(model_name, CHAMPION, version)
        if force:  # the caller wants this version now, whatever others do afterwards
            return decision
        # A writer that read the old champion may still land its move: give it time, then look.
        time.sleep(settle_s * (1.0 + random.random()))
        if _champion_version(client, model_name) == version:
            return decision
    raise RegistryError(
        f"the champion of {model_name} kept changing during {max_attempts} promotion attempts of version "
        f"{version}; try again (`posecore registry promote {model_name} {version}`)"
    )


def decide(
    challenger: ModelVersion, champion: ModelVersion | None, cfg: RegisterConfig, *, force: bool = False
) -> PromotionDecision:
    """Whether ``challenger`` should replace ``champion`` (pure: reads the versions' tags only)."""
    tags = challenger.tags or {}
    metric = tags.get(TAG_METRIC) or cfg.metric_name()
    higher = _bool_tag(tags.get(TAG_HIGHER), cfg.is_higher_better(metric))
    value = _float_tag(tags.get(TAG_VALUE))
    base = {
        "model_name": challenger.name,
        "version": str(challenger.version),
        "metric": metric,
        "challenger_metric": value,
        "higher_is_better": higher,
        "min_improvement": float(cfg.min_improvement),
        "forced": force,
    }
    if champion is None:
        return PromotionDecision(
            **base,
            decision="promoted",
            reason=f"first version: {challenger.name} had no {CHAMPION}",
            champion_metric=None,
            champion_version=None,
        )
    ctags = champion.tags or {}
    cmetric = ctags.get(TAG_METRIC) or cfg.metric_name()
    cvalue = _float_tag(ctags.get(TAG_VALUE))
    base |= {"champion_metric": cvalue, "champion_version": str(champion.version)}
    if str(champion.version) == str(challenger.version):
        return PromotionDecision(**base, decision="unchanged", reason=f"version {champion.version} already is champion")
    if force:
        return PromotionDecision(
            **base,
            decision="promoted",
            reason=f"forced: {metric} {_fmt(value)} vs champion v{champion.version} {cmetric} {_fmt(cvalue)}",
        )
    problems = []
    if value is None:
        problems.append(f"version {challenger.version} has no {metric} value")
    if cvalue is None:
        problems.append(f"champion v{champion.version} has no {cmetric} value")
    if cmetric != metric:
        problems.append(f"metrics differ ({metric} vs champion's {cmetric})")
    data, cdata = tags.get(TAG_EVAL_DATA, ""), ctags.get(TAG_EVAL_DATA, "")
    if not data or not cdata:
        which = f"version {challenger.version}" if not data else f"champion v{champion.version}"
        problems.append(f"the evaluation data of {which} is unknown")
    elif data != cdata:
        problems.append(f"evaluated on different data ({data} vs champion's {cdata}); numbers are not comparable")
    if problems:
        return PromotionDecision(**base, decision="rejected", reason="not compared: " + "; ".join(problems))
    assert value is not None and cvalue is not None
    gain = value - cvalue if higher else cvalue - value
    direction = "higher" if higher else "lower"
    numbers = f"{metric} {_fmt(value)} vs champion v{champion.version} {_fmt(cvalue)} ({direction} is better)"
    if gain > 0 and gain >= cfg.min_improvement:
        return PromotionDecision(**base, decision="promoted", reason=f"better: {numbers}")
    if gain > 0:
        why = f"better by {gain:.6g}, less than min_improvement {cfg.min_improvement:g}"
    else:
        why = "equal" if gain == 0 else "worse"
    return PromotionDecision(**base, decision="rejected", reason=f"{why}: {numbers}")


def _record(client: MlflowClient, d: PromotionDecision) -> None:
    """The decision as version tags and in the version's run (after the alias move). A version that
    already was champion keeps the tags of the promotion that made it one."""
    if d.decision == "unchanged":
        return
    tags = {
        TAG_DECISION: d.decision,
        TAG_REASON: d.reason,
        TAG_CHALLENGER_METRIC: _fmt(d.challenger_metric),
        TAG_CHAMPION_METRIC: _fmt(d.champion_metric),
        TAG_CHAMPION_VERSION: d.champion_version or "none",
        TAG_DECIDED_AT: datetime.now(UTC).isoformat(timespec="seconds"),
    }
    for key, value in tags.items():
        client.set_model_version_tag(d.model_name, d.version, key, value)
    if d.promoted and d.champion_version and d.champion_version != d.version:
        with contextlib.suppress(Exception):  # a note on the old version; racing promoters may both write it
            client.set_model_version_tag(d.model_name, d.champion_version, TAG_REPLACED_BY, d.version)
    run_id = _version(client, d.model_name, d.version).run_id
    if not run_id:
        return
    metric = _metric_key(d.metric)
    if d.challenger_metric is not None:
        client.log_metric(run_id, f"registry/challenger_{metric}", d.challenger_metric)
    if d.champion_metric is not None:
        client.log_metric(run_id, f"registry/champion_{metric}", d.champion_metric)
    client.log_metric(run_id, "registry/promoted", 1.0 if d.promoted else 0.0)
    for key in (TAG_DECISION, TAG_REASON, TAG_CHAMPION_VERSION):
        client.set_tag(run_id, key, tags[key])
    client.set_tag(run_id, "posecore.promotion.version", f"{d.model_name}/{d.version}")


def _record_failure(client: MlflowClient, model_name: str, version: str, exc: BaseException) -> None:
    """Best effort: say on the version that its promotion broke off, and whether the alias had moved."""
    error = f"{type(exc).__name__}: {exc}"
    with contextlib.suppress(Exception):
        if _champion_version(client, model_name) == version:
            decision, reason = "promoted", f"promoted, but recording the decision failed: {error}"
        else:
            decision, reason = "failed", f"error before the champion alias moved: {error}"
        client.set_model_version_tag(model_name, version, TAG_DECISION, decision)
        client.set_model_version_tag(model_name, version, TAG_REASON, reason[:5000])


def _champion(client: MlflowClient, model_name: str) -> ModelVersion | None:
    return _by_alias(client, model_name, CHAMPION)


def _champion_version(client: MlflowClient, model_name: str) -> str | None:
    return _alias_version(client, model_name, CHAMPION)


def _alias_version(client: MlflowClient, model_name: str, alias: str) -> str | None:
    mv = _by_alias(client, model_name, alias)
    return str(mv.version) if mv is not None else None


def _by_alias(client: MlflowClient, model_name: str, alias: str) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def _version(client: MlflowClient, model_name: str, version: str) -> ModelVersion:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(model_name, version)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryError(f"{model_name} has no version {version}: {exc.message}") from None
        raise


def _float_tag(text: str | None) -> float | None:
    try:
        value = float(text) if text not in (None, "", "none") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def _bool_tag(text: str | None, default: bool) -> bool:
    return default if text is None else text.strip().lower() == "true"


def _fmt(value: float | None) -> str:
    return "none" if value is None else repr(float(value))


def _metric_key(metric: str) -> str:
    return re.sub(r"[^\w.\- ]", "_", metric) or "metric"


# --------------------------------------------------------------------------- locks


def _lock_file(client: MlflowClient) -> Path | None:
    """The lock file of a registry on this machine (SQLite or file store); None for anything else."""
    uri = str(getattr(client, "_registry_uri", None) or client.tracking_uri)
    if uri.startswith("sqlite:///"):
        db = Path(unquote(uri[len("sqlite:///") :].split("?", 1)[0])).absolute()
        if str(db) in ("/:memory:", ":memory:"):
            return None
        return db.with_name(f"{db.name}.posecore-promote.lock")
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        root = Path(unquote(parsed.path) if parsed.scheme == "file" else uri).absolute()
        return root / ".posecore-promote.lock"
    return None


@contextlib.contextmanager
def _file_lock(path: Path, timeout_s: float) -> Iterator[None]:
    """An exclusive ``flock`` on ``path``: excludes other processes and other threads alike
    (each holder opens its own file description)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                if time.monotonic() >= deadline:
                    raise RegistryError(
                        f"could not lock {path} within {timeout_s:g} s: another promotion holds it"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- reading back


def parse_model_ref(ref: str) -> tuple[str, str | None, str | None]:
    """``"NAME@alias"`` / ``"NAME/VERSION"`` (optionally ``models:/`` in front) -> (name, alias, version)."""
    m = _REF_RE.match(ref.strip())
    if not m:
        raise ValueError(f"model reference {ref!r} must look like NAME@champion or NAME/3")
    return m["name"], m["alias"], m["version"]


def resolve_version(client: MlflowClient, ref: str) -> ModelVersion:
    name, alias, version = parse_model_ref(ref)
    if alias is not None:
        mv = _by_alias(client, name, alias)
        if mv is None:
            raise RegistryError(f"{name} has no version with alias {alias!r} (see `posecore registry show {name}`)")
        return mv
    assert version is not None
    return _version(client, name, version)


def pull(model_ref: str, out_dir: str | Path, *, client: MlflowClient | None = None) -> ModelVersion:
    """Download the bundle of ``model_ref`` (``NAME@alias`` or ``NAME/VERSION``) into ``out_dir``.

    ``out_dir`` is replaced atomically (posecore.io.atomic_output_dir) and only after the files'
    SHA-256 match the version's tags, so it holds either the old bundle or the complete new one.
    ``posecore infer --model out_dir`` then runs it. Returns the version pulled (an alias is
    resolved once, so the files are that version's even if the alias moves meanwhile).
    """
    import mlflow
    from mlflow import MlflowClient

    from posecore.io import atomic_output_dir

    client = client or MlflowClient()
    mv = resolve_version(client, model_ref)
    base = client.get_model_version_download_uri(mv.name, str(mv.version)).rstrip("/")
    out = Path(out_dir)
    with atomic_output_dir(out) as tmp, tempfile.TemporaryDirectory(prefix="posecore-pull-") as dl:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{base}/{BUNDLE_ARTIFACT}", dst_path=dl, tracking_uri=client.tracking_uri
        )
        src = Path(local)
        try:
            read_bundle(src)
        except (FileNotFoundError, ValueError) as exc:
            raise RegistryError(
                f"{mv.name} version {mv.version} holds no valid posecore bundle under {BUNDLE_ARTIFACT} ({exc}); "
                "was it registered with posecore.registry.log_bundle?"
            ) from None
        for entry in src.iterdir():
            shutil.move(str(entry), tmp / entry.name)
        for key, expected in (mv.tags or {}).items():
            name = key[len(TAG_SHA) :]
            if key.startswith(TAG_SHA) and (not (tmp / name).is_file() or sha256_file(tmp / name) != expected):
                raise RegistryError(f"{name} of {mv.name} version {mv.version} does not match its recorded SHA-256")
    _log.info("pulled %s version %s into %s", mv.name, mv.version, out)
    return mv


def open_client(tracking_uri: str | None = None, timeout: float = 10.0) -> MlflowClient:
    """A client for ``tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///./mlflow.db``.

    Fails fast: a SQLite file that does not exist (rather than creating an empty store) or a
    server that does not answer raise FileNotFoundError / :class:`posecore.tracking.TrackingUnavailable`.
    """
    from mlflow import MlflowClient

    from posecore.tracking import TrackingConfig, _sqlite_path, check_reachable, resolve_tracking_uri

    uri = resolve_tracking_uri(TrackingConfig(tracking_uri=tracking_uri or ""), Path.cwd())
    db = _sqlite_path(uri)
    if db is not None and not db.is_file():
        raise FileNotFoundError(
            f'no MLflow store at {db}; pass --tracking-uri or set MLFLOW_TRACKING_URI (e.g. eval "$(posecore stack env)")'
        )
    check_reachable(uri, timeout)
    return MlflowClient(uri)


def describe_version(mv: ModelVersion) -> dict[str, Any]:
    """The fields ``posecore registry show`` prints for one version."""
    tags = mv.tags or {}
    return {
        "version": str(mv.version),
        "aliases": list(getattr(mv, "aliases", []) or []),
        "metric": tags.get(TAG_METRIC),
        "value": _float_tag(tags.get(TAG_VALUE)),
        "eval_data": tags.get(TAG_EVAL_DATA),
        "decision": tags.get(TAG_DECISION),
        "reason": tags.get(TAG_REASON),
        "run_id": mv.run_id,
        "git_commit": tags.get(TAG_GIT),
        "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(timespec="seconds")
        if mv.creation_timestamp
        else None,
    }


def list_versions(client: MlflowClient, model_name: str) -> list[ModelVersion]:
    """Every version of ``model_name``, newest first."""
    versions = client.search_model_versions(f"name = '{_quote(model_name)}'")
    return sorted(versions, key=lambda mv: int(mv.version), reverse=True)


def _quote(text: str) -> str:
    return text.replace("'", "\\'")
