"""Stage ``export``: the trained model -> a bundle (``export.out``) that runs without PyTorch, proven on real inputs.

Exports the plain forward of the deployed weights (EMA when kept) to ONNX with a dynamic
batch axis (see :mod:`posecore.export`), then, before anything reaches ``export.out``:

* parity: ONNX Runtime vs PyTorch on up to ``export.parity_samples`` cached val inputs at batch
  sizes 1, 2, 5 and all of them; the stage fails (exit 2, nothing written) when an output differs
  by more than ``export.atol`` or a decoded keypoint by more than ``export.max_kpt_px`` pixels;
* latency: ONNX Runtime and PyTorch eager at batch 1 and 32 (median of ``export.latency_runs``);
* accuracy: COCO AP of the ONNX model on the val split (flip test as the bundle recommends);
  with ``export.quantize`` also of ``model.int8.onnx``, and the drop.

A one-stage model (its codec's task, e.g. the ``yoloxpose-*`` presets) goes the same way on the
one-stage cache's whole val images: the encode stage built that cache for its codec, and
:func:`~posecore.export.verify.export_and_verify` checks and scores it as the evaluate stage does
(the bundle records ``task: onestage``; the training run already carries the ``posecore.task`` tag).

The bundle folder appears complete or not at all; the numbers go to ``export.metrics`` (DVC
metrics) and, with the bundle, to the training's MLflow run (``export/<name>``, ``bundle/``).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from posecore.config import Params
from posecore.data.cache import cache_key, open_cache
from posecore.datasets.layout import DatasetLayout
from posecore.experiment import MlflowRun, git_commit, open_run_if_recorded, read_run_id_file
from posecore.export.config import ExportConfig
from posecore.export.trained import RUN_ID_FILE, load_trained
from posecore.export.verify import ExportOutputs, bundle_provenance, export_and_verify
from posecore.registry import eval_data_fingerprint

REPO = Path(__file__).resolve().parents[1]


def _recorded_metrics(path: Path) -> list[dict[str, Any]]:
    """The evaluate stage's metrics when it wrote a JSON object there, else nothing."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    return [doc] if isinstance(doc, dict) else []


def run(params: Params, cfg: ExportConfig) -> ExportOutputs:
    """Export the model in ``train.checkpoint_dir`` to ``cfg.out``; raise
    :class:`~posecore.export.verify.ExportCheckError` when it fails a check."""
    train_dir = Path(params.train.checkpoint_dir)
    tracker = open_run_if_recorded(train_dir / RUN_ID_FILE, "the bundle is not logged to MLflow")
    trained = load_trained(train_dir, "cpu")
    dataset_dir = Path(params.data.out)
    key = cache_key(dataset_dir, params.encode, trained.spec.build_codec())
    split = open_cache(Path(params.encode.out), key)["val"]
    if len(split) == 0:
        raise ValueError(f"the val split of {params.encode.out} is empty: nothing to check the export against")
    val_annotations = DatasetLayout(dataset_dir).annotations("val")
    run_id_file = trained.run_id_file
    provenance = bundle_provenance(
        trained,
        params.evaluate.metrics_file,
        mlflow_run_id=read_run_id_file(run_id_file)["run_id"] if run_id_file.is_file() else None,
        commit=git_commit(REPO),
        # the evaluate stage's fingerprint names the person boxes its metrics used (evaluate.boxes)
        eval_data=eval_data_fingerprint(val_annotations, recorded=_recorded_metrics(params.evaluate.metrics_file)),
    )
    outputs = export_and_verify(
        trained,
        split,
        val_annotations,
        cfg,
        params.evaluate,
        bbox_padding=params.encode.bbox_padding,
        provenance=provenance,
    )
    if tracker is not None:
        log_to_run(tracker, outputs)
    return outputs


def log_to_run(tracker: MlflowRun, outputs: ExportOutputs) -> None:
    with tracker as run:
        run.log_metrics({f"export/{k}": v for k, v in outputs.metrics.items() if math.isfinite(v)}, step=0)
        run.set_tags(
            {
                "posecore.export.exporter": outputs.info.provenance.get("exporter"),
                "posecore.export.quantization": outputs.info.quantization,
            }
        )
        run.client.log_artifacts(run.run_id, str(outputs.bundle_dir), "bundle")
        run.log_artifact(outputs.metrics_file, "export")


def _body(params: Params) -> None:
    outputs = run(params, params.export)
    print(json.dumps({"bundle": str(outputs.bundle_dir), "metrics": outputs.metrics}, indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    from stages._cli import stage_main

    return stage_main(__doc__ or "", _body, argv)


if __name__ == "__main__":
    sys.exit(main())
