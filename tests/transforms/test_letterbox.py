"""posecore.transforms.letterbox: the one-stage models' whole-image letterbox (cache and runtime alike)."""

from __future__ import annotations

import numpy as np
import pytest

from posecore.transforms.letterbox import letterbox

SIZE = (64, 48)  # (w, h)


@pytest.mark.parametrize("hw", [(1, 1), (480, 640), (48, 64), (3, 1000), (700, 20), (200, 201), (10, 12)])
def test_any_image_fits_the_input_and_its_centre_maps_to_the_content_centre(hw: tuple[int, int]) -> None:
    image = np.random.default_rng(hw[0] * 7 + hw[1]).integers(0, 256, (*hw, 3), dtype=np.uint8)
    out, warp = letterbox(image, SIZE)
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    centre = np.array([(hw[1] - 1) / 2, (hw[0] - 1) / 2]) @ warp[:, :2].T + warp[:, 2]
    # the content is centred by whole pixels: its centre is off the input's by at most half a pixel
    np.testing.assert_allclose(centre, [(64 - 1) / 2, (48 - 1) / 2], atol=0.5 + 1e-9)


def test_letterbox_centres_with_black_bars_and_maps_pixel_centres() -> None:
    image = np.full((10, 40, 3), 200, np.uint8)  # 4:1 -> 64 x 16 inside 64 x 48
    out, warp = letterbox(image, SIZE)
    assert (out[:16] == 0).all() and (out[32:] == 0).all() and (out[16:32] == 200).all()
    # scale 1.6, 16 rows of padding above: pixel centre (x, y) -> (1.6 (x + 0.5) - 0.5, 1.6 (y + 0.5) - 0.5 + 16)
    corners = np.array([[0.0, 0.0], [39.0, 9.0]])
    np.testing.assert_allclose(corners @ warp[:, :2].T + warp[:, 2], [[0.3, 16.3], [62.7, 30.7]])
