"""Lifting flips: mirrored samples (2D pixels, scores, 3D mm) and flip test-time averaging."""

from __future__ import annotations

import pytest
import torch

from posecore.codecs.pose_lifting import ImagePoseLifting, VideoPoseLifting
from posecore.models.lifting import (
    build_lifter,
    flip_joints_3d,
    flip_keypoints_2d,
    flip_lifting_sample,
    flip_scores,
    flip_test,
)

W, H = 1000, 1002


def project(camera, joints: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(camera.project(joints.numpy(), distort=False))


def test_flipping_twice_is_the_identity(random_poses, centred_camera, flip_indices) -> None:
    joints = random_poses(3, 4)
    pixels = project(centred_camera, joints)
    scores = torch.rand(3, 4, 17, dtype=torch.float64)
    once = flip_lifting_sample(pixels, scores, joints, W, flip_indices)
    assert not torch.allclose(once[0], pixels) and not torch.allclose(once[2], joints)
    twice = flip_lifting_sample(*once, W, flip_indices)
    for a, b in zip(twice, (pixels, scores, joints), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)


def test_a_symmetric_pose_flips_onto_itself(symmetric_body, centred_camera, flip_indices) -> None:
    torch.testing.assert_close(flip_joints_3d(symmetric_body, flip_indices), symmetric_body)
    # Centred on the optical axis with c_x = W / 2, its image is symmetric about the centre line too.
    pixels = project(centred_camera, symmetric_body)
    torch.testing.assert_close(flip_keypoints_2d(pixels, W, flip_indices), pixels, rtol=0, atol=1e-9)


def test_the_2d_and_3d_mirrors_agree_through_the_camera(random_poses, centred_camera, flip_indices) -> None:
    joints = random_poses(20)
    torch.testing.assert_close(
        project(centred_camera, flip_joints_3d(joints, flip_indices)),
        flip_keypoints_2d(project(centred_camera, joints), W, flip_indices),
        rtol=0,
        atol=1e-9,
    )


def test_per_instance_widths_and_scores(flip_indices) -> None:
    pixels = torch.zeros(2, 17, 2)
    pixels[:, 1, 0] = 10.0
    widths = torch.tensor([[100.0], [300.0]])  # (N, 1) broadcasts over the joints
    flipped = flip_keypoints_2d(pixels, widths, flip_indices)
    assert flipped[:, 4, 0].tolist() == [90.0, 290.0]  # right hip -> left hip, mirrored
    scores = torch.arange(17.0)
    assert flip_scores(scores, flip_indices).tolist() == [float(i) for i in flip_indices]


@pytest.mark.parametrize("codec", [ImagePoseLifting(use_scores=True, remove_root=True), VideoPoseLifting()])
def test_codec_flips_match_flipping_the_raw_sample(codec, random_poses, centred_camera, flip_indices) -> None:
    lead = (4, 6) if codec.temporal else (4,)
    joints = random_poses(*lead, seed=3)
    pixels = project(centred_camera, joints)
    scores = torch.rand(*lead, 17, dtype=torch.float64)
    if not codec.temporal:  # standardised inputs and targets too
        codec = codec.with_statistics(pixels, (W, H), joints)
    enc = codec.encode(pixels, scores, image_size=(W, H), joints_3d=joints)
    f_pixels, f_scores, f_joints = flip_lifting_sample(pixels, scores, joints, W, flip_indices)
    mirrored = codec.encode(f_pixels, f_scores, image_size=(W, H), joints_3d=f_joints)
    torch.testing.assert_close(codec.flip_inputs(enc["inputs"], flip_indices), mirrored["inputs"])
    torch.testing.assert_close(codec.flip_outputs(enc["joints_3d"], flip_indices), mirrored["joints_3d"])


@pytest.mark.parametrize(
    ("name", "codec", "shape"),
    [
        ("simplebaseline3d", ImagePoseLifting(remove_root=True), (3, 17, 2)),
        ("videopose3d", VideoPoseLifting(use_scores=True), (3, 12, 17, 3)),
    ],
)
def test_flip_test_averages_and_is_mirror_equivariant(name, codec, shape, flip_indices) -> None:
    torch.manual_seed(0)
    options = {"receptive_field": 9} if codec.temporal else {}
    lifter = build_lifter(name, codec, channels=16, **options).eval()
    x = torch.randn(*shape)
    with torch.no_grad():
        averaged = flip_test(lifter, x, flip_indices)
        mirrored = flip_test(lifter, codec.flip_inputs(x, flip_indices), flip_indices)
        plain = lifter(x)
        back = codec.flip_outputs(lifter(codec.flip_inputs(x, flip_indices)), flip_indices)
    assert averaged.shape == plain.shape
    torch.testing.assert_close(averaged, (plain + back) / 2)
    torch.testing.assert_close(mirrored, codec.flip_outputs(averaged, flip_indices))


def test_bad_flip_indices_are_reported() -> None:
    with pytest.raises(ValueError, match="own inverse"):
        flip_joints_3d(torch.zeros(3, 3), [1, 2, 0])
    with pytest.raises(ValueError, match="pair the 3 joints"):
        flip_scores(torch.zeros(3), [0, 1])
