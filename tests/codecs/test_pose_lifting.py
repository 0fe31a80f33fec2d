"""Lifting codecs (``posecore/codecs/pose_lifting.py``): every registered one gets the same round trip,
plus hand-computed golden numbers for MMPose's screen normalisation and camera normalisation.

The 3D data are Human3.6M-like: a 17-joint body (H36M order, left/right mirror-symmetric),
jittered, turned and placed 4-6 m in front of a camera with H36M's intrinsics, and projected
with :class:`posecore.datasets.pose3d.format.Camera` (the canonical 3D format).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from posecore.codecs import available_codecs
from posecore.codecs.pose_lifting import (
    MM_PER_TARGET_UNIT,
    ImagePoseLifting,
    LiftingCodec,
    VideoPoseLifting,
    available_lifting_codecs,
    build_lifting_codec,
    denormalize_screen,
    normalize_intrinsics,
    normalize_screen,
)
from posecore.datasets.pose3d.format import Camera

# Human3.6M camera 54138969 (S1): f, c in pixels, image 1000 x 1002.
CAMERA = Camera(f=(1145.04940459, 1143.78109572), c=(512.54150496, 515.45148698), width=1000, height=1002)
IMAGE_SIZE = (CAMERA.width, CAMERA.height)
# H36M: 0 root, 1-3 right leg, 4-6 left leg, 7 spine, 8 thorax, 9 neck, 10 head, 11-13 left arm, 14-16 right arm.
FLIP_INDICES = [0, 4, 5, 6, 1, 2, 3, 7, 8, 9, 10, 14, 15, 16, 11, 12, 13]
# A standing body in mm (x right, y down), mirror-symmetric under x -> -x with FLIP_INDICES.
BODY = np.array(
    [
        [0, 0, 0], [-130, 0, 0], [-130, 450, 0], [-130, 880, 0], [130, 0, 0], [130, 450, 0], [130, 880, 0],
        [0, -230, 0], [0, -480, 0], [0, -580, 0], [0, -700, 0],
        [170, -480, 0], [170, -230, 0], [170, 20, 0], [-170, -480, 0], [-170, -230, 0], [-170, 20, 0],
    ],
    dtype=np.float64,
)  # fmt: skip


def h36m_poses(*lead: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """joints_3d (*lead, 17, 3) camera mm and their projections keypoints_2d (*lead, 17, 2) px, float64."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(lead))
    yaw = rng.uniform(-np.pi, np.pi, n)
    rot = np.stack(
        [
            np.stack([np.cos(yaw), np.zeros(n), np.sin(yaw)], -1),
            np.tile([0.0, 1.0, 0.0], (n, 1)),
            np.stack([-np.sin(yaw), np.zeros(n), np.cos(yaw)], -1),
        ],
        1,
    )
    body = BODY + rng.normal(0, 40, (n, 17, 3))
    place = np.stack([rng.uniform(-500, 500, n), rng.uniform(-200, 200, n), rng.uniform(4000, 6000, n)], -1)
    joints = np.einsum("nij,nkj->nki", rot, body) + place[:, None]
    pixels = CAMERA.project(joints, distort=False)
    return (
        torch.from_numpy(joints.reshape(*lead, 17, 3)),
        torch.from_numpy(pixels.reshape(*lead, 17, 2)),
    )


def lead_dims(codec: LiftingCodec, n: int = 4, t: int = 5) -> tuple[int, ...]:
    return (n, t) if codec.temporal else (n,)


# (id, registered name, overrides): every registered lifting codec, every option.
VARIANTS: list[tuple[str, str, dict[str, object]]] = [
    ("image", "image_pose_lifting", {}),
    ("image_remove_root", "image_pose_lifting", {"remove_root": True}),
    ("image_scores", "image_pose_lifting", {"use_scores": True, "remove_root": True}),
    ("image_other_root", "image_pose_lifting", {"root_index": 8, "remove_root": True}),
    ("video", "video_pose_lifting", {}),
    ("video_remove_root", "video_pose_lifting", {"remove_root": True}),
    ("video_scores", "video_pose_lifting", {"use_scores": True}),
]
variant_params = pytest.mark.parametrize(("name", "overrides"), [pytest.param(n, o, id=i) for i, n, o in VARIANTS])


def test_every_lifting_codec_has_a_variant() -> None:
    assert {n for _, n, _ in VARIANTS} == set(available_lifting_codecs()), "add the new lifting codec to VARIANTS"


def test_lifting_codecs_stay_out_of_the_2d_codec_registry() -> None:
    assert not set(available_lifting_codecs()) & set(available_codecs())


# --------------------------------------------------------------------------- round trip


@variant_params
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_round_trip_recovers_the_3d_joints(name: str, overrides: dict, dtype: torch.dtype) -> None:
    codec = build_lifting_codec(name, **overrides)
    joints, pixels = h36m_poses(*lead_dims(codec))
    joints, pixels = joints.to(dtype), pixels.to(dtype)
    enc = codec.encode(pixels, torch.rand(pixels.shape[:-1]), image_size=IMAGE_SIZE, joints_3d=joints)
    assert set(enc) == {"inputs", "joints_3d", "keypoint_weights", "root"}
    assert all(t.dtype == dtype for t in enc.values())
    assert enc["inputs"].shape == (*pixels.shape[:-1], codec.in_channels)
    assert enc["joints_3d"].shape == (*joints.shape[:-2], codec.num_targets, 3)
    assert bool((enc["keypoint_weights"] == 1).all())

    # float64: exact up to rounding; float32: a micrometre at 6 m.
    atol = 1e-9 if dtype == torch.float64 else 1e-3
    relative = joints - joints[..., codec.root_index : codec.root_index + 1, :]
    decoded, scores = codec.decode({"joints_3d": enc["joints_3d"]})
    assert decoded.shape == joints.shape and scores.shape == joints.shape[:-1]
    torch.testing.assert_close(decoded, relative, rtol=0, atol=atol)
    assert bool((decoded[..., codec.root_index, :] == 0).all())
    absolute, _ = codec.decode({"joints_3d": enc["joints_3d"], "root": enc["root"]})
    torch.testing.assert_close(absolute, joints, rtol=0, atol=atol * 10)


def test_targets_are_root_relative_metres_by_hand() -> None:
    codec = ImagePoseLifting(num_keypoints=3, root_index=1)
    joints = torch.tensor([[[100.0, 200.0, 5000.0], [0.0, 0.0, 4000.0], [-500.0, 250.0, 4500.0]]], dtype=torch.float64)
    enc = codec.encode(torch.zeros(1, 3, 2), None, image_size=(10, 10), joints_3d=joints)
    expected = [[[0.1, 0.2, 1.0], [0.0, 0.0, 0.0], [-0.5, 0.25, 0.5]]]
    torch.testing.assert_close(enc["joints_3d"], torch.tensor(expected, dtype=torch.float64))
    assert enc["root"].tolist() == [[0.0, 0.0, 4000.0]]
    assert MM_PER_TARGET_UNIT == 1000.0


# --------------------------------------------------------------------------- normalisation golden numbers


def test_screen_normalisation_matches_a_hand_computation() -> None:
    # MMPose VideoPoseLifting / VideoPose3D: x / W * 2 - 1, y / W * 2 - H / W, with W = 1000, H = 1002.
    pixels = torch.tensor([[[0.0, 0.0], [500.0, 501.0], [1000.0, 1002.0], [250.0, 100.0]]], dtype=torch.float64)
    expected = torch.tensor([[[-1.0, -1.002], [0.0, 0.0], [1.0, 1.002], [-0.5, -0.802]]], dtype=torch.float64)
    torch.testing.assert_close(normalize_screen(pixels, (1000, 1002)), expected, rtol=0, atol=1e-12)
    mmpose = pixels / 1000 * 2 - torch.tensor([1.0, 1002 / 1000], dtype=torch.float64)
    torch.testing.assert_close(normalize_screen(pixels, (1000, 1002)), mmpose, rtol=0, atol=1e-12)
    torch.testing.assert_close(denormalize_screen(expected, (1000, 1002)), pixels, rtol=0, atol=1e-12)

    codec = ImagePoseLifting(num_keypoints=4)
    torch.testing.assert_close(codec.encode(pixels, None, image_size=(1000, 1002))["inputs"], expected)


def test_screen_normalisation_per_instance_image_size() -> None:
    pixels = torch.tensor([[[[100.0, 25.0]]], [[[100.0, 25.0]]]], dtype=torch.float64)  # (N=2, T=1, J=1, 2)
    sizes = torch.tensor([[200, 100], [400, 100]])
    out = normalize_screen(pixels, sizes)
    assert out.squeeze().tolist() == [[0.0, -0.25], [-0.5, -0.125]]
    torch.testing.assert_close(denormalize_screen(out, sizes), pixels)


def test_camera_normalisation_matches_a_hand_computation_and_the_pinhole_model() -> None:
    f = torch.tensor([CAMERA.f], dtype=torch.float64)
    c = torch.tensor([CAMERA.c], dtype=torch.float64)
    f_n, c_n = normalize_intrinsics(f, c, IMAGE_SIZE)
    torch.testing.assert_close(f_n, f / 500)
    torch.testing.assert_close(c_n, torch.tensor([[12.54150496 / 500, 14.45148698 / 500]], dtype=torch.float64))
    joints, pixels = h36m_poses(1)
    via_camera = f_n[:, None] * joints[..., :2] / joints[..., 2:] + c_n[:, None]
    torch.testing.assert_close(normalize_screen(pixels, IMAGE_SIZE), via_camera, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- inputs, weights, missing data


def test_scores_channel_and_missing_keypoints() -> None:
    codec = VideoPoseLifting(num_keypoints=3, use_scores=True)
    pixels = torch.tensor([[[[500.0, 501.0], [float("nan"), 3.0], [1000.0, 501.0]]]])
    scores = torch.tensor([[[0.9, 0.8, 0.7]]])
    inputs = codec.encode(pixels, scores, image_size=(1000, 1002))["inputs"]
    assert inputs.shape == (1, 1, 3, 3)
    torch.testing.assert_close(inputs[0, 0], torch.tensor([[0.0, 0.0, 0.9], [-1.0, -1.002, 0.0], [1.0, 0.0, 0.7]]))
    without = VideoPoseLifting(num_keypoints=3).encode(pixels, None, image_size=(1000, 1002))["inputs"]
    assert without.shape == (1, 1, 3, 2) and bool(torch.isfinite(without).all())


def test_missing_joints_get_weight_zero_and_a_missing_root_drops_the_frame() -> None:
    codec = VideoPoseLifting(remove_root=True)
    joints, pixels = h36m_poses(1, 2)
    joints[0, 0, 5] = float("nan")
    joints[0, 1, 0] = float("inf")
    enc = codec.encode(pixels, None, image_size=IMAGE_SIZE, joints_3d=joints)
    weights = enc["keypoint_weights"]
    assert weights.shape == (1, 2, 16)
    assert weights[0, 0].tolist() == [1.0] * 4 + [0.0] + [1.0] * 11  # joint 5 is target 4 without the root
    assert weights[0, 1].tolist() == [0.0] * 16
    assert all(bool(torch.isfinite(t).all()) for t in enc.values())


def test_encode_says_which_layout_it_wants() -> None:
    with pytest.raises(ValueError, match=r"\(N, J, 2\).*VideoPoseLifting"):
        ImagePoseLifting().encode(torch.zeros(2, 5, 17, 2), None, image_size=IMAGE_SIZE)
    with pytest.raises(ValueError, match=r"joints_3d must be a tensor \(N, T, J, 3\).*N = 2"):
        VideoPoseLifting().encode(
            torch.zeros(2, 5, 17, 2), None, image_size=IMAGE_SIZE, joints_3d=torch.zeros(3, 1, 17, 3)
        )
    with pytest.raises(ValueError, match="image_size"):
        VideoPoseLifting().encode(torch.zeros(2, 5, 17, 2), None, image_size=torch.ones(3, 2))
    with pytest.raises(ValueError, match="root_index"):
        build_lifting_codec("video_pose_lifting", root_index=17)
    with pytest.raises(ValueError, match="has no field"):
        build_lifting_codec("video_pose_lifting", normalize_camera=True)
    with pytest.raises(KeyError, match="joints_3d"):
        VideoPoseLifting().decode({"coords": torch.zeros(1, 17, 3)})
    with pytest.raises(ValueError, match=r"\(\.\.\., 16, 3\)"):
        VideoPoseLifting(remove_root=True).decode({"joints_3d": torch.zeros(1, 1, 17, 3)})


# --------------------------------------------------------------------------- standardisation (ImagePoseLifting)


def test_statistics_standardise_the_training_set_and_round_trip() -> None:
    joints, pixels = h36m_poses(200, seed=1)
    codec = ImagePoseLifting(remove_root=True, use_scores=True).with_statistics(pixels, IMAGE_SIZE, joints)
    assert len(codec.keypoints_mean) == 17 and len(codec.target_std) == 16
    enc = codec.encode(pixels, torch.ones(200, 17), image_size=IMAGE_SIZE, joints_3d=joints)
    xy, target = enc["inputs"][..., :2], enc["joints_3d"]
    for t in (xy, target):
        torch.testing.assert_close(t.mean(0), torch.zeros_like(t[0]), rtol=0, atol=1e-9)
        torch.testing.assert_close(t.std(0, unbiased=False), torch.ones_like(t[0]), rtol=0, atol=1e-9)
    decoded, _ = codec.decode({"joints_3d": target, "root": enc["root"]})
    torch.testing.assert_close(decoded, joints, rtol=0, atol=1e-8)

    kept = ImagePoseLifting().with_statistics(pixels, IMAGE_SIZE, joints)
    assert kept.target_std[0] == (1.0, 1.0, 1.0)  # the root's target is always 0


def test_statistics_must_fit_the_joints() -> None:
    with pytest.raises(ValueError, match="both keypoints_mean and keypoints_std"):
        ImagePoseLifting(keypoints_mean=((0.0, 0.0),) * 17)
    with pytest.raises(ValueError, match="target_mean must be 16 rows of 3"):
        ImagePoseLifting(remove_root=True, target_mean=((0.0,) * 3,) * 17, target_std=((1.0,) * 3,) * 17)
    with pytest.raises(ValueError, match="keypoints_std must be positive"):
        ImagePoseLifting(keypoints_mean=((0.0, 0.0),) * 17, keypoints_std=((0.0, 1.0),) * 17)


# --------------------------------------------------------------------------- flips in the encoded space


@pytest.mark.parametrize("standardised", [False, True])
@pytest.mark.parametrize("remove_root", [False, True])
def test_encoded_flips_are_involutions(standardised: bool, remove_root: bool) -> None:
    joints, pixels = h36m_poses(50, seed=2)
    codec = ImagePoseLifting(remove_root=remove_root, use_scores=True)
    if standardised:
        codec = codec.with_statistics(pixels, IMAGE_SIZE, joints)
    enc = codec.encode(pixels, torch.rand(50, 17, dtype=torch.float64), image_size=IMAGE_SIZE, joints_3d=joints)
    twice = codec.flip_inputs(codec.flip_inputs(enc["inputs"], FLIP_INDICES), FLIP_INDICES)
    torch.testing.assert_close(twice, enc["inputs"])
    back = codec.flip_outputs(codec.flip_outputs(enc["joints_3d"], FLIP_INDICES), FLIP_INDICES)
    torch.testing.assert_close(back, enc["joints_3d"])
    assert not torch.allclose(codec.flip_inputs(enc["inputs"], FLIP_INDICES), enc["inputs"])


def test_target_flip_indices_leave_the_root_out() -> None:
    assert VideoPoseLifting().target_flip_indices(FLIP_INDICES) == FLIP_INDICES
    assert VideoPoseLifting(remove_root=True).target_flip_indices(FLIP_INDICES) == [i - 1 for i in FLIP_INDICES[1:]]
    with pytest.raises(ValueError, match="own inverse"):
        VideoPoseLifting().target_flip_indices([1, 2, 0] + list(range(3, 17)))
    swapped_root = [1, 0] + list(range(2, 17))
    with pytest.raises(ValueError, match="root joint 0 must flip onto itself"):
        VideoPoseLifting(remove_root=True).target_flip_indices(swapped_root)


def test_codecs_are_frozen_dataclasses() -> None:
    codec = build_lifting_codec("video_pose_lifting", remove_root=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        codec.remove_root = False  # type: ignore[misc]
    assert isinstance(codec, VideoPoseLifting) and codec.num_targets == 16 and codec.in_channels == 2
