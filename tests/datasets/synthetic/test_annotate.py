"""Labels read back from the label map: keypoints on the drawn figure, occluded and unlabelled ones."""

from __future__ import annotations

import cv2
import numpy as np

from posecore.datasets.synthetic import SceneOptions, image_rng, render_image

W, H = 128, 96
FLAT = (0, 255, 0)


def test_keypoints_sit_on_the_drawn_figure() -> None:
    flat = SceneOptions(clutter=False, occluders=False, flat_color=FLAT)
    n_visible = 0
    for seed in range(20):
        image, anns = render_image(np.random.default_rng(seed), W, H, 1, 1, flat)
        drawn = np.any(image != np.array(FLAT, np.uint8), axis=-1)
        for ann in anns:
            x, y, v = ann.keypoints.T
            cols, rows = np.round(x[v == 2]).astype(int), np.round(y[v == 2]).astype(int)
            assert drawn[rows, cols].all()
            assert ann.mask[rows, cols].all()
            n_visible += len(cols)
            near_mask = cv2.dilate(ann.mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            assert np.count_nonzero(drawn & ann.mask) >= 0.98 * np.count_nonzero(ann.mask)
            assert np.count_nonzero(drawn & near_mask) >= 0.98 * np.count_nonzero(drawn)
    assert n_visible > 100


def test_a_sample_has_occluded_and_unlabelled_keypoints_and_one_to_four_people() -> None:
    vis: list[np.ndarray] = []
    people = []
    for i in range(40):
        _, anns = render_image(image_rng(0, "train", i), W, H, 1, 4)
        people.append(len(anns))
        vis += [a.keypoints[:, 2] for a in anns]
    v = np.concatenate(vis)
    assert np.count_nonzero(v == 1) > 0.03 * v.size
    assert np.count_nonzero(v == 0) > 0.03 * v.size
    assert np.count_nonzero(v == 2) > 0.5 * v.size
    assert min(people) >= 0 and max(people) == 4 and 1 in people
