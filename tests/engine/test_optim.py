"""Parameter groups (no decay on norm/bias), layer-wise freezing, BatchNorm kept in eval."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from posecore.engine.config import TrainConfig, check_train_config
from posecore.engine.optim import build_optimizer, freeze_modules
from posecore.engine.schedule import build_scheduler


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        self.neck = nn.Sequential(nn.Conv2d(4, 4, 1, bias=False), nn.GroupNorm(2, 4))
        self.head = nn.Conv2d(4, 2, 1)
        self.head_alias = self.head  # a shared module: its parameters must be added once

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.neck(self.backbone(x)))


def _names(model: nn.Module, params: list[nn.Parameter]) -> set[str]:
    by_id = {id(p): n for n, p in model.named_parameters()}
    return {by_id[id(p)] for p in params}


def test_norm_and_bias_without_decay() -> None:
    model = Net()
    opt = build_optimizer(model, TrainConfig(optimizer="adamw", weight_decay=0.05, lr=1e-3))
    assert isinstance(opt, torch.optim.AdamW)
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["decay"]["weight_decay"] == 0.05 and groups["no_decay"]["weight_decay"] == 0.0
    assert _names(model, groups["decay"]["params"]) == {"backbone.0.weight", "neck.0.weight", "head.weight"}
    assert _names(model, groups["no_decay"]["params"]) == {
        "backbone.0.bias",
        "backbone.1.weight",
        "backbone.1.bias",
        "neck.1.weight",
        "neck.1.bias",
        "head.bias",
    }


def test_single_group_when_option_off_and_optimizer_kinds() -> None:
    model = Net()
    opt = build_optimizer(
        model, TrainConfig(optimizer="sgd", momentum=0.8, weight_decay=1e-4, no_decay_norm_bias=False)
    )
    assert isinstance(opt, torch.optim.SGD)
    assert [g["name"] for g in opt.param_groups] == ["decay"]
    assert opt.param_groups[0]["momentum"] == 0.8
    assert len(opt.param_groups[0]["params"]) == len(list(model.parameters()))
    assert isinstance(build_optimizer(model, TrainConfig(optimizer="adam")), torch.optim.Adam)


def test_frozen_prefixes_are_not_trained_nor_in_the_optimizer() -> None:
    model = Net()
    frozen = freeze_modules(model, ["backbone", "neck.1"])
    assert set(frozen) == {"backbone.0.weight", "backbone.0.bias", "backbone.1.weight", "backbone.1.bias"} | {
        "neck.1.weight",
        "neck.1.bias",
    }
    assert all(not p.requires_grad for n, p in model.named_parameters() if n in frozen)
    assert model.neck[0].weight.requires_grad and model.head.weight.requires_grad
    opt = build_optimizer(model, TrainConfig())
    in_opt = _names(model, [p for g in opt.param_groups for p in g["params"]])
    assert in_opt == {"neck.0.weight", "head.weight", "head.bias"}

    model.train()
    model(torch.randn(2, 3, 8, 8))
    assert not model.backbone.training and not model.backbone[1].training  # frozen modules stay in eval
    assert model.neck.training and model.head.training


def test_unknown_prefix_is_an_error_listing_modules() -> None:
    with pytest.raises(ValueError, match=r"no module named \['backbon'\].*backbone, neck, head"):
        freeze_modules(Net(), ["backbon"])


def test_freeze_bn_keeps_running_stats_fixed_but_trains_affine() -> None:
    model = Net()
    freeze_modules(model, [], freeze_bn=True)
    bn = model.backbone[1]
    before = bn.running_mean.clone()
    model.train()  # as a trainer does at every epoch
    out = model(torch.randn(4, 3, 8, 8) + 5.0)
    assert not bn.training
    assert torch.equal(bn.running_mean, before)
    assert bn.weight.requires_grad
    out.sum().backward()
    assert bn.weight.grad is not None
    assert model.neck[1].training  # GroupNorm is not BatchNorm


def test_lr_mult_gives_the_longest_matching_prefix_its_factor_and_the_schedule_keeps_it() -> None:
    model = Net()
    cfg = TrainConfig(
        optimizer="adamw", lr=1e-3, weight_decay=0.05, lr_mult={"head": 10.0, "backbone": 0.5, "backbone.1": 2.0}
    )
    opt = build_optimizer(model, cfg)
    groups = {g["name"]: g for g in opt.param_groups}
    assert list(groups) == [
        "decay",
        "no_decay",
        "decay@backbone",
        "no_decay@backbone",
        "no_decay@backbone.1",
        "decay@head",
        "no_decay@head",
    ]
    assert _names(model, groups["decay"]["params"]) == {"neck.0.weight"}
    assert _names(model, groups["no_decay"]["params"]) == {"neck.1.weight", "neck.1.bias"}
    assert _names(model, groups["decay@backbone"]["params"]) == {"backbone.0.weight"}
    assert _names(model, groups["no_decay@backbone"]["params"]) == {"backbone.0.bias"}
    assert _names(model, groups["no_decay@backbone.1"]["params"]) == {"backbone.1.weight", "backbone.1.bias"}
    assert _names(model, groups["decay@head"]["params"]) == {"head.weight"}
    lrs = {name: g["lr"] for name, g in groups.items()}
    assert lrs == pytest.approx(
        {
            "decay": 1e-3,
            "no_decay": 1e-3,
            "decay@backbone": 5e-4,
            "no_decay@backbone": 5e-4,
            "no_decay@backbone.1": 2e-3,
            "decay@head": 1e-2,
            "no_decay@head": 1e-2,
        }
    )
    assert groups["decay@head"]["weight_decay"] == 0.05 and groups["no_decay@head"]["weight_decay"] == 0.0
    # every parameter once, in one group
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    # the schedule scales each group's own rate
    sched = build_scheduler(opt, 100, cfg)
    for _ in range(30):
        opt.step()
        sched.step()
    ratio = {g["name"]: g["lr"] / lrs[g["name"]] for g in opt.param_groups}
    assert len({round(r, 12) for r in ratio.values()}) == 1 and 0 < next(iter(ratio.values())) < 1


def test_lr_mult_refuses_unknown_modules_and_bad_factors() -> None:
    with pytest.raises(ValueError, match=r"train.lr_mult: no module named \['heads'\].*backbone, neck, head"):
        build_optimizer(Net(), TrainConfig(lr_mult={"heads": 10.0}))
    errors = check_train_config(TrainConfig(lr_mult={"head": 0.0, ".neck": 1.0}))
    assert any("train.lr_mult.head (0.0) must be a number > 0" in e for e in errors)
    assert any("train.lr_mult key '.neck'" in e for e in errors)


@pytest.mark.parametrize("kind", ["adamw", "adam", "sgd"])
def test_optimizers_are_fused_on_cpu_and_update_like_the_per_parameter_loop(kind: str) -> None:
    cfg = TrainConfig(optimizer=kind, lr=1e-2, weight_decay=0.05, momentum=0.9)

    def net() -> nn.Module:  # no bias right before a BatchNorm: its gradient is rounding noise, which Adam amplifies
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))

    fused_model, loop_model = net(), net()
    loop_model.load_state_dict(fused_model.state_dict())
    fused = build_optimizer(fused_model, cfg)
    assert all(g["fused"] for g in fused.param_groups)
    loop = type(fused)(
        [
            {**g, "params": [dict(loop_model.named_parameters())[n] for n in _ordered(fused_model, g["params"])]}
            | {"fused": False}
            for g in fused.param_groups
        ]
    )
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        for model, opt in ((fused_model, fused), (loop_model, loop)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for (name, a), b in zip(fused_model.state_dict().items(), loop_model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def _ordered(model: nn.Module, params: list[nn.Parameter]) -> list[str]:
    by_id = {id(p): n for n, p in model.named_parameters()}
    return [by_id[id(p)] for p in params]
