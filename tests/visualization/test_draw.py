"""Pose drawing: colours land on the keypoints, links join the right keypoints, hidden ones stay hidden."""

from __future__ import annotations

import numpy as np
import pytest

from posecore.metainfo import load_meta, parse_meta
from posecore.visualization import Poses, draw_pose, draw_side_by_side, keypoint_sides, make_grid, palette
from posecore.visualization.draw import BOX_COLOR, CENTRE_COLOR, LEFT_COLOR, RIGHT_COLOR

NOSE, LEFT, RIGHT = (255, 0, 0), (0, 255, 0), (0, 0, 255)
LINK_L, LINK_R = (255, 255, 0), (0, 255, 255)

META = parse_meta(
    {
        "name": "tiny",
        "keypoints": [
            {"name": "nose", "type": "upper", "color": list(NOSE), "swap": ""},
            {"name": "left_hand", "type": "upper", "color": list(LEFT), "swap": "right_hand"},
            {"name": "right_hand", "type": "upper", "color": list(RIGHT), "swap": "left_hand"},
        ],
        "skeleton": [
            {"link": ["nose", "left_hand"], "color": list(LINK_L)},
            {"link": ["nose", "right_hand"], "color": list(LINK_R)},
        ],
        "joint_weights": [1, 1, 1],
        "sigmas": [0.1, 0.1, 0.1],
    }
)
KPTS = np.array([[[32, 10], [10, 50], [54, 50]]], np.float32)  # (1, 3, 2)
BLACK = np.zeros((64, 64, 3), np.uint8)


def px(image: np.ndarray, xy: tuple[float, float]) -> tuple[int, ...]:
    return tuple(int(c) for c in image[round(xy[1]), round(xy[0])])


def has_color(image: np.ndarray, color: tuple[int, int, int]) -> bool:
    return bool(np.all(image == np.array(color, np.uint8), axis=-1).any())


def test_keypoint_colour_at_the_keypoint_pixel() -> None:
    out = draw_pose(BLACK, KPTS, np.ones((1, 3)), META, radius=3, thickness=1)
    for (x, y), color in zip(KPTS[0], (NOSE, LEFT, RIGHT), strict=True):
        assert px(out, (x, y)) == color
        # the disc covers its neighbours too
        assert px(out, (x + 1, y)) == color and px(out, (x, y - 1)) == color
    assert not BLACK.any(), "the input image must not be changed"


def test_links_join_the_right_keypoints() -> None:
    out = draw_pose(BLACK, KPTS, np.ones((1, 3)), META, radius=2, thickness=3)
    mid_left = (KPTS[0, 0] + KPTS[0, 1]) / 2
    mid_right = (KPTS[0, 0] + KPTS[0, 2]) / 2
    assert px(out, mid_left) == LINK_L
    assert px(out, mid_right) == LINK_R
    # no link between the two hands
    assert px(out, (KPTS[0, 1] + KPTS[0, 2]) / 2) == (0, 0, 0)


def test_invisible_keypoints_and_their_links_are_not_drawn() -> None:
    scores = np.array([[1.0, 1.0, 0.0]])
    out = draw_pose(BLACK, KPTS, scores, META, radius=3, thickness=2)
    assert px(out, KPTS[0, 2]) == (0, 0, 0)
    assert not has_color(out, RIGHT) and not has_color(out, LINK_R)
    assert has_color(out, LINK_L)
    # a confidence below kpt_thr counts as not visible
    low = draw_pose(BLACK, KPTS, np.array([[1.0, 0.2, 1.0]]), META, kpt_thr=0.3, radius=3)
    assert px(low, KPTS[0, 1]) == (0, 0, 0) and not has_color(low, LINK_L)


def test_single_pose_and_box() -> None:
    out = draw_pose(BLACK, KPTS[0], np.ones(3), META, bboxes=np.array([4, 4, 60, 60]), radius=2, thickness=3)
    assert px(out, (32, 4)) == BOX_COLOR
    assert px(out, KPTS[0, 0]) == NOSE


def test_non_finite_keypoints_are_skipped() -> None:
    kpts = KPTS.copy()
    kpts[0, 1] = np.nan
    out = draw_pose(BLACK, kpts, np.ones((1, 3)), META)
    assert not has_color(out, LEFT) and not has_color(out, LINK_L)


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"\(N, 3, 2\)"):
        draw_pose(BLACK, np.zeros((1, 4, 2)), np.ones((1, 4)), META)
    with pytest.raises(ValueError, match="uint8 RGB"):
        draw_pose(BLACK.astype(np.float32), KPTS, np.ones((1, 3)), META)


def test_colour_by_side() -> None:
    assert keypoint_sides(META) == ["centre", "left", "right"]
    out = draw_pose(BLACK, KPTS, np.ones((1, 3)), META, color_by="side", radius=3, thickness=3)
    assert px(out, KPTS[0, 0]) == CENTRE_COLOR
    assert px(out, KPTS[0, 1]) == LEFT_COLOR
    assert px(out, KPTS[0, 2]) == RIGHT_COLOR
    # a link between centre and one side is a centre link
    assert px(out, (KPTS[0, 0] + KPTS[0, 1]) / 2) == CENTRE_COLOR


def test_sides_of_the_shipped_body_schema() -> None:
    meta = load_meta("coco")
    sides = keypoint_sides(meta)
    for name, side in zip(meta.keypoint_names, sides, strict=True):
        expected = "left" if name.startswith("left_") else "right" if name.startswith("right_") else "centre"
        assert side == expected, name
    kpt_colors, link_colors = palette(meta, "side")
    assert len(kpt_colors) == 17 and len(link_colors) == len(meta.skeleton)


def test_sides_from_short_or_missing_names() -> None:
    meta = parse_meta(
        {
            "name": "paws",
            "keypoints": [
                {"name": "paw1", "color": [1, 1, 1], "swap": "paw2"},
                {"name": "paw2", "color": [1, 1, 1], "swap": "paw1"},
                {"name": "R_Eye", "color": [1, 1, 1], "swap": "L_Eye"},
                {"name": "L_Eye", "color": [1, 1, 1], "swap": "R_Eye"},
                {"name": "pawRH", "color": [1, 1, 1], "swap": "pawLH"},
                {"name": "pawLH", "color": [1, 1, 1], "swap": "pawRH"},
            ],
            "skeleton": [],
            "joint_weights": [1] * 6,
            "sigmas": [0.1] * 6,
        }
    )
    assert keypoint_sides(meta) == ["left", "right", "right", "left", "right", "left"]


def test_make_grid_and_side_by_side() -> None:
    a = np.full((10, 20, 3), 200, np.uint8)
    b = np.full((30, 5, 3), 100, np.uint8)
    grid = make_grid([a, b, a], cols=2, pad=2)
    assert grid.shape == (2 * 30 + 3 * 2, 2 * 20 + 3 * 2, 3)
    assert grid[2 + 10, 2, 0] == 200  # a centred vertically in its 30-high cell
    fitted = make_grid([a, b], cols=1, cell=(16, 16), pad=0)
    assert fitted.shape == (32, 16, 3)

    image = np.zeros((48, 64, 3), np.uint8)
    pred = Poses(KPTS, np.ones((1, 3)))
    gt = Poses(KPTS + 1, np.ones((1, 3)), np.array([[2, 2, 60, 46]]))
    panel = draw_side_by_side(image, pred, gt, META)
    assert panel.shape == (48 + 2 * 4, 2 * 64 + 3 * 4, 3)
