from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from torch import Tensor

from posecore.codecs import build_codec
from posecore.transforms import make_topdown_batch, topdown_val_pipeline
from posecore.transforms.geometry import (
    ImageList,
    bbox_xyxy_to_center_scale,
    bbox_xyxy_to_center_scale_numpy,
    center_scale_to_bbox_xyxy,
    compose_affine,
    crop_boxes,
    fix_aspect_ratio,
    fix_aspect_ratio_numpy,
    flip_bbox_xyxy,
    flip_keypoints,
    flip_matrix,
    invert_affine,
    invert_affine_numpy,
    points_inside,
    transform_points,
    transform_points_numpy,
    warp_images,
    warp_matrix,
    warp_matrix_numpy,
)
from posecore.transforms.reference import get_warp_matrix_np, warp_affine_cv2


def test_bbox_xyxy_to_center_scale_golden() -> None:
    center, scale = bbox_xyxy_to_center_scale(torch.tensor([[10.0, 20.0, 110.0, 220.0]]))
    assert center.tolist() == [[60.0, 120.0]]
    assert scale.tolist() == [[125.0, 250.0]]  # (100, 200) x MMPose's padding 1.25
    back = center_scale_to_bbox_xyxy(center, scale, padding=1.25)
    assert back.tolist() == [[10.0, 20.0, 110.0, 220.0]]


def test_fix_aspect_ratio_only_grows() -> None:
    out = fix_aspect_ratio(torch.tensor([[100.0, 100.0], [60.0, 200.0]]), aspect_ratio=0.75)
    np.testing.assert_allclose(out.numpy(), [[100.0, 400.0 / 3.0], [150.0, 200.0]], rtol=1e-6)


def test_flip_keypoint_golden() -> None:
    kp = torch.tensor([[[10.0, 5.0], [30.0, 6.0]]])
    out, vis = flip_keypoints(kp, torch.tensor([[1.0, 0.0]]), 100, torch.tensor([1, 0]))
    assert out.tolist() == [[[69.0, 6.0], [89.0, 5.0]]]  # x=10 in width 100 -> 89, and swapped
    assert vis.tolist() == [[0.0, 1.0]]
    assert flip_bbox_xyxy(torch.tensor([10.0, 1.0, 30.0, 2.0]), 100).tolist() == [69.0, 1.0, 89.0, 2.0]
    m = flip_matrix(torch.tensor([True, False]), 100)
    assert transform_points(torch.tensor([[[10.0, 5.0]], [[10.0, 5.0]]]), m).tolist() == [[[89.0, 5.0]], [[10.0, 5.0]]]


def test_warp_matrix_pure_scale_translate_golden() -> None:
    center, scale, rot = torch.tensor([[60.0, 120.0]]), torch.tensor([[100.0, 200.0]]), torch.zeros(1)
    m = warp_matrix(center, scale, rot, (200, 400))
    # factor w / scale_w = 2; the centre goes to (w / 2, h / 2): t = (100, 200) - 2 * (60, 120)
    np.testing.assert_allclose(m[0].numpy(), [[2.0, 0.0, -20.0], [0.0, 2.0, -40.0]], atol=1e-6)
    udp = warp_matrix(center, scale, rot, (200, 400), use_udp=True)
    # UDP: factors (w - 1) / 100 and (h - 1) / 200; the centre goes to ((w - 1) / 2, (h - 1) / 2)
    np.testing.assert_allclose(udp[0].numpy(), [[1.99, 0.0, 99.5 - 119.4], [0.0, 1.995, 199.5 - 239.4]], atol=1e-5)


def test_warp_matrix_rotation_sense_golden() -> None:
    m = warp_matrix(torch.tensor([[50.0, 50.0]]), torch.tensor([[100.0, 100.0]]), torch.tensor([90.0]), (100, 100))
    # MMPose's get_warp_matrix: a point right of the centre ends up above it
    assert transform_points(torch.tensor([[[60.0, 50.0]]]), m)[0, 0].tolist() == pytest.approx([50.0, 40.0], abs=1e-4)


@pytest.mark.parametrize("use_udp", [False, True])
def test_warp_matrix_equals_mmpose_construction(use_udp: bool) -> None:
    g = torch.Generator().manual_seed(0)
    center = torch.rand(16, 2, generator=g) * 500
    scale = torch.rand(16, 2, generator=g) * 300 + 20
    scale = fix_aspect_ratio(scale, 192 / 256)
    rot = (torch.rand(16, generator=g) - 0.5) * 160
    ours = warp_matrix(center, scale, rot, (192, 256), use_udp).numpy()
    for i in range(16):
        ref = get_warp_matrix_np(center[i].tolist(), scale[i].tolist(), float(rot[i]), (192, 256), use_udp)
        np.testing.assert_allclose(ours[i], ref, rtol=1e-4, atol=2e-3)


def test_invert_and_compose() -> None:
    m = warp_matrix(torch.tensor([[30.0, 40.0]]), torch.tensor([[90.0, 120.0]]), torch.tensor([33.0]), (48, 64))
    ident = compose_affine(invert_affine(m), m)
    assert torch.allclose(ident, torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]]), atol=1e-5)
    pts = torch.tensor([[[3.0, 4.0], [100.0, -7.0]]])
    assert torch.allclose(transform_points(transform_points(pts, m), invert_affine(m)), pts, atol=1e-3)


def test_points_inside_is_the_pixel_centre_grid() -> None:
    pts = torch.tensor([[0.0, 0.0], [47.0, 63.0], [-0.01, 3.0], [47.01, 3.0], [3.0, 63.5]])
    assert points_inside(pts, (48, 64)).tolist() == [True, True, False, False, False]


@pytest.mark.parametrize("channels", [3, 5])  # 3: cv2 on uint8; 5: grid_sample (as on GPUs)
def test_keep_uint8_is_the_float_warp_rounded(channels: int) -> None:
    images = torch.randint(0, 256, (3, channels, 40, 50), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    m = torch.tensor([[[0.8, 0.3, 2.5], [-0.3, 0.8, 4.25]]]).expand(3, 2, 3)
    floats = warp_images(images, m, (32, 24))
    kept = warp_images(images, m, (32, 24), keep_uint8=True)
    assert floats.dtype == torch.float32 and kept.dtype == torch.uint8
    assert (kept.float() - floats).abs().max() <= 0.5
    assert warp_images(images.float(), m, (32, 24), keep_uint8=True).dtype == torch.float32  # floats stay floats


def test_identity_warp_is_exact() -> None:
    images = torch.randint(0, 256, (2, 3, 20, 30), dtype=torch.uint8)
    ident = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).expand(2, 2, 3)
    assert torch.allclose(warp_images(images, ident, (30, 20)), images.float(), atol=1e-3)
    shift = ident.clone()
    shift[:, 0, 2] = -3.0  # dst x = src x - 3: column 3 of the source lands in column 0
    out = warp_images(images, shift, (30, 20))
    assert torch.allclose(out[..., :27], images[..., 3:].float(), atol=1e-3)
    assert out[..., 27:].abs().max() == 0  # zeros padding, as cv2's constant border


@pytest.mark.parametrize("use_udp", [False, True])
def test_warp_images_matches_cv2_warp_affine(real_image: np.ndarray, use_udp: bool) -> None:
    """grid_sample with our normalisation == cv2.warpAffine(INTER_LINEAR) up to OpenCV's 1/32-px weights."""
    h, w = real_image.shape[:2]
    center = torch.tensor([[w * 0.55, h * 0.45], [w * 0.3, h * 0.6]])
    scale = fix_aspect_ratio(torch.tensor([[w * 0.5, h * 0.7], [w * 0.2, h * 0.2]]), 192 / 256)
    m = warp_matrix(center, scale, torch.tensor([25.0, -70.0]), (192, 256), use_udp)
    src = torch.from_numpy(real_image).permute(2, 0, 1)[None].expand(2, -1, -1, -1)
    ours = warp_images(src, m, (192, 256)).permute(0, 2, 3, 1).numpy()
    for i in range(2):
        ref = warp_affine_cv2(real_image, m[i].numpy(), (192, 256)).astype(np.float32)
        # compare away from the image border, where the zero padding is sampled
        ys, xs = np.mgrid[0:256, 0:192]
        back = transform_points(
            torch.tensor(np.stack([xs, ys], -1).reshape(1, -1, 2), dtype=torch.float32), invert_affine(m[i : i + 1])
        )
        bx, by = back[0, :, 0].numpy().reshape(256, 192), back[0, :, 1].numpy().reshape(256, 192)
        inner = (bx >= 1) & (bx <= w - 2) & (by >= 1) & (by <= h - 2)
        assert inner.mean() > 0.5
        diff = np.abs(ours[i] - ref)[inner]
        assert diff.mean() < 1.5, diff.mean()
        assert np.percentile(diff, 99) < 8.0
        # cv2 rounds to uint8: a mean near 0.25 is the rounding alone
        assert math.isfinite(float(diff.max()))


def _random_matrices(n: int, src_w: int, src_h: int, seed: int) -> Tensor:
    """(n, 2, 3) float64: rotated, scaled, shifted and sometimes mirrored crops, some reaching off the image."""
    rng = np.random.default_rng(seed)
    center = torch.tensor(rng.uniform([-0.2 * src_w, -0.2 * src_h], [1.2 * src_w, 1.2 * src_h], (n, 2)))
    scale = fix_aspect_ratio(torch.tensor(rng.uniform(0.1, 1.5, (n, 2)) * [src_w, src_h]), 48 / 64)
    m = warp_matrix(center, scale, torch.tensor(rng.uniform(-90, 90, n)), (48, 64), dtype=torch.float64)
    flip = torch.tensor(rng.random(n) < 0.5)
    return compose_affine(m, flip_matrix(flip, src_w, torch.float64))


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_cpu_warp_gives_exactly_the_pixels_of_cv2_warp_affine(real_image: np.ndarray, channels: int) -> None:
    """The CPU warp (3 channels by way of RGBA) equals OpenCV's plain warpAffine pixel for pixel,
    which is what the torch-free bundle runtime crops with."""
    src = np.ascontiguousarray(np.concatenate([real_image, real_image[..., :1]], axis=-1)[..., :channels])
    h, w = src.shape[:2]
    m = _random_matrices(24, w, h, seed=channels)
    ours = warp_images(torch.from_numpy(src).permute(2, 0, 1)[None].expand(24, -1, -1, -1), m, (48, 64), True)
    for i in range(24):
        ref = cv2.warpAffine(src, m[i].numpy(), (48, 64), flags=cv2.INTER_LINEAR).reshape(64, 48, channels)
        assert np.array_equal(ours[i].permute(1, 2, 0).numpy(), ref), i


def test_a_warp_that_misses_the_image_gives_the_zero_border() -> None:
    images = torch.full((1, 3, 20, 30), 200, dtype=torch.uint8)
    away = torch.tensor([[[1.0, 0.0, 500.0], [0.0, 1.0, 0.0]]])  # the source lands far right of the output
    assert warp_images(images, away, (16, 16), keep_uint8=True).abs().max() == 0


def test_image_list_of_read_only_views_warps_like_the_stacked_tensor(real_images: Tensor) -> None:
    arrays = [a.permute(1, 2, 0).numpy() for a in real_images]
    for a in arrays:
        a.setflags(write=False)  # like views into the cache's memory-mapped shards
    listed = ImageList(arrays)
    assert listed.shape == real_images.shape and listed.dtype == torch.uint8 and listed.device.type == "cpu"
    assert torch.equal(listed.to_tensor(), real_images)
    m = _random_matrices(len(arrays), real_images.shape[-1], real_images.shape[-2], seed=5)
    assert torch.equal(warp_images(listed, m, (48, 64), True), warp_images(real_images, m, (48, 64), True))
    assert torch.equal(warp_images(listed, m, (48, 64)), warp_images(real_images, m, (48, 64)))


def test_image_list_rejects_mixed_images() -> None:
    with pytest.raises(ValueError, match=r"ImageList image 1 is uint8 \(5, 5, 3\); all must be uint8"):
        ImageList([np.zeros((4, 5, 3), np.uint8), np.zeros((5, 5, 3), np.uint8)])
    with pytest.raises(ValueError, match="at least one image"):
        ImageList([])


# ----------------------------------------------------------------------------- NumPy twins
# The bundle runtime's crop geometry equals the training transforms: warp matrices, box padding, the crops.

NUMPY_INPUT_SIZE = (64, 96)


@pytest.mark.parametrize("use_udp", [False, True])
def test_numpy_warp_matrix_equals_torch(use_udp: bool) -> None:
    rng = np.random.default_rng(0)
    center = rng.uniform(0, 600, (8, 2))
    scale = rng.uniform(20, 400, (8, 2))
    rotation = rng.uniform(-45, 45, 8)
    want = warp_matrix(
        torch.from_numpy(center),
        torch.from_numpy(scale),
        torch.from_numpy(rotation),
        NUMPY_INPUT_SIZE,
        use_udp,
        torch.float64,
    )
    got = warp_matrix_numpy(center, scale, rotation, NUMPY_INPUT_SIZE, use_udp)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(invert_affine_numpy(got), invert_affine(want).numpy(), rtol=1e-10, atol=1e-9)
    pts = rng.uniform(0, 600, (8, 5, 2))
    np.testing.assert_allclose(
        transform_points_numpy(pts, got), transform_points(torch.from_numpy(pts), want).numpy(), atol=1e-9
    )
    back = transform_points_numpy(transform_points_numpy(pts, got), invert_affine_numpy(got))
    np.testing.assert_allclose(back, pts, atol=1e-9)


def test_numpy_box_to_center_scale_and_aspect_equal_torch() -> None:
    boxes = np.array([[10.0, 20.0, 110.0, 60.0], [5.0, 5.0, 25.0, 205.0]])
    c, s = bbox_xyxy_to_center_scale_numpy(boxes, 1.25)
    ct, st = bbox_xyxy_to_center_scale(torch.from_numpy(boxes), 1.25)
    np.testing.assert_allclose(c, ct.numpy())
    np.testing.assert_allclose(s, st.numpy())
    np.testing.assert_allclose(fix_aspect_ratio_numpy(s, 64 / 96), fix_aspect_ratio(st, 64 / 96).numpy())
    fixed = fix_aspect_ratio_numpy(s, 64 / 96)
    np.testing.assert_allclose(fixed[:, 0] / fixed[:, 1], 64 / 96)


@pytest.mark.parametrize("codec_name", ["simcc", "udp_heatmap"])
def test_numpy_crops_equal_the_validation_pipeline(codec_name: str) -> None:
    """crop_boxes cuts exactly the crop that training's validation pipeline feeds the model."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    boxes = np.array([[10.0, 15.0, 70.0, 100.0], [50.5, 5.25, 150.0, 40.0], [-20.0, 60.0, 40.0, 140.0]])
    kwargs = {"heatmap_size": (16, 24)} if codec_name == "udp_heatmap" else {}
    codec = build_codec(codec_name, input_size=NUMPY_INPUT_SIZE, **kwargs)
    use_udp = bool(getattr(codec, "use_udp", False))
    crops, mats = crop_boxes(image, boxes, NUMPY_INPUT_SIZE, padding=1.25, use_udp=use_udp)
    assert crops.shape == (3, 96, 64, 3) and crops.dtype == np.uint8

    n = len(boxes)
    images = torch.from_numpy(np.repeat(image[None], n, 0)).permute(0, 3, 1, 2).contiguous()
    batch = make_topdown_batch(
        images, torch.zeros(n, 17, 2), torch.zeros(n, 17), list(range(n)), bbox=torch.from_numpy(boxes).float()
    )
    out = topdown_val_pipeline(codec, normalize=None)(batch)
    np.testing.assert_array_equal(crops, out["images"].permute(0, 2, 3, 1).numpy().astype(np.uint8))
    np.testing.assert_allclose(mats, out["warp"].numpy(), rtol=1e-5, atol=1e-4)
