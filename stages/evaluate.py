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
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from posecore.config import Params
from posecore.data.cache import cache_key, open_cache
from posecore.datasets.layout import DatasetLayout
from posecore.evaluation.outputs import EvaluateOutputs, write_report
from posecore.evaluation.topdown import predict_split
from posecore.experiment import MlflowRun, open_run_if_recorded
from posecore.export.trained import RUN_ID_FILE, load_trained
from posecore.metainfo import load_meta


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
    preds = predict_split(trained.model, split, cfg.flip_test, cfg.batch_size, dev)
    outputs = write_report(preds, split, layout.annotations("val"), trained.meta, cfg, out_dir)
    if tracker is not None:
        log_to_run(tracker, outputs)
    return outputs


def _body(params: Params) -> None:
    outputs = run(params)
    print(json.dumps({"out": str(outputs.out_dir), "metrics": outputs.metrics}, indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    from stages._cli import stage_main

    return stage_main(__doc__ or "", _body, argv)


if __name__ == "__main__":
    sys.exit(main())
