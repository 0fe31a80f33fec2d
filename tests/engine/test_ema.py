"""ExpMomentumEMA: golden live-model weights per update, the update rule, buffers, state and swapping."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from posecore.engine.ema import ModelEMA, ema_weight


@pytest.mark.parametrize(
    ("updates", "expected"),
    [
        (0, 0.9998 * 0.999500124979169 + 0.0002),  # exp(-1/2000)
        (1, 0.9998 * 0.999000499833375 + 0.0002),  # exp(-2/2000)
        (1999, 0.9998 * 0.36787944117144233 + 0.0002),  # exp(-1)
        (100_000, 0.0002),  # settles at the momentum
    ],
)
def test_weight_golden_rtmpose_defaults(updates: int, expected: float) -> None:
    assert ema_weight(updates, momentum=0.0002, gamma=2000) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))


def _perturb(model: nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)
        model[1].running_mean.fill_(value)
        model[1].num_batches_tracked.fill_(int(value * 10))


def test_first_update_copies_then_exponential_momentum() -> None:
    model = _model()
    ema = ModelEMA(model, momentum=0.1, gamma=4.0, update_buffers=True)
    _perturb(model, 1.0)
    ema.update(model)  # update 0: a copy
    assert torch.equal(ema.module[0].weight, model[0].weight)
    _perturb(model, 3.0)
    ema.update(model)  # update 1: avg = (1 - w) * 1 + w * 3
    w = 0.9 * torch.exp(torch.tensor(-2 / 4.0)).item() + 0.1
    assert ema.module[0].weight.flatten()[0].item() == pytest.approx(1 + 2 * w, rel=1e-6)
    assert ema.module[1].running_mean[0].item() == pytest.approx(1 + 2 * w, rel=1e-6)  # buffers averaged too
    assert ema.module[1].num_batches_tracked.item() == 30  # integer buffers copied
    assert ema.updates == 2
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_buffers_copied_without_update_buffers() -> None:
    model = _model()
    ema = ModelEMA(model, momentum=0.1, gamma=4.0, update_buffers=False)
    _perturb(model, 1.0)
    ema.update(model)
    _perturb(model, 3.0)
    ema.update(model)
    assert ema.module[1].running_mean[0].item() == 3.0
    assert ema.module[0].weight.flatten()[0].item() < 3.0


def test_state_dict_round_trip_and_swap() -> None:
    model = _model()
    ema = ModelEMA(model, momentum=0.1, gamma=4.0)
    for v in (1.0, 2.0, 5.0):
        _perturb(model, v)
        ema.update(model)
    other = ModelEMA(_model(), momentum=0.1, gamma=4.0)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 3
    assert all(
        torch.equal(a, b)
        for a, b in zip(other.module.state_dict().values(), ema.module.state_dict().values(), strict=True)
    )

    live = {k: v.clone() for k, v in model.state_dict().items()}
    with ema.swapped_into(model) as swapped:
        assert swapped is model
        assert torch.equal(model[0].weight, ema.module[0].weight)
    assert all(torch.equal(live[k], v) for k, v in model.state_dict().items())
    with pytest.raises(RuntimeError), ema.swapped_into(model):
        raise RuntimeError("evaluation failed")
    assert all(torch.equal(live[k], v) for k, v in model.state_dict().items())
