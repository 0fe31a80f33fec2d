"""TrainConfig: cross-field checks, and parsing by posecore.config like any params section."""

from __future__ import annotations

import dataclasses

from posecore.engine.config import TrainConfig, check_train_config


def test_defaults_are_valid() -> None:
    assert check_train_config(TrainConfig()) == []


def test_cross_field_problems_name_keys_and_fixes() -> None:
    errors = check_train_config(
        TrainConfig(global_batch_size=100, batch_size_per_device=32, nproc=2, milestones=(5, 3))
    )
    assert any("train.global_batch_size (100)" in e and "64 or 128" in e for e in errors)
    assert any("train.milestones" in e for e in errors)


def test_parsed_by_the_params_loader() -> None:
    # the lead plugs TrainConfig into Params as `train:`; its field types must be ones posecore.config parses
    from posecore import config

    errors: list[str] = []
    raw = {"optimizer": "sgd", "milestones": [3, 6], "freeze": ["backbone"], "lr": 1, "amp": "bf16"}
    cfg = config._build(TrainConfig, raw, "train", errors)
    assert errors == []
    assert cfg.milestones == (3, 6) and cfg.freeze == ("backbone",) and cfg.lr == 1.0
    config._build(TrainConfig, {"optimizer": "lamb", "ema_momentum": 2.0, "epochs": 0}, "train", errors)
    assert len(errors) == 3 and any("train.optimizer" in e for e in errors)
    assert all(f.type for f in dataclasses.fields(TrainConfig))
