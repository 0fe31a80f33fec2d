"""The 3D lifting pipeline's settings (params.yaml ``lift:``) and its training run.

``lift:`` is its own stage group in ``dvc.yaml`` (``data3d -> train3d / baseline3d -> evaluate3d
-> export3d -> register3d``), independent of the 2D stages: a lifter learns from 2D keypoint
sequences paired with 3D joints (:mod:`posecore.datasets.pose3d.format`), the embedded synthetic
motion (:mod:`posecore.datasets.synthetic.motion3d`) or a converted Human3.6M.

:func:`train_lifter` trains one lifter with the generic engine (:func:`posecore.engine.fit`:
the same optimizer, schedule, checkpoints, resume, DDP and MLflow logging as the 2D models) on
windows cut from the encoded training sequences (:class:`posecore.data.lifting.LiftingWindows`,
mirrored with ``flip_prob``), with the MPJPE loss (MMPose's ``MPJPELoss``; VideoPose3D's
objective), and validates (the caller's validator: whole held-out sequences; lower MPJPE is better; best.pt keeps the
lowest). A temporal lifter trains in its strided form (``use_stride_conv``: one output per
window, the frames it does not need skipped) and is evaluated in its dilated form.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from posecore.data.lifting import EncodedSequences, LiftingWindows
from posecore.datasets.synthetic.motion3d import Motion3DParams
from posecore.engine.config import Optimizer, Schedule, TrainConfig
from posecore.engine.step import TrainLogger, ValidateFn
from posecore.engine.trainer import FitResult, fit
from posecore.io import atomic_write_json
from posecore.metainfo import DatasetMeta
from posecore.models.lifting import Lifter
from posecore.models.lifting.builders import available_lifters
from posecore.models.lifting.config import LifterParams
from posecore.models.losses.lifting import MPJPELoss

__all__ = [
    "LIFT_MODEL_JSON",
    "BaselineLifterParams",
    "LiftParams",
    "LiftTrainConfig",
    "load_trained_lifter",
    "read_lifter_description",
    "train_lifter",
    "write_lifter_description",
]

LIFT_MODEL_JSON = "model.json"
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiftTrainConfig(TrainConfig):
    """``lift.train``: :class:`TrainConfig` with defaults for lifters (VideoPose3D's Adam, at batch 512
    instead of 1024, a cosine decay in place of its 0.95-per-epoch steps: about 7 minutes on two CPU
    cores for the default TCN-27); keys left out keep these."""

    epochs: int = field(default=30, metadata={"range": (1, 100_000)})
    global_batch_size: int = field(default=512, metadata={"range": (1, 1_000_000)})
    batch_size_per_device: int = field(default=512, metadata={"range": (1, 1_000_000)})
    optimizer: Optimizer = "adam"
    lr: float = field(default=2e-3, metadata={"range": (0.0, 100.0)})
    schedule: Schedule = "cosine"
    milestones: tuple[int, ...] = ()
    min_lr_ratio: float = field(default=0.02, metadata={"range": (0.0, 1.0)})
    warmup_iters: int = field(default=50, metadata={"range": (0, 10_000_000)})
    val_interval: int = field(default=5, metadata={"range": (1, 100_000)})
    checkpoint_dir: str = "models/lift"
    log_interval: int = field(default=20, metadata={"range": (1, 10_000_000)})


@dataclass(frozen=True)
class BaselineLifterParams(LifterParams):
    """``lift.baseline``: the per-frame lifter reported beside the temporal one (MMPose's SimpleBaseline3D,
    at 512 channels instead of 1024 to fit a CPU budget)."""

    name: str = field(default="simplebaseline3d", metadata={"choices": available_lifters})
    channels: int = field(default=512, metadata={"range": (1, 65536)})
    dropout: float = field(default=0.5, metadata={"range": (0.0, 0.99)})


@dataclass(frozen=True)
class LiftParams:
    """params.yaml ``lift:`` (the comments there explain each key)."""

    source: Literal["synthetic", "h36m"] = "synthetic"
    root: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    cameras: str = ""
    data: str = "data/motion3d"
    meta: str = "h36m"
    synth: Motion3DParams = field(default_factory=Motion3DParams)
    model: LifterParams = field(default_factory=LifterParams)
    baseline: BaselineLifterParams = field(default_factory=BaselineLifterParams)
    baseline_epochs: int = field(default=10, metadata={"range": (1, 100_000)})
    baseline_dir: str = "models/lift_baseline"
    flip_prob: float = field(default=0.5, metadata={"range": (0.0, 1.0)})
    flip_test: bool = True
    train: LiftTrainConfig = field(default_factory=LiftTrainConfig)
    out: str = "reports/lift"
    bundle: str = "models/lift_bundle"
    parity_atol_mm: float = field(default=0.1, metadata={"range": (0.0, 1e6)})
    export_metrics: str = "reports/lift_export.json"
    register_out: str = "reports/lift_register.json"


def write_lifter_description(out: Path, lifter: LifterParams, meta: DatasetMeta) -> Path:
    """``model.json`` of a trained lifter: its params (what it reads) and the joints it lifts."""
    described = {
        "task": "lifting",
        "lifter": lifter.to_dict(),
        "meta": meta.name,
        "keypoints": list(meta.keypoint_names),
        "flip_indices": list(meta.flip_indices),
        "skeleton": [list(link) for link in meta.skeleton_indices],
    }
    return atomic_write_json(out / LIFT_MODEL_JSON, described, indent=2)


def read_lifter_description(train_dir: Path) -> dict[str, Any]:
    path = train_dir / LIFT_MODEL_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: train a lifter first (`dvc repro train3d`)")
    described = json.loads(path.read_text())
    if described.get("task") != "lifting":
        raise ValueError(f"{path} does not describe a lifter (task {described.get('task')!r})")
    return described


def train_lifter(
    lifter_params: LifterParams,
    cfg: TrainConfig,
    meta: DatasetMeta,
    train: EncodedSequences,
    validate: ValidateFn | None,
    *,
    flip_prob: float,
    logger: TrainLogger | None = None,
    resume: Path | None = None,
    device: torch.device | str | None = None,
) -> tuple[Lifter, FitResult]:
    """Train ``lifter_params``' lifter on ``train`` windows (module docstring).

    ``validate(lifter, epoch)`` must return ``"MPJPE"`` (lower is better; best.pt keeps the lowest):
    :func:`posecore.evaluation.lifting.make_lifting_validator` scores whole held-out sequences.

    Returns the trained lifter (the last epoch's weights; ``best.pt`` has the best) and the fit result.
    """
    lifter = lifter_params.build(meta.num_keypoints, use_stride_conv=lifter_params.temporal)
    flips = list(meta.flip_indices)
    data = LiftingWindows(
        train,
        lifter.codec,
        receptive_field=lifter.receptive_field,
        causal=lifter.causal,
        flip_indices=flips,
        flip_prob=flip_prob,
        seed=cfg.seed,
    )
    loss = MPJPELoss()

    def loss_fn(outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"mpjpe": loss(outputs, batch["joints_3d"], batch["keypoint_weights"])}

    _log.info(
        "training %s (%d parameters) on %d frames of %d sequences",
        lifter_params.name,
        sum(p.numel() for p in lifter.parameters()),
        train.num_frames,
        len(train.lengths),
    )
    result = fit(
        lifter,
        loss_fn,
        data,
        cfg,
        validate=validate,
        metric_name="MPJPE",
        higher_is_better=False,
        logger=logger,
        resume=resume,
        device=device,
    )
    return lifter, result


def load_trained_lifter(train_dir: str | Path, checkpoint: str = "best.pt") -> tuple[Lifter, dict[str, Any]]:
    """Rebuild a trained lifter from ``train_dir`` (``model.json`` + ``checkpoint``), in eval mode and its
    inference (dilated) form; also returns the description (joint names, flip indices, lifter params)."""
    from posecore.engine.checkpoint import inference_state_dict, load_checkpoint

    train_dir = Path(train_dir)
    described = read_lifter_description(train_dir)
    params = LifterParams.from_dict(described["lifter"])
    lifter = params.build(len(described["keypoints"]))
    state = inference_state_dict(load_checkpoint(train_dir / checkpoint))
    try:
        lifter.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(
            f"{train_dir / checkpoint} does not fit the lifter in {train_dir / LIFT_MODEL_JSON}: {exc}"
        ) from exc
    return lifter.eval(), described
