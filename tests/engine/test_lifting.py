"""Training a lifter with the generic engine: it learns, best.pt rebuilds it, and the ``lift:`` params parse."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from posecore.config import ConfigError, load_params, parse_params
from posecore.data.lifting import encode_sequences
from posecore.datasets.synthetic.motion3d import Motion3DParams, generate_splits
from posecore.engine.lifting import (
    LiftTrainConfig,
    load_trained_lifter,
    read_lifter_description,
    train_lifter,
    write_lifter_description,
)
from posecore.evaluation.lifting import evaluate_sequences, make_lifting_validator
from posecore.metainfo import load_meta
from posecore.models.lifting.config import LifterParams

META = load_meta("h36m")
TINY = Motion3DParams(
    n_subjects_train=2,
    n_subjects_val=1,
    sequences_per_subject=4,
    frames_min=40,
    frames_max=60,
    cameras_per_sequence=2,
    n_cameras_train=3,
    n_cameras_val=2,
)


@pytest.fixture(scope="module")
def splits():
    return generate_splits(TINY)


@pytest.mark.parametrize(
    "lifter", [LifterParams(channels=32, receptive_field=9), LifterParams(name="simplebaseline3d", channels=64)]
)
def test_training_lowers_the_held_out_error_and_best_pt_rebuilds_the_lifter(splits, lifter, tmp_path: Path) -> None:
    torch.manual_seed(0)
    codec = lifter.build_codec(META.num_keypoints)
    train, val = (encode_sequences(codec, splits[s]) for s in ("train", "val"))
    untrained = lifter.build(META.num_keypoints)
    before, _ = evaluate_sequences(untrained, val, META.keypoint_names)
    cfg = LiftTrainConfig(
        epochs=4, global_batch_size=64, batch_size_per_device=64, lr=3e-3, warmup_iters=1, val_interval=2,
        checkpoint_dir=str(tmp_path), progress=False,
    )  # fmt: skip
    validate = make_lifting_validator(val, META.keypoint_names, META.flip_indices)
    model, result = train_lifter(lifter, cfg, META, train, validate, flip_prob=0.5)
    assert result.best is not None and result.best_metric is not None
    assert [h["epoch"] for h in result.val_history] == [2, 4]
    assert result.best_metric < 0.8 * before.metrics["MPJPE"], (result.best_metric, before.metrics["MPJPE"])

    write_lifter_description(tmp_path, lifter, META)
    assert read_lifter_description(tmp_path)["keypoints"] == list(META.keypoint_names)
    rebuilt, described = load_trained_lifter(tmp_path)
    assert not rebuilt.training and getattr(rebuilt, "use_stride_conv", False) is False
    report, _ = evaluate_sequences(rebuilt, val, described["keypoints"], described["flip_indices"])
    assert report.metrics["MPJPE"] == pytest.approx(result.best_metric, rel=1e-5)


def test_a_checkpoint_of_another_lifter_is_refused(splits, tmp_path: Path) -> None:
    small, big = LifterParams(channels=16, receptive_field=9), LifterParams(channels=24, receptive_field=9)
    codec = small.build_codec(META.num_keypoints)
    data = encode_sequences(codec, splits["val"])
    cfg = LiftTrainConfig(
        epochs=1, global_batch_size=64, batch_size_per_device=64, checkpoint_dir=str(tmp_path), progress=False
    )
    train_lifter(small, cfg, META, data, make_lifting_validator(data, META.keypoint_names, None), flip_prob=0.0)
    write_lifter_description(tmp_path, big, META)
    with pytest.raises(ValueError, match="does not fit the lifter"):
        load_trained_lifter(tmp_path)
    (tmp_path / "model.json").write_text('{"task": "topdown"}')
    with pytest.raises(ValueError, match="does not describe a lifter"):
        load_trained_lifter(tmp_path)


def test_lift_params_keep_lifter_defaults_for_keys_left_out() -> None:
    params = parse_params({"lift": {"train": {"epochs": 3}, "baseline": {"channels": 512}}})
    assert params.lift.train == dataclasses.replace(LiftTrainConfig(), epochs=3)
    assert params.lift.train.optimizer == "adam" and params.lift.train.global_batch_size == 512
    assert params.lift.baseline.name == "simplebaseline3d" and params.lift.baseline.dropout == 0.5
    assert load_params(Path(__file__).parents[2] / "params.yaml").lift.model.receptive_field == 27


@pytest.mark.parametrize(
    ("lift", "message"),
    [
        ({"synth": {"frames_min": 50, "frames_max": 10}}, "lift.synth: frames_min (50) must be <= frames_max (10)"),
        ({"source": "h36m"}, "lift.source is 'h36m': set lift.root"),
        ({"model": {"name": "nope"}}, "lift.model.name: 'nope' is not allowed"),
        ({"train": {"global_batch_size": 100, "batch_size_per_device": 64}}, "lift.train.global_batch_size"),
    ],
)
def test_bad_lift_params_name_the_key(lift: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_params({"lift": lift})
