"""Stage ``train3d`` (and ``baseline3d`` with ``--baseline``): the 3D lifting data -> a trained lifter, logged to MLflow.

Trains ``lift.model`` (``--baseline``: the per-frame ``lift.baseline`` for ``lift.baseline_epochs``
epochs) on the ``train`` sequences of ``lift.data`` and validates on its ``val`` sequences
(:func:`posecore.engine.lifting.train_lifter`). Writes into ``lift.train.checkpoint_dir``
(``--baseline``: ``lift.baseline_dir``) ``best.pt`` (lowest val MPJPE), ``latest.pt``,
``model.json`` (the lifter and its joints, so later stages rebuild it), ``train_metrics.json``,
``train_history.csv`` and the MLflow run id. The run is tagged ``posecore.task=lifting``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from posecore.config import Params
from posecore.data.lifting import encode_sequences
from posecore.datasets.pose3d.format import load_sequences
from posecore.engine import FitResult
from posecore.engine.config import TrainConfig
from posecore.engine.history import History, finish_training_run
from posecore.engine.lifting import train_lifter, write_lifter_description
from posecore.engine.seed import seed_everything
from posecore.evaluation.lifting import make_lifting_validator
from posecore.experiment import make_logger, read_run_id_file
from posecore.export.trained import RUN_ID_FILE
from posecore.metainfo import load_meta
from posecore.models.lifting.config import LifterParams

REPO = Path(__file__).resolve().parents[1]
_log = logging.getLogger("stages.train3d")


@dataclass
class Train3DOutputs:
    checkpoint_dir: Path
    result: FitResult
    run_id: str | None


def lifter_and_config(params: Params, baseline: bool) -> tuple[LifterParams, TrainConfig]:
    """The lifter this run trains and its training settings (the baseline's: its epochs and folder)."""
    lift = params.lift
    if not baseline:
        return lift.model, lift.train
    return lift.baseline, dataclasses.replace(lift.train, epochs=lift.baseline_epochs, checkpoint_dir=lift.baseline_dir)


def run(
    params: Params, baseline: bool = False, resume: Path | None = None, device: str | None = None
) -> Train3DOutputs:
    lift = params.lift
    lifter_params, cfg = lifter_and_config(params, baseline)
    out = Path(cfg.checkpoint_dir)
    seed_everything(cfg.seed, cfg.deterministic)
    meta = load_meta(lift.meta)
    codec = lifter_params.build_codec(meta.num_keypoints)
    splits = {s: encode_sequences(codec, load_sequences(Path(lift.data) / s)) for s in ("train", "val")}
    previous_run = None
    if resume is not None and (out / RUN_ID_FILE).is_file():
        previous_run = read_run_id_file(out / RUN_ID_FILE)["run_id"]
    stage = "baseline3d" if baseline else "train3d"
    tracker = make_logger(
        params.tracking, params, REPO, 0, out / RUN_ID_FILE, run_id=previous_run, stage=stage, task="lifting"
    )
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    with tracker as logger:
        history = History(logger)
        _, result = train_lifter(
            lifter_params,
            cfg,
            meta,
            splits["train"],
            make_lifting_validator(splits["val"], meta.keypoint_names, meta.flip_indices if lift.flip_test else None),
            flip_prob=lift.flip_prob,
            logger=history,
            resume=resume,
            device=dev,
        )
        model_json = write_lifter_description(out, lifter_params, meta)
        finish_training_run(logger, out, history, result, "MPJPE", [model_json])
        return Train3DOutputs(out, result, getattr(logger, "run_id", None))


def main(argv: Sequence[str] | None = None) -> int:
    from stages._cli import stage_main, stage_parser

    parser = stage_parser(__doc__ or "")
    parser.add_argument("--baseline", action="store_true", help="train lift.baseline (the per-frame lifter)")
    parser.add_argument("--resume", nargs="?", const="auto", default=None, help="continue from latest.pt")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    args = parser.parse_args(argv)

    def body(params: Params) -> None:
        _, cfg = lifter_and_config(params, args.baseline)
        resume = None
        if args.resume == "auto":
            resume = Path(cfg.checkpoint_dir) / "latest.pt"
        elif args.resume:
            resume = Path(args.resume)
        outputs = run(params, args.baseline, resume, args.device)
        print(json.dumps({"best_MPJPE": outputs.result.best_metric, "epoch": outputs.result.best_epoch}))

    return stage_main(__doc__ or "", body, argv, parser)


if __name__ == "__main__":
    sys.exit(main())
