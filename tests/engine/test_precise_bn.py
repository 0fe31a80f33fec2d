"""PreciseBN: statistics equal to the by-hand average of batch statistics, frozen layers and
everything else untouched, and in fit(): the validated/checkpointed statistics recomputed while
the weights' trajectory stays that of a run without it."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn

from posecore.engine import fit
from posecore.engine.checkpoint import load_checkpoint
from posecore.engine.optim import freeze_modules
from posecore.engine.precise_bn import precise_bn_batches, recompute_bn_stats


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5, momentum=0.01), nn.Tanh(), nn.Linear(5, 3))


def test_statistics_are_the_average_of_the_batch_statistics() -> None:
    model = _model().eval()
    batches = [torch.randn(8, 6) * (i + 1) + i for i in range(3)]
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    with torch.no_grad():
        feats = [model[0](x) for x in batches]
    mean = torch.stack([f.mean(0) for f in feats]).mean(0)
    var = torch.stack([f.var(0, unbiased=True) for f in feats]).mean(0)

    assert recompute_bn_stats(model, batches) == 1

    bn = model[1]
    torch.testing.assert_close(bn.running_mean, mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var, var, rtol=1e-5, atol=1e-6)
    assert bn.momentum == 0.01 and not model.training
    for k, v in weights.items():
        assert torch.equal(model.state_dict()[k], v), k


def test_frozen_layers_keep_their_statistics_and_the_mode_is_restored() -> None:
    model = nn.Sequential(_model(), nn.BatchNorm1d(3))
    freeze_modules(model, ["0.1"])  # the first BatchNorm is frozen: eval mode at every forward
    frozen = model[0][1]
    frozen.running_mean.fill_(0.5)
    before = frozen.running_mean.clone(), frozen.running_var.clone()
    model.train()

    assert recompute_bn_stats(model, [torch.randn(4, 6) for _ in range(2)]) == 1

    assert torch.equal(frozen.running_mean, before[0]) and torch.equal(frozen.running_var, before[1])
    assert model[1].num_batches_tracked.item() == 2
    assert model.training and model[1].momentum == 0.1


def test_no_batches_is_an_error_and_leaves_the_statistics() -> None:
    model = _model()
    model[1].running_mean.fill_(3.0)
    with pytest.raises(ValueError, match="no batches"):
        recompute_bn_stats(model, [])
    assert torch.all(model[1].running_mean == 3.0)


def test_batches_are_a_seeded_sample_of_the_training_set(toy: ModuleType) -> None:
    data = toy.ToyData(20)
    rng = torch.get_rng_state()
    first = list(precise_bn_batches(data, 12, 5, epoch=1, seed=0, prepare=lambda b: b["inputs"]))
    assert torch.equal(torch.get_rng_state(), rng)
    assert [len(x) for x in first] == [5, 5, 2]
    again = list(precise_bn_batches(data, 12, 5, epoch=1, seed=0, prepare=lambda b: b["inputs"]))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    other = torch.cat(list(precise_bn_batches(data, 12, 5, epoch=2, seed=0, prepare=lambda b: b["inputs"])))
    assert not torch.equal(torch.cat(first), other)
    everything = list(precise_bn_batches(data, 1000, 64, epoch=1, seed=0, prepare=lambda b: b["inputs"]))
    assert sum(len(x) for x in everything) == 20


@pytest.mark.parametrize("ema", [False, True])
def test_fit_validates_recomputed_statistics_and_trains_the_same_weights(
    tmp_path: Path, toy: ModuleType, ema: bool
) -> None:
    seen: dict[str, dict[int, torch.Tensor]] = {"with": {}, "without": {}}

    def run(precise_bn: int, key: str) -> tuple[nn.Module, dict]:
        def validate(model: nn.Module, epoch: int) -> dict[str, float]:
            seen[key][epoch] = model[1].running_mean.clone()
            return toy.validate(model, epoch)

        model = _model()
        cfg = toy.make_cfg(epochs=3, ema=ema, precise_bn=precise_bn, val_interval=1, checkpoint_dir=str(tmp_path / key))
        fit(model, toy.loss_fn, toy.ToyData(), cfg, validate=validate, metric_name="neg_mse")
        return model, load_checkpoint(tmp_path / key / "latest.pt")

    live, ckpt = run(24, "with")
    plain, plain_ckpt = run(0, "without")

    params = [k for k, _ in live.named_parameters()]
    for k in params:  # PreciseBN never changes a weight or the training stream
        assert torch.equal(ckpt["model"][k], plain_ckpt["model"][k]), k
        if ema:
            assert torch.equal(ckpt["ema"]["module"][k], plain_ckpt["ema"]["module"][k]), k
    assert all(not torch.equal(seen["with"][e], seen["without"][e]) for e in (1, 2, 3))

    # the last validation saw (and the checkpoint holds) statistics recomputed for the validated weights
    validated = _model()
    validated.load_state_dict(ckpt["ema"]["module"] if ema else ckpt["model"])
    data = toy.ToyData()
    recompute_bn_stats(validated, precise_bn_batches(data, 24, 4, epoch=2, seed=0, prepare=lambda b: b["inputs"]))
    torch.testing.assert_close(validated[1].running_mean, seen["with"][3])
    stored = ckpt["ema"]["module"] if ema else ckpt["model"]
    torch.testing.assert_close(stored["1.running_mean"], seen["with"][3])
