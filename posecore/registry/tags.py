"""What a registered version carries: the aliases, the ``posecore.*`` version tags, and reading them back.

A new version gets the alias ``challenger`` and the version tags :data:`TAG_METRIC`,
:data:`TAG_VALUE`, :data:`TAG_HIGHER`, :data:`TAG_EVAL_DATA` (a fingerprint of the evaluation
data), :data:`TAG_TASK` (``topdown`` / ``onestage``, from bundle.json; also a tag of the training
run), :data:`TAG_GIT`, :data:`TAG_RUN` and the SHA-256 of ``model.onnx`` and ``bundle.json``
(:data:`TAG_SHA` + file name); a promotion adds the ``posecore.promotion.*`` tags. Tags are
strings: :func:`float_tag`, :func:`bool_tag` and :func:`task_tag` read them back, tolerant of what
an older or a hand-edited version may hold. The metric a version is registered with comes from
:func:`read_eval_metrics` and :func:`find_metric`.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from posecore.experiment.keys import TAG_TASK  # the training run's tag too: posecore.experiment owns the key

_log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"

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
TAG_INIT_SOURCE = "posecore.init.source"
"""Run and version tag: the warm start the model trained from (``model.init.from`` as read)."""
TAG_PARENT_VERSION = "posecore.parent.version"
"""Run and version tag: ``NAME/VERSION`` of the registered model the training started from."""
TAG_PARENT_RUN = "posecore.parent.run_id"
"""Run and version tag: the MLflow run that trained the weights the training started from."""
LINEAGE_TAGS = (TAG_INIT_SOURCE, TAG_PARENT_VERSION, TAG_PARENT_RUN)
"""The training run's warm-start tags that a registered version copies (the registry's chain)."""


def float_tag(text: str | None) -> float | None:
    """A metric tag as a finite float; None when absent, ``"none"``, unparsable or not finite."""
    try:
        value = float(text) if text not in (None, "", "none") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def bool_tag(text: str | None, default: bool) -> bool:
    """A ``"true"``/``"false"`` tag; ``default`` when absent."""
    return default if text is None else text.strip().lower() == "true"


def task_tag(tags: Mapping[str, str] | None) -> str:
    """The task of a version from its tags; ``topdown`` without the tag (versions registered before
    one-stage models existed were all top-down)."""
    return (tags or {}).get(TAG_TASK) or "topdown"


def format_value(value: float | None) -> str:
    """A metric as a tag value: ``repr`` of the float (round-trips exactly), ``"none"`` for None."""
    return "none" if value is None else repr(float(value))


def metric_key(metric: str) -> str:
    """``metric`` as part of an MLflow metric key (``registry/champion_<metric>``)."""
    return re.sub(r"[^\w.\- ]", "_", metric) or "metric"


def read_eval_metrics(path: Path, provenance: Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
    """The evaluate stage's metrics (``path``), else those the export stage recorded in bundle.json's
    ``provenance``; with where they came from, for :func:`find_metric`'s messages."""
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(data, Mapping):
            raise ValueError(f"{path} must hold a JSON object of metrics")
        return data, str(path)
    recorded = provenance.get("metrics")
    if isinstance(recorded, Mapping) and recorded:
        _log.warning("%s does not exist; using the metrics recorded in bundle.json", path)
        return recorded, "bundle.json provenance"
    raise FileNotFoundError(f"evaluation metrics {path} do not exist; run the evaluate stage first")


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


def _flatten_metrics(tree: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten_metrics(value, f"{name}/"))
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            flat[name] = float(value)
    return flat
