"""Export a trained model to a bundle and prove it on real inputs before anything is written.

:func:`export_and_verify` exports the plain forward of the deployed weights (EMA when kept) to
ONNX with a dynamic batch axis (:mod:`posecore.export.onnx`), embeds ``bundle.json`` in it, then:

* parity: ONNX Runtime vs PyTorch on up to ``export.parity_samples`` cached val inputs at batch
  sizes 1, 2, 5 and all of them (:func:`posecore.export.parity.check_parity`); it raises
  :class:`ExportCheckError` (nothing written) when an output differs by more than
  ``export.atol`` or a decoded keypoint by more than ``export.max_kpt_px`` pixels (one-stage
  models: also a decoded person box, or when the two find a different number of people);
* latency: ONNX Runtime and PyTorch eager at batch 1 and 32 (median of ``export.latency_runs``);
* accuracy: COCO AP of the ONNX model on the val split (flip test as the bundle recommends,
  :func:`posecore.export.scoring.score_onnx`); with ``export.quantize`` also of
  ``model.int8.onnx``, and the drop.

A one-stage model (``model.task == "onestage"``) goes the same way on the one-stage cache's whole
val images (:class:`~posecore.data.images.ImageSplit`): its bundle says ``task: onestage`` and
records a flip test only when the network has keypoint heatmaps (it averages just those,
:func:`~posecore.models.flip.flip_cell_heatmaps`), and its accuracy is the one-stage evaluation's.

The bundle also carries the PyTorch weights (``weights.pt``, ``model.json``) for warm starts.
The bundle folder appears complete or not at all; the numbers go to ``export.metrics``.
What the bundle records about where it comes from (run id, git commit, evaluation-data
fingerprint) is the caller's to find: :func:`bundle_provenance` puts it together.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from posecore.data.cache import CacheSplit
from posecore.data.images import ImageSplit
from posecore.evaluation.topdown import EvalConfig, normalized_inputs
from posecore.export.bundle import INT8_MODEL_FILE, MODEL_FILE, BundleInfo
from posecore.export.config import ExportConfig
from posecore.export.onnx import (
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
from posecore.export.parity import Parity, check_parity
from posecore.export.scoring import score_onnx
from posecore.export.trained import TrainedModel, write_bundle_weights
from posecore.io import atomic_output_dir, atomic_write_json

PARITY_BATCHES = (1, 2, 5)
LATENCY_BATCHES = (1, 32)


class ExportCheckError(ValueError):
    """The exported model failed a check; nothing was written."""


@dataclass
class ExportOutputs:
    """``metrics``: every number of the checks (NaN kept here; ``metrics_file`` holds them with null instead)."""

    bundle_dir: Path
    info: BundleInfo
    metrics: dict[str, float]
    metrics_file: Path


def bundle_provenance(
    trained: TrainedModel,
    eval_metrics_file: Path,
    *,
    mlflow_run_id: str | None,
    commit: Mapping[str, Any],
    eval_data: str | None,
) -> dict[str, Any]:
    """Where the bundle comes from. ``eval_data``: the evaluation data's fingerprint (``md5:`` of the val
    annotations, as DVC records the file: :mod:`posecore.registry.fingerprint`), so registry versions
    are compared only on the same data; ``commit``: :func:`posecore.experiment.git_commit`'s keys.
    ``metrics``: the evaluate stage's ``eval_metrics_file``, else the checkpoint's best metric."""
    metrics: dict[str, Any] = {}
    if eval_metrics_file.is_file():
        metrics = json.loads(eval_metrics_file.read_text())
    elif trained.metric_name and trained.best_metric is not None:
        metrics = {trained.metric_name: trained.best_metric}
    return {
        "mlflow_run_id": mlflow_run_id,
        **commit,
        "metrics": metrics,
        "metrics_source": str(eval_metrics_file) if eval_metrics_file.is_file() else "checkpoint",
        "eval_data": eval_data,
        "weights": trained.summary(),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **versions(),
    }


def _parity_metrics(prefix: str, parity: Parity, onestage: bool) -> dict[str, float]:
    out = {
        f"{prefix}parity_max_abs_diff": parity.max_abs_diff,
        f"{prefix}parity_max_kpt_px": parity.max_kpt_px,
    }
    if onestage:
        out[f"{prefix}parity_max_box_px"] = parity.max_box_px
        out[f"{prefix}parity_count_mismatches"] = float(parity.count_mismatches)
    return out


def _latency_metrics(prefix: str, session: Any, inputs: np.ndarray, cfg: ExportConfig) -> dict[str, float]:
    out = {}
    for b in LATENCY_BATCHES:
        ms = ort_latency_ms(session, tile_batch(inputs, b), cfg.latency_runs, cfg.latency_warmup)
        out[f"{prefix}latency_ms_b{b}"] = ms
        out[f"{prefix}throughput_b{b}"] = b * 1000.0 / ms
    return out


def export_and_verify(
    trained: TrainedModel,
    split: CacheSplit | ImageSplit,
    gt_file: Path,
    cfg: ExportConfig,
    eval_cfg: EvalConfig,
    *,
    bbox_padding: float,
    provenance: Mapping[str, Any],
) -> ExportOutputs:
    """Export ``trained`` to ``cfg.out`` and its metrics to ``cfg.metrics``, checked on ``split`` (cached val).

    ``split`` must not be empty (a one-stage model's: the one-stage cache's); ``gt_file``: its COCO annotations, for the AP of the ONNX (and int8)
    model scored with ``eval_cfg`` as the evaluate stage scores; ``bbox_padding``: the cache's
    (``encode.bbox_padding``), recorded in the bundle so a runtime crops alike. Raises
    :class:`ExportCheckError` when the export fails parity.
    """
    model = trained.model
    onestage = model.task == "onestage"
    n = min(cfg.parity_samples, len(split))
    inputs = normalized_inputs(split, np.arange(n), model.mean, model.std)
    out = Path(cfg.out)
    info = make_bundle_info(
        model,
        trained.meta,
        outputs=output_names(model),
        bbox_padding=bbox_padding,
        flip_test=eval_cfg.flip_test and model.has_flip_test,
        quantization=cfg.quantize,
        provenance=dict(provenance),
    )

    def val_ap(session: Any) -> float:
        result = score_onnx(session, split, model.codec, info, gt_file, trained.meta, eval_cfg)
        return float(result.metrics["AP"])

    with atomic_output_dir(out) as tmp:
        exported = export_onnx(model, tmp / MODEL_FILE, opset=cfg.opset, dynamo=cfg.dynamo)
        weights_file, spec_file = write_bundle_weights(trained, tmp)
        info = dataclasses.replace(
            info,
            weights_file=weights_file.name,
            spec_file=spec_file.name,
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
            **_parity_metrics("", parity, onestage),
            **_latency_metrics("ort_", session, inputs.numpy(), cfg),
        }
        fast_eager = copy.deepcopy(model).to(memory_format=torch.channels_last)  # as training runs it
        for b in LATENCY_BATCHES:
            batch = torch.from_numpy(tile_batch(inputs.numpy(), b))
            metrics[f"torch_latency_ms_b{b}"] = torch_latency_ms(
                fast_eager, batch, cfg.latency_runs, cfg.latency_warmup
            )
        metrics["onnx_AP"] = val_ap(session)
        if cfg.quantize != "none":
            calibration = normalized_inputs(
                split, np.arange(min(cfg.calibration_samples, len(split))), model.mean, model.std
            ).numpy()
            start = time.perf_counter()
            quantize(tmp / MODEL_FILE, tmp / INT8_MODEL_FILE, cfg.quantize, calibration, info)
            int8 = ort_session(tmp / INT8_MODEL_FILE, cfg.threads)
            metrics["int8_seconds"] = time.perf_counter() - start
            metrics["int8_model_mb"] = file_mb(tmp / INT8_MODEL_FILE)
            metrics.update(_parity_metrics("int8_", check_parity(model, int8, inputs, (n,)), onestage))
            metrics.update(_latency_metrics("int8_", int8, inputs.numpy(), cfg))
            metrics["int8_AP"] = val_ap(int8)
            metrics["int8_AP_drop"] = metrics["onnx_AP"] - metrics["int8_AP"]
    metrics = {k: float(v) for k, v in metrics.items()}
    metrics_file = atomic_write_json(
        cfg.metrics, {k: (v if math.isfinite(v) else None) for k, v in metrics.items()}, indent=2
    )
    return ExportOutputs(out, info, metrics, Path(metrics_file))
