"""Left/right flips for lifting: mirrored training samples, and flip test-time averaging.

Augmentation works on the raw sample, before the codec encodes it (J joints, ``flip_indices``
the dataset meta's, e.g. Human3.6M pairs (1, 4), (2, 5), (3, 6), (11, 14), (12, 15), (13, 16)):

- keypoints_2d (..., J, 2) pixels: x -> W - x (a mirror about the image's centre line, so the
  codec's screen-normalised x is negated exactly), joints swapped;
- scores_2d (..., J): swapped;
- joints_3d (..., J, 3) camera mm: x -> -x (a mirror about the camera's y-z plane), swapped.

The 2D and 3D mirrors agree exactly when the principal point is on the centre line
(c_x = W / 2); Human3.6M's are within ~1.5 % of W / 2, and the root-relative targets do not
depend on it. VideoPose3D flips its training windows the same way.

:func:`flip_test` (MMPose's ``test_cfg=dict(flip_test=True)``; VideoPose3D's test-time
augmentation) runs the lifter on the inputs and on their mirror
(:meth:`~posecore.codecs.pose_lifting.LiftingCodec.flip_inputs`), maps the second prediction
back (:meth:`~posecore.codecs.pose_lifting.LiftingCodec.flip_outputs`) and averages. The
average is mirror-equivariant: ``flip_test(mirror(x)) == mirror(flip_test(x))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from posecore.models.lifting._base import Lifter

__all__ = ["flip_joints_3d", "flip_keypoints_2d", "flip_lifting_sample", "flip_scores", "flip_test"]


def _index(flip_indices: Sequence[int], num_joints: int, device: torch.device) -> Tensor:
    indices = [int(i) for i in flip_indices]
    if sorted(indices) != list(range(num_joints)) or any(indices[j] != i for i, j in enumerate(indices)):
        raise ValueError(
            f"flip_indices must pair the {num_joints} joints symmetrically (a permutation that is its own inverse, "
            f"the dataset meta's flip_indices); got {indices}"
        )
    return torch.tensor(indices, device=device)


def flip_keypoints_2d(keypoints: Tensor, image_width: float | Tensor, flip_indices: Sequence[int]) -> Tensor:
    """keypoints (..., J, 2) pixels -> the mirrored image's (x -> W - x, left <-> right); ``image_width`` W,
    a number or a tensor broadcasting against (..., J) (one per instance: shape (N, 1, ...))."""
    index = _index(flip_indices, keypoints.shape[-2], keypoints.device)
    x, y = keypoints.unbind(-1)
    return torch.stack([image_width - x, y], dim=-1).index_select(-2, index)


def flip_scores(scores: Tensor, flip_indices: Sequence[int]) -> Tensor:
    """scores (..., J) -> swapped left <-> right."""
    return scores.index_select(-1, _index(flip_indices, scores.shape[-1], scores.device))


def flip_joints_3d(joints: Tensor, flip_indices: Sequence[int]) -> Tensor:
    """joints (..., J, 3) camera coordinates -> mirrored (x -> -x, left <-> right); root-relative or absolute."""
    index = _index(flip_indices, joints.shape[-2], joints.device)
    return (joints * joints.new_tensor([-1.0, 1.0, 1.0])).index_select(-2, index)


def flip_lifting_sample(
    keypoints_2d: Tensor,
    scores_2d: Tensor,
    joints_3d: Tensor,
    image_width: float | Tensor,
    flip_indices: Sequence[int],
) -> tuple[Tensor, Tensor, Tensor]:
    """One mirrored training sample: keypoints_2d (..., J, 2) px, scores_2d (..., J), joints_3d (..., J, 3) mm."""
    return (
        flip_keypoints_2d(keypoints_2d, image_width, flip_indices),
        flip_scores(scores_2d, flip_indices),
        flip_joints_3d(joints_3d, flip_indices),
    )


def flip_test(lifter: Lifter, inputs: Tensor, flip_indices: Sequence[int]) -> Tensor:
    """Encoded inputs (N, [T,] J, C) -> the mean of the lifter's prediction and its mirrored input's, mapped back.

    Returns (N, [T_out,] J', 3) in the codec's target space, like ``lifter(inputs)``; decode it
    with ``lifter.codec.decode``. Both halves run as one batch of 2N (use eval mode).
    """
    codec = lifter.codec
    both = lifter(torch.cat([inputs, codec.flip_inputs(inputs, flip_indices)]))
    plain, mirrored = both.split(inputs.shape[0])
    return (plain + codec.flip_outputs(mirrored, flip_indices)) / 2
