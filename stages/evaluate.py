"""Stage ``evaluate``: the trained model on the cached val split -> metrics, tables, plots (``reports/eval``).

Loads ``train.checkpoint_dir`` (EMA weights when training kept them), predicts the val
inputs of the cache (``encode.out``) with ``evaluate.flip_test``, scores them against
``data.out/annotations/val.json`` (COCO AP/AR with the meta's sigmas after rescoring and
OKS-NMS per ``evaluate.*``; PCK@``pck_thr``, AUC, EPE) and writes, all at once::

    metrics.json        DVC metrics (names as MLflow takes them: AP, AP_.5, ..., PCK, AUC, EPE)
    per_keypoint.csv    keypoint,OKS,PCK@thr,count,AUC,EPE
    pck_curve.csv       threshold,pck (a DVC plot)
    per_keypoint.png    bars per keypoint; pck_curve.png
    worst.png           the worst-predicted val instances, prediction | ground truth
    results.json        COCO results (after rescoring and NMS)

Metrics go to the training's MLflow run as ``eval/<name>``, the files under ``eval/``;
without ``<train dir>/mlflow_run_id`` MLflow is skipped with a warning.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from posecore.config import Params
from posecore.data.cache import cache_key, open_cache
from posecore.datasets.layout import DatasetLayout
from posecore.evaluation.bottomup import predict_images
from posecore.evaluation.outputs import EvaluateOutputs, write_bottomup_report, write_report
from posecore.evaluation.topdown import predict_split
from posecore.experiment import MlflowRun, open_run_if_recorded
from posecore.export.trained import RUN_ID_FILE, load_trained
from posecore.inference.compare import compare_topdown
from posecore.metainfo import DatasetMeta, load_meta
from posecore.registry.pull import open_client, pull

_log = logging.getLogger("stages.evaluate")


def log_to_run(tracker: MlflowRun, outputs: EvaluateOutputs, prefix: str = "eval") -> None:
    with tracker as run:
        run.log_metrics({f"{prefix}/{k}": v for k, v in outputs.metrics.items() if v is not None}, step=0)
        for path in outputs.files():
            run.log_artifact(path, prefix)


def run(params: Params, out_dir: Path | None = None, device: str | None = None) -> EvaluateOutputs:
    """Evaluate the model in ``train.checkpoint_dir`` on the val split of ``encode.out``; write ``out_dir``."""
    cfg = params.evaluate
    out_dir = out_dir or Path(cfg.out)
    train_dir = Path(params.train.checkpoint_dir)
    dataset_dir = Path(params.data.out)
    layout = DatasetLayout(dataset_dir)
    tracker = open_run_if_recorded(train_dir / RUN_ID_FILE, "evaluation results are not logged to MLflow")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    trained = load_trained(train_dir, dev)
    trained.check_dataset(load_meta(layout.meta), dataset_dir)
    key = cache_key(dataset_dir, params.encode, trained.spec.build_codec())
    split = open_cache(Path(params.encode.out), key)["val"]
    if trained.spec.task == "onestage":
        people = predict_images(trained.model, split, cfg.batch_size, dev)
        comparison = _topdown_comparison(params, dataset_dir, trained.meta)
        outputs = write_bottomup_report(
            people, split, layout.annotations("val"), trained.meta, cfg, out_dir, comparison=comparison
        )
    else:
        preds = predict_split(trained.model, split, cfg.flip_test, cfg.batch_size, dev)
        outputs = write_report(preds, split, layout.annotations("val"), trained.meta, cfg, out_dir)
    if tracker is not None:
        log_to_run(tracker, outputs)
    return outputs


def _topdown_comparison(params: Params, dataset_dir: Path, meta: DatasetMeta) -> dict[str, Any] | None:
    """The top-down model of ``evaluate.compare_topdown`` scored on the same val images, or None.

    A registry reference is pulled first. A comparison that cannot run (no registry, no
    champion, another skeleton) is skipped with a warning: it explains, it does not gate.
    """
    ref = params.evaluate.compare_topdown
    if not ref:
        return None
    try:
        with tempfile.TemporaryDirectory(prefix="posecore-compare-") as tmp:
            bundle = Path(ref)
            if not (bundle / "bundle.json").is_file():
                client = open_client(params.tracking.tracking_uri or None, params.tracking.connect_timeout_s)
                bundle = Path(tmp) / "bundle"
                pull(ref, bundle, client=client)
            return compare_topdown(bundle, dataset_dir, meta, params.evaluate)
    except Exception as exc:  # noqa: BLE001 (any failure only drops the side-by-side rows)
        _log.warning("no top-down comparison (evaluate.compare_topdown=%r): %s", ref, exc)
        return None


def _body(params: Params) -> None:
    outputs = run(params)
    print(json.dumps({"out": str(outputs.out_dir), "metrics": outputs.metrics}, indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    from stages._cli import stage_main

    return stage_main(__doc__ or "", _body, argv)


if __name__ == "__main__":
    sys.exit(main())
