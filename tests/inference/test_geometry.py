"""The numpy crop geometry equals the training transforms: warp matrices, box padding, the crops themselves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from posecore.codecs import build_codec
from posecore.inference import geometry as g
from posecore.transforms import geometry as tg
from posecore.transforms import make_topdown_batch, topdown_val_pipeline

INPUT_SIZE = (64, 96)


@pytest.mark.parametrize("use_udp", [False, True])
def test_warp_matrix_equals_torch(use_udp: bool) -> None:
    rng = np.random.default_rng(0)
    center = rng.uniform(0, 600, (8, 2))
    scale = rng.uniform(20, 400, (8, 2))
    rotation = rng.uniform(-45, 45, 8)
    want = tg.warp_matrix(
        torch.from_numpy(center),
        torch.from_numpy(scale),
        torch.from_numpy(rotation),
        INPUT_SIZE,
        use_udp,
        torch.float64,
    )
    got = g.warp_matrix(center, scale, INPUT_SIZE, rotation, use_udp)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(g.invert_affine(got), tg.invert_affine(want).numpy(), rtol=1e-10, atol=1e-9)
    pts = rng.uniform(0, 600, (8, 5, 2))
    np.testing.assert_allclose(
        g.transform_points(pts, got), tg.transform_points(torch.from_numpy(pts), want).numpy(), atol=1e-9
    )
    back = g.transform_points(g.transform_points(pts, got), g.invert_affine(got))
    np.testing.assert_allclose(back, pts, atol=1e-9)


def test_box_to_center_scale_and_aspect_equal_torch() -> None:
    boxes = np.array([[10.0, 20.0, 110.0, 60.0], [5.0, 5.0, 25.0, 205.0]])
    c, s = g.bbox_xyxy_to_center_scale(boxes, 1.25)
    ct, st = tg.bbox_xyxy_to_center_scale(torch.from_numpy(boxes), 1.25)
    np.testing.assert_allclose(c, ct.numpy())
    np.testing.assert_allclose(s, st.numpy())
    np.testing.assert_allclose(g.fix_aspect_ratio(s, 64 / 96), tg.fix_aspect_ratio(st, 64 / 96).numpy())
    np.testing.assert_allclose(g.fix_aspect_ratio(s, 64 / 96)[:, 0] / g.fix_aspect_ratio(s, 64 / 96)[:, 1], 64 / 96)


@pytest.mark.parametrize("codec_name", ["simcc", "udp_heatmap"])
def test_crops_equal_the_validation_pipeline(codec_name: str) -> None:
    """crop_boxes cuts exactly the crop that training's validation pipeline feeds the model."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    boxes = np.array([[10.0, 15.0, 70.0, 100.0], [50.5, 5.25, 150.0, 40.0], [-20.0, 60.0, 40.0, 140.0]])
    kwargs = {"heatmap_size": (16, 24)} if codec_name == "udp_heatmap" else {}
    codec = build_codec(codec_name, input_size=INPUT_SIZE, **kwargs)
    use_udp = bool(getattr(codec, "use_udp", False))
    crops, mats = g.crop_boxes(image, boxes, INPUT_SIZE, padding=1.25, use_udp=use_udp)
    assert crops.shape == (3, 96, 64, 3) and crops.dtype == np.uint8

    n = len(boxes)
    images = torch.from_numpy(np.repeat(image[None], n, 0)).permute(0, 3, 1, 2).contiguous()
    batch = make_topdown_batch(
        images, torch.zeros(n, 17, 2), torch.zeros(n, 17), list(range(n)), bbox=torch.from_numpy(boxes).float()
    )
    out = topdown_val_pipeline(codec, normalize=None)(batch)
    np.testing.assert_array_equal(crops, out["images"].permute(0, 2, 3, 1).numpy().astype(np.uint8))
    np.testing.assert_allclose(mats, out["warp"].numpy(), rtol=1e-5, atol=1e-4)
