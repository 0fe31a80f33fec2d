"""Training engine, generic over models and data: configuration, seeding, optimizer and LR
schedule, EMA, checkpoints, torch.distributed, the global-batch sampler and :func:`fit`.

Each concern is one module; :func:`posecore.engine.trainer.fit` composes them.
"""

from posecore.engine.config import TrainConfig, check_train_config
from posecore.engine.step import TrainData, TrainLogger
from posecore.engine.trainer import FitResult, fit

__all__ = ["FitResult", "TrainConfig", "TrainData", "TrainLogger", "check_train_config", "fit"]
