"""Golden values of the per-iteration LR factor, and the LambdaLR built on it."""

from __future__ import annotations

import math

import pytest
import torch

from posecore.engine.config import TrainConfig
from posecore.engine.schedule import build_scheduler, lr_factor

COSINE = TrainConfig(epochs=11, warmup_iters=10, warmup_ratio=0.1, schedule="cosine", min_lr_ratio=0.05)
STEP = TrainConfig(epochs=10, warmup_iters=3, warmup_ratio=0.5, schedule="step", milestones=(5, 8), gamma=0.1)


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (0, 0.1),  # warm-up starts at warmup_ratio
        (5, 0.55),  # halfway: 0.1 + 0.9 / 2
        (10, 1.0),  # warm-up done, cosine at t=0
        (35, 0.05 + 0.95 * (1 + math.sqrt(0.5)) / 2),  # t = 1/4
        (60, 0.525),  # t = 1/2: halfway between 1 and 0.05
        (110, 0.05),  # end: min_lr_ratio
        (500, 0.05),  # clamped past the end
    ],
)
def test_cosine_with_warmup(step: int, expected: float) -> None:
    assert lr_factor(step, 110, COSINE) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("step", "expected"),
    [(0, 0.5), (1, 0.5 + 0.5 / 3), (3, 1.0), (49, 1.0), (50, 0.1), (79, 0.1), (80, 0.01), (99, 0.01)],
)
def test_step_decay_at_epoch_milestones(step: int, expected: float) -> None:
    # 10 epochs x 10 steps: milestones at epochs 5 and 8 are steps 50 and 80 (MMPose MultiStepLR by epoch)
    assert lr_factor(step, 100, STEP) == pytest.approx(expected, abs=1e-12)


def test_constant_without_warmup() -> None:
    cfg = TrainConfig(schedule="constant", warmup_iters=0)
    assert {lr_factor(s, 1000, cfg) for s in (0, 1, 500, 999)} == {1.0}


def test_lambda_lr_follows_the_pure_function() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.2)
    sched = build_scheduler(opt, 110, COSINE)
    for step in range(40):
        # the LR in the optimizer is the one optimizer step `step` uses
        assert opt.param_groups[0]["lr"] == pytest.approx(0.2 * lr_factor(step, 110, COSINE), abs=1e-12)
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2 = torch.optim.SGD([param], lr=0.2)
    sched2 = build_scheduler(opt2, 110, COSINE)
    sched2.load_state_dict(state)
    opt2.load_state_dict(opt.state_dict())
    assert sched2.last_epoch == 40
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.2 * lr_factor(40, 110, COSINE), abs=1e-12)
