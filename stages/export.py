"""Stage ``export``: the trained model -> a bundle (``export.out``) that runs without PyTorch, proven on real inputs.

Exports the plain forward of the deployed weights (EMA when kept) to ONNX with a dynamic
batch axis (see :mod:`posecore.export`), then, before anything reaches ``export.out``:

* parity: ONNX Runtime vs PyTorch on up to ``export.parity_samples`` cached val inputs at batch
  sizes 1, 2, 5 and all of them; the stage fails (exit 2, nothing written) when an output differs
  by more than ``export.atol`` or a decoded keypoint by more than ``export.max_kpt_px`` pixels;
* latency: ONNX Runtime and PyTorch eager at batch 1 and 32 (median of ``export.latency_runs``);
* accuracy: COCO AP of the ONNX model on the val split (flip test as the bundle recommends);
  with ``export.quantize`` also of ``model.int8.onnx``, and the drop.

The bundle folder appears complete or not at all; the numbers go to ``export.metrics`` (DVC
metrics) and, with the bundle, to the training's MLflow run (``export/<name>``, ``bundle/``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from posecore.config import Params
from posecore.data.cache import CacheSplit, cache_key, open_cache
from posecore.datasets.layout import DatasetLayout
from posecore.evaluation.topdown import normalized_inputs
from posecore.experiment import MlflowRun, git_commit, open_existing_run, read_run_id_file
from posecore.export.bundle import INT8_MODEL_FILE, MODEL_FILE, BundleInfo
from posecore.export.config import ExportConfig
from posecore.export.onnx import (
    Parity,
    check_parity,
    embed_metadata,
    export_onnx,
    file_mb,
    make_bundle_info,
    ort_latency_ms,
    ort_session,
    output_names,
    quantize,
    tile_batch,
    torch_latency_ms,
    versions,
)
from posecore.export.scoring import score_onnx
from posecore.export.trained import RUN_ID_FILE, TrainedModel, load_trained
from posecore.io import atomic_output_dir, atomic_write_json
from posecore.registry import eval_data_fingerprint

REPO = Path(__file__).resolve().parents[1]
PARITY_BATCHES = (1, 2, 5)
LATENCY_BATCHES = (1, 32)


class ExportCheckError(ValueError):
    """The exported model failed a check; nothing was written."""


@dataclass
class ExportOutputs:
    bundle_dir: Path
    info: BundleInfo
    metrics: dict[str, float]
    metrics_file: Path


def _provenance(trained: TrainedModel, eval_metrics_file: Path, val_annotations: Path) -> dict[str, Any]:
    """Where the bundle comes from. ``eval_data``: the evaluation data's fingerprint (``md5:`` of the val
    annotations, as DVC records the file: :mod:`posecore.registry.fingerprint`), so registry versions
    are compared only on the same data."""
    run_id_file = trained.run_id_file
    metrics: dict[str, Any] = {}
    if eval_metrics_file.is_file():
        metrics = json.loads(eval_metrics_file.read_text())
    elif trained.metric_name and trained.best_metric is not None:
        metrics = {trained.metric_name: trained.best_metric}
    return {
        "mlflow_run_id": read_run_id_file(run_id_file)["run_id"] if run_id_file.is_file() else None,
        **git_commit(REPO),
        "metrics": metrics,
        "metrics_source": str(eval_metrics_file) if eval_metrics_file.is_file() else "checkpoint",
        "eval_data": eval_data_fingerprint(val_annotations),
        "weights": trained.summary(),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **versions(),
    }


def _parity_metrics(prefix: str, parity: Parity) -> dict[str, float]:
    return {
        f"{prefix}parity_max_abs_diff": parity.max_abs_diff,
        f"{prefix}parity_max_kpt_px": parity.max_kpt_px,
    }


def _latency_metrics(prefix: str, session: Any, inputs: np.ndarray, cfg: ExportConfig) -> dict[str, float]:
    out = {}
    for b in LATENCY_BATCHES:
        ms = ort_latency_ms(session, tile_batch(inputs, b), cfg.latency_runs, cfg.latency_warmup)
        out[f"{prefix}latency_ms_b{b}"] = ms
        out[f"{prefix}throughput_b{b}"] = b * 1000.0 / ms
    return out


def _val_ap(session: Any, split: CacheSplit, trained: TrainedModel, info: BundleInfo, params: Params) -> float:
    gt_file = DatasetLayout(params.data.out).annotations("val")
    result = score_onnx(session, split, trained.model.codec, info, gt_file, trained.meta, params.evaluate)
    return float(result.metrics["AP"])


def _tracker(train_dir: Path) -> MlflowRun | None:
    run_id_file = train_dir / RUN_ID_FILE
    if not run_id_file.is_file():
        warnings.warn(f"{run_id_file} does not exist: the bundle is not logged to MLflow", stacklevel=3)
        return None
    return open_existing_run(run_id_file)


def run(params: Params, cfg: ExportConfig) -> ExportOutputs:
    """Export the model in ``train.checkpoint_dir`` to ``cfg.out``; raise :class:`ExportCheckError` when it fails a check."""
    train_dir = Path(params.train.checkpoint_dir)
    tracker = _tracker(train_dir)
    trained = load_trained(train_dir, "cpu")
    model = trained.model
    dataset_dir = Path(params.data.out)
    key = cache_key(dataset_dir, params.encode, trained.spec.build_codec())
    split = open_cache(Path(params.encode.out), key)["val"]
    if len(split) == 0:
        raise ValueError(f"the val split of {params.encode.out} is empty: nothing to check the export against")
    n = min(cfg.parity_samples, len(split))
    inputs = normalized_inputs(split, np.arange(n), model.mean, model.std)
    out = Path(cfg.out)
    info = make_bundle_info(
        model,
        trained.meta,
        outputs=output_names(model),
        bbox_padding=params.encode.bbox_padding,
        flip_test=params.evaluate.flip_test,
        quantization=cfg.quantize,
        provenance=_provenance(trained, params.evaluate.metrics_file, DatasetLayout(dataset_dir).annotations("val")),
    )
    with atomic_output_dir(out) as tmp:
        exported = export_onnx(model, tmp / MODEL_FILE, opset=cfg.opset, dynamo=cfg.dynamo)
        info = dataclasses.replace(
            info,
            provenance={
                **info.provenance,
                "exporter": exported.exporter,
                "opset": exported.opset,
                "dynamo_fallback_reason": exported.fallback_reason,
            },
        )
        embed_metadata(tmp / MODEL_FILE, info)
        info.write(tmp)
        session = ort_session(tmp / MODEL_FILE, cfg.threads)
        parity = check_parity(model, session, inputs, sorted({*PARITY_BATCHES, n}))
        failures = parity.failures(cfg.atol, cfg.max_kpt_px)
        if failures:
            raise ExportCheckError(
                f"the ONNX export ({exported.exporter}) does not match PyTorch on {n} val inputs: "
                + "; ".join(failures)
                + f". Nothing was written to {out}."
            )
        metrics: dict[str, float] = {
            "export_seconds": exported.seconds,
            "model_mb": file_mb(tmp / MODEL_FILE),
            "parity_samples": float(n),
            **_parity_metrics("", parity),
            **_latency_metrics("ort_", session, inputs.numpy(), cfg),
        }
        fast_eager = copy.deepcopy(model).to(memory_format=torch.channels_last)  # as training runs it
        for b in LATENCY_BATCHES:
            batch = torch.from_numpy(tile_batch(inputs.numpy(), b))
            metrics[f"torch_latency_ms_b{b}"] = torch_latency_ms(
                fast_eager, batch, cfg.latency_runs, cfg.latency_warmup
            )
        metrics["onnx_AP"] = _val_ap(session, split, trained, info, params)
        if cfg.quantize != "none":
            calibration = normalized_inputs(
                split, np.arange(min(cfg.calibration_samples, len(split))), model.mean, model.std
            ).numpy()
            start = time.perf_counter()
            quantize(tmp / MODEL_FILE, tmp / INT8_MODEL_FILE, cfg.quantize, calibration, info)
            int8 = ort_session(tmp / INT8_MODEL_FILE, cfg.threads)
            metrics["int8_seconds"] = time.perf_counter() - start
            metrics["int8_model_mb"] = file_mb(tmp / INT8_MODEL_FILE)
            metrics.update(_parity_metrics("int8_", check_parity(model, int8, inputs, (n,))))
            metrics.update(_latency_metrics("int8_", int8, inputs.numpy(), cfg))
            metrics["int8_AP"] = _val_ap(int8, split, trained, info, params)
            metrics["int8_AP_drop"] = metrics["onnx_AP"] - metrics["int8_AP"]
    metrics = {k: float(v) for k, v in metrics.items()}
    metrics_file = atomic_write_json(
        cfg.metrics, {k: (v if math.isfinite(v) else None) for k, v in metrics.items()}, indent=2
    )
    outputs = ExportOutputs(out, info, metrics, Path(metrics_file))
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
