"""posecore.inference.model: a one-stage model's whole-image preparation  and the way back."""

from __future__ import annotations

import numpy as np
import pytest

from posecore.codecs.base import Poses
from posecore.inference.info import ModelInfo
from posecore.inference.model import as_rgb, poses_to_image, predict_whole_images
from posecore.transforms.geometry import invert_affine_numpy
from posecore.transforms.letterbox import letterbox

SIZE = (64, 48)  # (w, h)


def test_grey_and_rgba_images_become_rgb_and_bad_ones_are_named() -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(as_rgb(grey), np.repeat(grey[..., None], 3, axis=2))
    np.testing.assert_array_equal(as_rgb(grey[..., None]), np.repeat(grey[..., None], 3, axis=2))
    rgba = np.zeros((2, 2, 4), np.uint8)
    assert as_rgb(rgba).shape == (2, 2, 3)
    with pytest.raises(ValueError, match="uint8"):
        as_rgb(np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(0, 5, 3\)"):
        as_rgb(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\(2, 2, 2\)"):
        as_rgb(np.zeros((2, 2, 2), np.uint8))


def test_people_go_back_to_image_pixels() -> None:
    _, warp = letterbox(np.zeros((10, 40, 3), np.uint8), SIZE)
    back = invert_affine_numpy(warp[None])[0]
    poses = Poses(
        boxes=np.array([[0.3, 16.3, 62.7, 30.7]], np.float32),
        scores=np.array([0.9], np.float32),
        keypoints=np.array([[[0.3, 16.3], [62.7, 30.7]]], np.float32),
        keypoint_scores=np.array([[0.5, 0.7]], np.float32),
    )
    out = poses_to_image(poses, back)
    np.testing.assert_allclose(out.boxes, [[0, 0, 39, 9]], atol=1e-5)
    np.testing.assert_allclose(out.keypoints, [[[0, 0], [39, 9]]], atol=1e-5)
    assert out.scores.dtype == np.float32 and out.keypoint_scores.tolist() == [[0.5, pytest.approx(0.7)]]
    nobody = poses_to_image(Poses(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 2, 2)), np.zeros((0, 2))), back)
    assert len(nobody) == 0 and nobody.keypoints.shape == (0, 2, 2)


def test_whole_images_of_any_size_are_batched_and_mapped_back() -> None:
    info = ModelInfo(input_size=SIZE, codec={"name": "yoloxpose"}, keypoint_names=("a",), flip_indices=(0,))
    seen: list[tuple[int, ...]] = []

    def run(inputs: np.ndarray) -> list[Poses]:
        """One person per image, at the input's centre pixel, box = the whole input."""
        seen.append(inputs.shape)
        n = len(inputs)
        centre = np.tile(np.array([[[31.5, 23.5]]], np.float32), (n, 1, 1))
        box = np.tile(np.array([[-0.5, -0.5, 63.5, 47.5]], np.float32), (n, 1))
        return [Poses(box[i : i + 1], np.ones(1), centre[i : i + 1], np.ones((1, 1))) for i in range(n)]

    images = [np.zeros((h, w, 3), np.uint8) for h, w in ((48, 64), (1, 1), (100, 30), (30, 100))]
    images.append(np.zeros((20, 20), np.uint8))  # grey
    poses = predict_whole_images(run, images, info, batch_size=2)
    assert seen == [(2, 3, 48, 64), (2, 3, 48, 64), (1, 3, 48, 64)]
    for image, p in zip(images, poses, strict=True):
        h, w = image.shape[:2]
        # the letterbox pads by whole pixels: the centre is off by at most half an input pixel
        np.testing.assert_allclose(p.keypoints[0, 0], [(w - 1) / 2, (h - 1) / 2], atol=1.0)
        # the whole input's box covers the image (and the padding beside it)
        assert p.boxes[0, 0] <= -0.5 + 1e-3 or p.boxes[0, 1] <= -0.5 + 1e-3
        assert p.boxes[0, 2] >= w - 0.5 - 1e-3 and p.boxes[0, 3] >= h - 0.5 - 1e-3
