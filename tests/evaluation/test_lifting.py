"""Whole-sequence lifting agrees with the training windows, and the report scores it against the ground truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from posecore.codecs.pose_lifting import build_lifting_codec
from posecore.data.lifting import LiftingWindows, encode_sequences
from posecore.datasets.synthetic.motion3d import Motion3DParams, generate_splits
from posecore.evaluation.lifting import evaluate_sequences, ground_truth, predict_sequences
from posecore.evaluation.pose3d import Pose3DEvaluator
from posecore.metainfo import load_meta
from posecore.models.lifting import build_lifter, flip_test

META = load_meta("h36m")
FLIP = list(META.flip_indices)
TINY = Motion3DParams(
    n_subjects_train=1,
    n_subjects_val=1,
    sequences_per_subject=2,
    frames_min=20,
    frames_max=40,
    cameras_per_sequence=1,
    n_cameras_train=1,
    n_cameras_val=1,
)


@pytest.fixture(scope="module")
def sequences():
    return generate_splits(TINY)["val"]


def _random_bn(lifter: torch.nn.Module) -> None:
    """Non-trivial BatchNorm statistics, so that eval mode is not the identity."""
    gen = torch.Generator().manual_seed(0)
    for m in lifter.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)


@pytest.mark.parametrize("causal", [False, True])
def test_whole_sequence_prediction_equals_each_frames_training_window(sequences, causal: bool) -> None:
    codec = build_lifting_codec("video_pose_lifting")
    torch.manual_seed(0)
    lifter = build_lifter("videopose3d", codec, receptive_field=9, causal=causal, channels=16, use_stride_conv=True)
    _random_bn(lifter)
    data = encode_sequences(codec, sequences)
    pred = predict_sequences(lifter, data)  # dilated form, edge-padded whole sequences
    assert lifter.use_stride_conv and lifter.training  # put back as it was
    assert pred.shape == (data.num_frames, 17, 3)
    windows = LiftingWindows(data, codec, receptive_field=9, causal=causal).batch(list(range(data.num_frames)), 0)
    lifter.eval()
    with torch.no_grad():
        strided = lifter(windows["inputs"])  # the training form, one window per frame
    expected, _ = codec.decode({"joints_3d": strided[:, 0]})
    torch.testing.assert_close(pred, expected.float(), rtol=1e-4, atol=1e-3)


def test_flip_test_prediction_is_the_mean_with_the_mirror(sequences) -> None:
    codec = build_lifting_codec("image_pose_lifting")
    torch.manual_seed(1)
    lifter = build_lifter("simplebaseline3d", codec, channels=32)
    _random_bn(lifter)
    data = encode_sequences(codec, sequences)
    lifter.eval()
    with torch.no_grad():
        expected, _ = codec.decode({"joints_3d": flip_test(lifter, data.inputs, FLIP)})
    # chunks of 7 frames and the whole batch take different float32 GEMM paths (off by ~100 ulps in mm)
    torch.testing.assert_close(
        predict_sequences(lifter, data, FLIP, batch_frames=7), expected.float(), rtol=1e-4, atol=1e-3
    )


def test_report_scores_predictions_against_decoded_ground_truth(sequences) -> None:
    codec = build_lifting_codec("image_pose_lifting")
    lifter = build_lifter("simplebaseline3d", codec, channels=32)
    data = encode_sequences(codec, sequences)
    report, pred = evaluate_sequences(lifter, data, META.keypoint_names)
    gt = np.concatenate([s.joints_3d - s.joints_3d[:, :1] for s in sequences])
    mask = np.ones(gt.shape[:2])
    actions = [s.action for s in sequences for _ in range(len(s))]
    direct = Pose3DEvaluator(META.keypoint_names).evaluate(pred.numpy(), gt, mask, actions)
    for name in ("MPJPE", "P-MPJPE", "N-MPJPE", "PCK3D", "AUC3D"):
        assert report.metrics[name] == pytest.approx(direct.metrics[name], rel=1e-5)
    assert set(report.per_action) == {s.action.split("_")[0] for s in sequences}


def test_ground_truth_with_the_root_removed_keeps_the_root_labelled(sequences) -> None:
    codec = build_lifting_codec("image_pose_lifting", remove_root=True)
    data = encode_sequences(codec, sequences)
    joints, mask = ground_truth(codec, data)
    assert joints.shape == (data.num_frames, 17, 3) and mask.shape == (data.num_frames, 17)
    assert torch.all(joints[:, 0] == 0) and torch.all(mask[:, 0] == 1)
    expected = np.concatenate([s.joints_3d - s.joints_3d[:, :1] for s in sequences])
    np.testing.assert_allclose(joints.numpy(), expected, atol=1e-3)
