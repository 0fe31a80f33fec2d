"""Stage ``register3d``: the lifter's bundle -> a version of ``<register.model_name>-lifting``, promoted if better.

Logs ``lift.bundle`` into the lifter's training run, registers it (:func:`posecore.registry.lift.log_lift_bundle`)
with its MPJPE from ``lift.out``'s metrics.json and the fingerprint of the held-out sequences, and
moves the ``champion`` alias to it when its MPJPE is lower than the champion's on the same data
(the same gate as the 2D models: ``register.min_improvement``, :func:`posecore.registry.promote`).
Writes ``lift.register_out``: the decision and both numbers (a DVC metric).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from posecore.config import Params
from posecore.experiment import check_reachable, read_run_id_file
from posecore.export.trained import RUN_ID_FILE
from posecore.io import atomic_write_json
from posecore.registry import promote
from posecore.registry.lift import lift_model_name, log_lift_bundle
from stages._cli import stage_main
from stages.evaluate3d import METRICS

METRIC = "MPJPE"


def run(params: Params) -> dict[str, Any]:
    lift = params.lift
    cfg = dataclasses.replace(params.register, metric=METRIC, higher_is_better=False)
    metrics = json.loads((Path(lift.out) / METRICS).read_text())
    run_info = read_run_id_file(Path(lift.train.checkpoint_dir) / RUN_ID_FILE)
    uri = params.tracking.tracking_uri or run_info.get("tracking_uri")
    if not uri:
        raise ValueError("the MLflow run id file names no tracking URI; set tracking.tracking_uri")
    check_reachable(uri, params.tracking.connect_timeout_s)
    value = float(metrics[METRIC])
    version = log_lift_bundle(
        lift.bundle,
        run_info["run_id"],
        cfg,
        metric=METRIC,
        metric_value=value,
        eval_data=metrics["eval_data"],
        tracking_uri=uri,
    )
    result: dict[str, Any] = {
        "model_name": lift_model_name(cfg.model_name),
        "task": "lifting",
        "registered": version is not None,
        "metric": METRIC,
        "challenger_metric": value,
        "eval_data": metrics["eval_data"],
        "run_id": run_info["run_id"],
    }
    if version is not None:
        from mlflow import MlflowClient

        result |= promote(MlflowClient(uri), version.name, version.version, cfg).to_dict()
    atomic_write_json(lift.register_out, result, indent=2)
    return result


def _body(params: Params) -> None:
    print(json.dumps(run(params), indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(__doc__ or "", _body, argv)


if __name__ == "__main__":
    sys.exit(main())
