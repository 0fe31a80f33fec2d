"""SimpleBaseline3D: per-frame shapes, flattened or not, and no mixing between samples in eval mode."""

from __future__ import annotations

import pytest
import torch

from posecore.codecs.pose_lifting import ImagePoseLifting
from posecore.models.lifting import SimpleBaseline3D, build_lifter


@pytest.mark.parametrize(("use_scores", "remove_root"), [(False, False), (True, True)])
def test_shapes_for_stacked_and_flattened_inputs(use_scores: bool, remove_root: bool) -> None:
    codec = ImagePoseLifting(use_scores=use_scores, remove_root=remove_root)
    torch.manual_seed(0)
    model = build_lifter("simplebaseline3d", codec, channels=32, num_blocks=3).eval()
    assert isinstance(model, SimpleBaseline3D) and len(model.blocks) == 3 and model.receptive_field == 1
    x = torch.randn(5, 17, codec.in_channels)
    out = model(x)
    assert out.shape == (5, 17 - remove_root, 3)
    torch.testing.assert_close(model(x.flatten(1)), out)  # (N, J * C), Martinez's layout


def test_samples_do_not_mix_in_eval_mode() -> None:
    torch.manual_seed(0)
    model = build_lifter("simplebaseline3d", ImagePoseLifting(), channels=16).eval()
    x = torch.randn(6, 17, 2)
    torch.testing.assert_close(model(x)[2:3], model(x[2:3]))


def test_mmpose_h36m_defaults() -> None:
    model = build_lifter("simplebaseline3d", ImagePoseLifting(remove_root=True))
    assert model.channels == 1024 and model.num_blocks == 2
    assert model.stem[3].p == 0.5 and model.final.out_features == 16 * 3


def test_inputs_of_another_width_say_what_is_expected() -> None:
    model = build_lifter("simplebaseline3d", ImagePoseLifting(use_scores=True), channels=8)
    with pytest.raises(ValueError, match=r"\(N, J=17, C=3\) or \(N, 51\)"):
        model(torch.zeros(2, 17, 2))
