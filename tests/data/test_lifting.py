"""Lifting windows: encoded once, cut per frame with edge padding, mirrored by a per-sample key."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from posecore.codecs.pose_lifting import build_lifting_codec
from posecore.data.lifting import LiftingWindows, encode_sequences, window_frames
from posecore.datasets.pose3d.format import Camera, PoseSequence
from posecore.metainfo import load_meta

FLIP = list(load_meta("h36m").flip_indices)


def _sequence(name: str, frames: int, seed: int, joints: int = 17) -> PoseSequence:
    rng = np.random.default_rng(seed)
    return PoseSequence(
        name=name,
        subject="S01",
        action="walk",
        camera=Camera(f=(1000.0, 1000.0), c=(500.0, 500.0), width=1000, height=800),
        frames=np.arange(frames),
        keypoints_2d=rng.uniform(0, 800, (frames, joints, 2)).astype(np.float32),
        scores_2d=rng.uniform(0.1, 1, (frames, joints)).astype(np.float32),
        joints_3d=(rng.normal(0, 300, (frames, joints, 3)) + [0, 0, 5000]).astype(np.float32),
    )


def test_window_frames_repeat_the_edge_frames() -> None:
    starts, lengths = torch.tensor([10, 10, 10]), torch.tensor([4, 4, 4])
    centred = window_frames(torch.tensor([10, 11, 13]), starts, lengths, 5, causal=False)
    assert centred.tolist() == [[10, 10, 10, 11, 12], [10, 10, 11, 12, 13], [11, 12, 13, 13, 13]]
    causal = window_frames(torch.tensor([10, 13]), starts[:2], lengths[:2], 3, causal=True)
    assert causal.tolist() == [[10, 10, 10], [11, 12, 13]]


def test_encode_sequences_concatenates_frames_in_order() -> None:
    codec = build_lifting_codec("video_pose_lifting")
    seqs = [_sequence("a", 5, 0), _sequence("b", 3, 1)]
    data = encode_sequences(codec, seqs)
    assert data.num_frames == 8 and data.starts.tolist() == [0, 5] and data.lengths.tolist() == [5, 3]
    assert data.sequence_of_frame().tolist() == [0] * 5 + [1] * 3
    # frame 6 is frame 1 of "b": its encoding alone gives the same numbers
    one = codec.encode(
        torch.from_numpy(seqs[1].keypoints_2d[None, 1:2]),
        None,
        image_size=(1000, 800),
        joints_3d=torch.from_numpy(seqs[1].joints_3d[None, 1:2]),
    )
    torch.testing.assert_close(data.inputs[6], one["inputs"][0, 0])
    torch.testing.assert_close(data.joints_3d[6], one["joints_3d"][0, 0])


def test_encode_sequences_refuses_other_joint_counts() -> None:
    with pytest.raises(ValueError, match="has 14 joints but the lifting codec expects 17"):
        encode_sequences(build_lifting_codec("video_pose_lifting"), [_sequence("mouse", 4, 0, joints=14)])


def test_temporal_batch_is_the_window_of_each_frame() -> None:
    codec = build_lifting_codec("video_pose_lifting")
    data = encode_sequences(codec, [_sequence("a", 6, 0), _sequence("b", 4, 1)])
    windows = LiftingWindows(data, codec, receptive_field=3)
    batch = windows.batch([0, 7, 9], epoch=0)
    assert batch["inputs"].shape == (3, 3, 17, 2) and batch["joints_3d"].shape == (3, 1, 17, 3)
    assert batch["keypoint_weights"].shape == (3, 1, 17)
    torch.testing.assert_close(batch["inputs"][0], data.inputs[[0, 0, 1]])  # first frame: left edge repeated
    torch.testing.assert_close(batch["inputs"][1], data.inputs[[6, 7, 8]])  # inside "b", never crossing into "a"
    torch.testing.assert_close(batch["inputs"][2], data.inputs[[8, 9, 9]])
    torch.testing.assert_close(batch["joints_3d"][:, 0], data.joints_3d[[0, 7, 9]])


def test_per_frame_batch_has_no_time_axis() -> None:
    codec = build_lifting_codec("image_pose_lifting")
    data = encode_sequences(codec, [_sequence("a", 6, 0)])
    batch = LiftingWindows(data, codec).batch([2, 4], epoch=0)
    assert batch["inputs"].shape == (2, 17, 2) and batch["joints_3d"].shape == (2, 17, 3)
    with pytest.raises(ValueError, match="per-frame codec reads one frame"):
        LiftingWindows(data, codec, receptive_field=3)


def test_flips_mirror_inputs_and_targets_and_depend_only_on_the_sample() -> None:
    codec = build_lifting_codec("video_pose_lifting")
    data = encode_sequences(codec, [_sequence("a", 40, 0)])
    plain = LiftingWindows(data, codec, receptive_field=3)
    always = LiftingWindows(data, codec, receptive_field=3, flip_indices=FLIP, flip_prob=1.0)
    p, f = plain.batch(list(range(40)), 0), always.batch(list(range(40)), 0)
    torch.testing.assert_close(f["inputs"], codec.flip_inputs(p["inputs"], FLIP))
    torch.testing.assert_close(f["joints_3d"], codec.flip_outputs(p["joints_3d"], FLIP))

    half = LiftingWindows(data, codec, receptive_field=3, flip_indices=FLIP, flip_prob=0.5, seed=3)
    whole = half.batch(list(range(40)), epoch=2)
    flipped = ~torch.isclose(whole["inputs"], p["inputs"]).flatten(1).all(1)
    assert 5 < int(flipped.sum()) < 35  # about half
    reordered = half.batch([31, 4, 17], epoch=2)  # same samples, other batch: same flips
    torch.testing.assert_close(reordered["inputs"], whole["inputs"][[31, 4, 17]])
    other_epoch = half.batch(list(range(40)), epoch=3)
    assert not torch.equal(other_epoch["inputs"], whole["inputs"])
    with pytest.raises(ValueError, match="needs flip_indices"):
        LiftingWindows(data, codec, receptive_field=3, flip_prob=0.5)
