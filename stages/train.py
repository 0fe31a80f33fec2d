"""Stage ``train``: the cached dataset -> a trained model (``train.checkpoint_dir``), logged to MLflow.

Runs in one process, or under ``torchrun`` when ``train.nproc > 1`` (this module re-launches
itself; with ``--nnodes``/``--node-rank``/``--master-addr``/``--master-port`` it joins a
multi-node job). Writes ``best.pt``/``latest.pt`` and ``model.json`` (the resolved model and
dataset meta, so later stages rebuild the exact model), ``train_metrics.json`` (DVC metrics),
``train_history.csv`` (DVC plots) and the MLflow run id for the stages that follow.

``model.init`` starts from other weights (a checkpoint, a bundle, a registry model; see
:mod:`posecore.registry.warm_start`): applied after the model is built (ImageNet backbone
included) and before the optimizer exists, never on ``--resume`` (``latest.pt`` restores its
own weights). ``from: champion`` is the champion of ``register.model_name`` for the model's task
(none yet: a cold start). The report goes to the log, to the run's metrics ``init/<category>``
(counts), its lineage tags (``posecore.init.source``, and ``posecore.parent.version`` /
``posecore.parent.run_id`` when known, which the register stage copies onto the new version)
and artifact ``init_report.json``.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from posecore.codecs import Codec
from posecore.config import Params
from posecore.data.cache import CachedTopdownData, cache_key, open_cache
from posecore.data.images import CachedImageData
from posecore.datasets.layout import DatasetLayout
from posecore.engine import FitResult, fit
from posecore.engine.distributed import get_rank, launch, launched_by_torchrun, session
from posecore.engine.history import History, finish_training_run
from posecore.engine.seed import seed_everything
from posecore.engine.step import TrainData, ValidateFn
from posecore.evaluation.bottomup import make_bottomup_validator
from posecore.evaluation.topdown import make_validator
from posecore.experiment import MlflowRun, NullLogger, make_logger, read_run_id_file, resolve_tracking_uri
from posecore.export.trained import RUN_ID_FILE, write_model_description
from posecore.io import atomic_write_json
from posecore.metainfo import DatasetMeta, load_meta
from posecore.models.estimator import PoseEstimator, build_estimator
from posecore.models.init import InitReport
from posecore.registry.warm_start import lineage_tags, warm_start
from posecore.transforms import Normalize, image_train_pipeline, topdown_train_pipeline

REPO = Path(__file__).resolve().parents[1]
_log = logging.getLogger("stages.train")


@dataclass
class TrainOutputs:
    checkpoint_dir: Path
    result: FitResult
    run_id: str | None


def _data_and_validator(
    params: Params, cache: dict[str, Any], meta: DatasetMeta, codec: Codec, layout: DatasetLayout
) -> tuple[TrainData, ValidateFn]:
    """Cached crops + top-down validation, or (one-stage) cached whole images + bottom-up validation."""
    gt_file = layout.annotations("val")
    if codec.task == "onestage":
        pipeline = image_train_pipeline(meta, codec, params.augment)
        data: TrainData = CachedImageData(cache["train"], pipeline, seed=params.train.seed)
        return data, make_bottomup_validator(cache["val"], gt_file, meta, params.evaluate)
    pipeline = topdown_train_pipeline(meta, codec, aug=params.augment, normalize=None, keep_uint8=True)
    data = CachedTopdownData(cache["train"], pipeline, seed=params.train.seed)
    return data, make_validator(cache["val"], gt_file, meta, params.evaluate)


SMALL_DATASET = 10_000
"""Below this many training samples of real data, a cold start gets the synthetic-pretraining hint."""


def _warm_start(
    params: Params, model: PoseEstimator, meta: DatasetMeta, resume: Path | None, train_size: int
) -> InitReport | None:
    """``model.init`` into ``model`` (every rank alike), or None: none asked, or resuming."""
    if not params.model.init.enabled:
        if resume is None and params.data.source != "synthetic" and train_size < SMALL_DATASET and get_rank() == 0:
            _log.info(
                "%d training samples and no model.init: small datasets usually do better fine-tuned from a model "
                "trained on the embedded synthetic people (README, 'Small datasets'): "
                "-S model.init.from=posecore-pose@champion",
                train_size,
            )
        return None
    if resume is not None:
        _log.info(
            "model.init.from %r ignored: resuming from %s restores its own weights", params.model.init.source, resume
        )
        return None
    uri = resolve_tracking_uri(params.tracking, REPO)
    report = warm_start(
        model,
        params.model.init,
        meta.keypoint_names,
        tracking_uri=uri,
        model_name=params.register.model_name,
        task=model.task,
    )
    if report is not None and get_rank() == 0:
        _log.info("%s", report.summary())
    return report


def _log_init_report(logger: MlflowRun | NullLogger, report: InitReport) -> None:
    logger.log_metrics({f"init/{name}": float(n) for name, n in report.counts().items()}, 0)
    logger.set_tags(lineage_tags(report))
    with tempfile.TemporaryDirectory(prefix="posecore-init-") as tmp:
        logger.log_artifact(atomic_write_json(Path(tmp) / "init_report.json", report.to_dict(), indent=2))


def run(params: Params, resume: Path | None = None, device: str | None = None) -> TrainOutputs:
    """Train the configured model on ``encode.out``; rank 0 writes outputs to ``train.checkpoint_dir``.

    Fails before training when the MLflow tracking server cannot be reached.
    """
    out = Path(params.train.checkpoint_dir)
    seed_everything(params.train.seed, params.train.deterministic)
    dataset_dir = Path(params.data.out)
    layout = DatasetLayout(dataset_dir)
    meta = load_meta(layout.meta)
    spec = params.model.spec()
    codec = spec.build_codec()
    cache = open_cache(Path(params.encode.out), cache_key(dataset_dir, params.encode, codec))
    previous_run = None
    if resume is not None and (out / RUN_ID_FILE).is_file():
        previous_run = read_run_id_file(out / RUN_ID_FILE)["run_id"]
    tracker = make_logger(
        params.tracking, params, REPO, get_rank(), out / RUN_ID_FILE, run_id=previous_run, task=codec.task
    )
    # channels_last: 2-4x faster depthwise convolutions on CPUs, and the layout AMP kernels want on GPUs.
    model = build_estimator(spec, meta).to(memory_format=torch.channels_last)
    init_report = _warm_start(
        params, model, meta, resume, len(cache["train"])
    )  # before fit() builds the optimizer and EMA
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    # Batches stay uint8 until they reach the device, where they are normalised (MMPose's data
    # preprocessor): a quarter of the bytes through the DataLoader and the host-to-device copy.
    data, validate = _data_and_validator(params, cache, meta, codec, layout)

    def loss_fn(outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return model.loss(outputs, batch["targets"])

    with tracker as logger:
        if init_report is not None:
            _log_init_report(logger, init_report)
        history = History(logger)
        result = fit(
            model,
            loss_fn,
            data,
            params.train,
            validate=validate,
            metric_name=params.evaluate.metric,
            higher_is_better=params.evaluate.higher_is_better,
            logger=history,
            resume=resume,
            device=dev,
            preprocess=Normalize(model.mean, model.std).inputs,
        )
        if get_rank() != 0:
            return TrainOutputs(out, result, None)
        model_json, meta_yaml = write_model_description(out, spec, meta.name, layout.meta)
        finish_training_run(logger, out, history, result, params.evaluate.metric, [model_json, meta_yaml])
        return TrainOutputs(out, result, getattr(logger, "run_id", None))


def main(argv: Sequence[str] | None = None) -> int:
    from stages._cli import stage_main, stage_parser

    parser = stage_parser(__doc__ or "")
    parser.add_argument("--resume", nargs="?", const="auto", default=None, help="continue from latest.pt")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    parser.add_argument("--nnodes", type=int, default=1)
    parser.add_argument("--node-rank", type=int, default=0)
    parser.add_argument("--master-addr", default=None)
    parser.add_argument("--master-port", type=int, default=None)
    args = parser.parse_args(argv)

    def body(params: Params) -> None:
        if params.train.nproc > 1 and not launched_by_torchrun():
            passthrough = [a for a in (argv if argv is not None else sys.argv[1:])]
            code = launch(
                ["-m", "stages.train", *passthrough],
                params.train.nproc,
                nnodes=args.nnodes,
                node_rank=args.node_rank,
                master_addr=args.master_addr,
                master_port=args.master_port,
            )
            if code:
                raise SystemExit(code)
            return
        resume = None
        if args.resume == "auto":
            resume = Path(params.train.checkpoint_dir) / "latest.pt"
        elif args.resume:
            resume = Path(args.resume)
        with session():
            outputs = run(params, resume, args.device)
        if get_rank() == 0:
            print(json.dumps({"best": outputs.result.best_metric, "epoch": outputs.result.best_epoch}))

    return stage_main(__doc__ or "", body, argv, parser)


if __name__ == "__main__":
    sys.exit(main())
