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

**Boxes** (``evaluate.boxes``, top-down models). ``gt``: the crops of the ground-truth boxes
from the cache. ``file``: COCO's detected-box protocol with a detection-results file
(``evaluate.bbox_file``, MMPose's ``bbox_file``): the model poses every detected box of every val
image through the inference runtime, and those poses give ``AP``, ``AR``, ... and results.json;
the ground-truth-box numbers stay as ``gt_boxes/AP``, ... ``model``: the same with the boxes of a
person finder (``evaluate.detector``: a one-stage bundle, training folder or registry reference,
by default this pipeline's one-stage champion; or an ONNX detector file). metrics.json also
states ``boxes`` and the ``eval_data`` fingerprint, which names the boxes
(:func:`posecore.registry.with_boxes`): the registry compares only versions evaluated with the
same boxes. A one-stage model finds people itself (``boxes: none``); it takes only ``gt``.

Metrics go to the training's MLflow run as ``eval/<name>`` (``boxes`` and ``eval_data`` as the
tags ``posecore.eval.boxes`` / ``posecore.eval.eval_data``), the files under ``eval/``; without
``<train dir>/mlflow_run_id`` MLflow is skipped with a warning.
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
from posecore.evaluation.outputs import EvaluateOutputs, Protocol, write_bottomup_report, write_report
from posecore.evaluation.topdown import BoxedScore, predict_split
from posecore.experiment import MlflowRun, open_run_if_recorded
from posecore.export.bundle import MODEL_FILE
from posecore.export.trained import RUN_ID_FILE, load_trained
from posecore.metainfo import DatasetMeta, load_meta
from posecore.registry.config import registered_model_name
from posecore.registry.fingerprint import file_fingerprint, with_boxes
from posecore.registry.pull import open_client, parse_model_ref, pull

_log = logging.getLogger("stages.evaluate")


def log_to_run(tracker: MlflowRun, outputs: EvaluateOutputs, prefix: str = "eval") -> None:
    with tracker as run:
        run.log_metrics({f"{prefix}/{k}": v for k, v in outputs.numbers().items()}, step=0)
        run.set_tags({f"posecore.{prefix}.{k}": v for k, v in outputs.metrics.items() if isinstance(v, str)})
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
    annotations = layout.annotations("val")
    eval_data = file_fingerprint(annotations)
    if trained.spec.task == "onestage":
        if cfg.boxes != "gt":
            raise ValueError(
                f"evaluate.boxes is {cfg.boxes!r}, but the model in {train_dir} is one-stage: it finds the people "
                "itself and is scored on whole images; set evaluate.boxes=gt (boxes apply to top-down models)"
            )
        people = predict_images(trained.model, split, cfg.batch_size, dev, flip_test=cfg.flip_test)
        comparison = _topdown_comparison(params, dataset_dir, trained.meta)
        protocol = Protocol(boxes="none", eval_data=eval_data)
        outputs = write_bottomup_report(
            people, split, annotations, trained.meta, cfg, out_dir, comparison=comparison, protocol=protocol
        )
    else:
        protocol = Protocol(boxes="gt", eval_data=eval_data)
        if cfg.boxes != "gt":
            protocol = _detected_boxes(params, trained.meta, eval_data, dev)
        preds = predict_split(trained.model, split, cfg.flip_test, cfg.batch_size, dev)
        outputs = write_report(preds, split, annotations, trained.meta, cfg, out_dir, protocol=protocol)
    if tracker is not None:
        log_to_run(tracker, outputs)
    return outputs


def _detected_boxes(params: Params, meta: DatasetMeta, eval_data: str, device: torch.device) -> Protocol:
    """The trained top-down model run on the val images with ``evaluate.boxes`` (file or model)."""
    from posecore.datasets.coco import CocoPoseDataset
    from posecore.inference.compare import detector_boxes, file_boxes, model_poses, score_with_boxes
    from posecore.inference.detection import load_detector
    from posecore.inference.torch_model import TorchModel

    cfg = params.evaluate
    dataset_dir = Path(params.data.out)
    with tempfile.TemporaryDirectory(prefix="posecore-detector-") as tmp:
        if cfg.boxes == "file":
            if not cfg.bbox_file:
                raise ValueError(
                    "evaluate.boxes is 'file' but evaluate.bbox_file is empty: give a COCO detection-results "
                    "JSON ([{image_id, category_id, bbox: [x, y, w, h], score}]) for the val images"
                )
            source = file_boxes(dataset_dir, meta, cfg.bbox_file, cfg.det_score_thr)
            label, identity = f"file:{cfg.bbox_file}", f"file:{file_fingerprint(cfg.bbox_file)}"
        else:
            where, label, identity = _detector(params, Path(tmp) / "detector")
            source = detector_boxes(load_detector(where, cfg.det_score_thr, device=str(device)))
        if cfg.det_score_thr > 0:
            identity += f",score>={cfg.det_score_thr:g}"
        dataset = CocoPoseDataset(dataset_dir, "val", meta=meta, mode="topdown", test_mode=True)
        model = TorchModel(
            params.train.checkpoint_dir,
            flip_test=cfg.flip_test,
            device=str(device),
            bbox_padding=params.encode.bbox_padding,
        )
        poses = model_poses(model, cfg.batch_size)
        scored: BoxedScore = score_with_boxes(dataset, poses, {"detected": source}, cfg, "detected boxes")["detected"]
    _log.info("%d boxes from %s: AP %.4f", scored.boxes, label, scored.metrics.get("AP", float("nan")))
    return Protocol(boxes=label, eval_data=with_boxes(eval_data, identity), detected=scored)


def _detector(params: Params, pulled: Path) -> tuple[Path, str, str]:
    """``evaluate.detector`` as (a local folder or ONNX file, its label, its identity for the fingerprint).

    A registry reference ("" is this pipeline's one-stage champion) is pulled into ``pulled`` and
    named by its version; a local model by the md5 of its weights (so retraining it changes it).
    """
    ref = params.evaluate.detector or f"{registered_model_name(params.register.model_name, 'onestage')}@champion"
    path = Path(ref)
    if path.exists():
        weights = next((path / n for n in (MODEL_FILE, "best.pt") if (path / n).is_file()), path)
        if weights.is_dir():
            raise ValueError(
                f"evaluate.detector {path} holds no model ({MODEL_FILE} of a bundle or best.pt of a training folder)"
            )
        return path, f"model:{path}", f"model:{file_fingerprint(weights)}"
    try:
        parse_model_ref(ref)
    except ValueError:
        raise FileNotFoundError(
            f"evaluate.detector {ref!r} is neither a file or folder here nor a registry reference (NAME@ALIAS, "
            "NAME/VERSION); give a one-stage bundle or training folder, an ONNX detector, or a registered model"
        ) from None
    client = open_client(params.tracking.tracking_uri or None, params.tracking.connect_timeout_s)
    version = pull(ref, pulled, client=client)
    return pulled, f"model:{ref}", f"model:{version.name}/{version.version}"


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
            from posecore.inference.compare import compare_topdown

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
