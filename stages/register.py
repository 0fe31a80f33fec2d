"""Stage ``register``: the exported bundle and its evaluation -> a registered model version, promoted if better.

Logs the bundle (``register.bundle``, by default ``export.out``) into the training run (the run id
in ``<train.checkpoint_dir>/mlflow_run_id``), registers it under the name for its task
(``register.model_name``, ``<register.model_name>-onestage`` for one-stage models:
:func:`posecore.registry.registered_model_name`) with the alias ``challenger``, and moves
``champion`` to it when its metric (``register.metric``, by default ``evaluate.metric``, read from
the evaluate stage's ``register.metrics`` file) beats the champion's on the same evaluation data
(:mod:`posecore.registry`). Writes ``register.out``: the decision, the registered name, the
version, the task and both numbers (a DVC metric).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from posecore.config import Params
from posecore.datasets.layout import DatasetLayout
from posecore.experiment import check_reachable, read_run_id_file
from posecore.export.trained import RUN_ID_FILE
from posecore.io import atomic_write_json
from posecore.registry import (
    PromotionDecision,
    RegisterConfig,
    eval_data_fingerprint,
    find_metric,
    log_bundle,
    promote,
    read_bundle,
    read_eval_metrics,
    registered_model_name,
)

_log = logging.getLogger("stages.register")


def run(params: Params, cfg: RegisterConfig | None = None) -> PromotionDecision | None:
    """Register the exported bundle and promote it; returns the decision (None when ``register.register`` is false)."""
    cfg = cfg if cfg is not None else params.register
    cfg = dataclasses.replace(cfg, metric=cfg.metric or params.evaluate.metric)
    bundle = Path(cfg.bundle or params.export.out)
    info = read_bundle(bundle)
    metrics_file = cfg.metrics_file(params.evaluate.metrics_file)
    metrics, metrics_source = read_eval_metrics(metrics_file, info.provenance)
    value = find_metric(metrics, cfg.metric_name(), metrics_source)
    val_annotations = DatasetLayout(params.data.out).annotations("val")
    eval_data = eval_data_fingerprint(val_annotations, configured=cfg.eval_data, recorded=(metrics, info.provenance))
    if eval_data is None:
        _log.warning("no evaluation-data fingerprint (and no %s): this version will not be compared", val_annotations)
        eval_data = ""

    run_info = read_run_id_file(Path(params.train.checkpoint_dir) / RUN_ID_FILE)
    uri = params.tracking.tracking_uri or run_info.get("tracking_uri")
    if not uri:
        raise ValueError("the MLflow run id file names no tracking URI; set tracking.tracking_uri")
    check_reachable(uri, params.tracking.connect_timeout_s)
    version = log_bundle(bundle, run_info["run_id"], cfg, metric_value=value, eval_data=eval_data, tracking_uri=uri)
    result: dict[str, Any] = {
        "model_name": registered_model_name(cfg.model_name, info.task),
        "task": info.task,
        "registered": version is not None,
        "metric": cfg.metric_name(),
        "challenger_metric": value,
        "eval_data": eval_data,
        "run_id": run_info["run_id"],
    }
    decision = None
    if version is not None:
        from mlflow import MlflowClient

        decision = promote(MlflowClient(uri), version.name, version.version, cfg)
        result |= decision.to_dict()
        _log.info("%s version %s: %s (%s)", version.name, version.version, decision.decision, decision.reason)
    atomic_write_json(cfg.out, result, indent=2)
    return decision


def main(argv: Sequence[str] | None = None) -> int:
    from stages._cli import stage_main

    def body(params: Params) -> None:
        decision = run(params)
        print(json.dumps(decision.to_dict() if decision else {"registered": False}))

    return stage_main(__doc__ or "", body, argv)


if __name__ == "__main__":
    sys.exit(main())
