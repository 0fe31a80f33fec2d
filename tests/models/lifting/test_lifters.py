"""Registry-driven lifter tests: every registered lifter builds from its codec, trains (gradients on every
parameter), decodes to camera mm, and says how to fix a codec of the wrong kind."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch

from posecore.codecs import build_codec
from posecore.codecs.pose_lifting import ImagePoseLifting, LiftingCodec, VideoPoseLifting
from posecore.models.lifting import Lifter, available_lifters, build_lifter

IMAGE_SIZE = (1000, 1002)


@dataclass(frozen=True)
class Recipe:
    """A codec, tiny options and the sample layout (N, [T,]) for one registered lifter."""

    codec: Callable[[], LiftingCodec]
    options: dict[str, object] = field(default_factory=dict)
    lead: tuple[int, ...] = (4,)


RECIPES: dict[str, Recipe] = {
    "simplebaseline3d": Recipe(lambda: ImagePoseLifting(remove_root=True), {"channels": 16}, (4,)),
    "videopose3d": Recipe(lambda: VideoPoseLifting(use_scores=True), {"receptive_field": 9, "channels": 16}, (3, 12)),
}
OTHER_KIND = {False: VideoPoseLifting, True: ImagePoseLifting}


def test_every_lifter_has_a_recipe() -> None:
    assert set(RECIPES) == set(available_lifters()), "add a Recipe for the new lifter in RECIPES"


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_forward_backward_decode(name: str, random_poses) -> None:
    recipe = RECIPES[name]
    torch.manual_seed(0)
    codec = recipe.codec()
    lifter = build_lifter(name, codec, **recipe.options)
    assert isinstance(lifter, Lifter) and lifter.codec is codec
    n = recipe.lead[0]
    pixels = torch.rand(*recipe.lead, 17, 2) * torch.tensor(IMAGE_SIZE)
    out_lead = (n, recipe.lead[1] - lifter.receptive_field + 1) if codec.temporal else (n,)
    joints = random_poses(*out_lead).float()
    enc = codec.encode(pixels, torch.rand(*recipe.lead, 17), image_size=IMAGE_SIZE, joints_3d=joints)

    lifter.train()
    pred = lifter(enc["inputs"])
    assert pred.shape == enc["joints_3d"].shape == (*out_lead, codec.num_targets, 3)
    loss = ((pred - enc["joints_3d"]).norm(dim=-1) * enc["keypoint_weights"]).mean()  # MPJPE
    loss.backward()
    no_grad = [p for p, t in lifter.named_parameters() if t.grad is None or not bool(t.grad.abs().sum() > 0)]
    assert not no_grad, f"parameters without gradient: {no_grad}"

    lifter.eval()
    with torch.no_grad():
        decoded, scores = codec.decode({"joints_3d": lifter(enc["inputs"]), "root": enc["root"]})
    assert decoded.shape == joints.shape and scores.shape == joints.shape[:-1]
    assert bool(torch.isfinite(decoded).all())


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_a_codec_of_the_wrong_kind_says_how_to_fix(name: str) -> None:
    codec = RECIPES[name].codec()
    wrong = OTHER_KIND[codec.temporal]()
    want = "video_pose_lifting" if codec.temporal else "image_pose_lifting"
    with pytest.raises(ValueError, match=f"build_lifting_codec\\('{want}'"):
        build_lifter(name, wrong, **RECIPES[name].options)
    with pytest.raises(ValueError, match="must be a lifting codec"):
        build_lifter(name, build_codec("regression", input_size=(192, 256)), **RECIPES[name].options)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_unknown_options_and_bad_values_are_reported(name: str) -> None:
    codec = RECIPES[name].codec()
    with pytest.raises(ValueError, match="unknown option.*accepted: codec"):
        build_lifter(name, codec, kernel_size=5)
    with pytest.raises(ValueError, match="dropout must be a number in"):
        build_lifter(name, codec, **{**RECIPES[name].options, "dropout": 1.5})
    with pytest.raises(ValueError, match="channels must be a positive int"):
        build_lifter(name, codec, **{**RECIPES[name].options, "channels": 0})
