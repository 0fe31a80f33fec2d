from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor

from posecore.transforms import (
    BottomupRandomAffine,
    BottomupResize,
    Compose,
    GenerateOneStageTarget,
    KeyedRNG,
    RandomFlip,
)
from posecore.transforms.geometry import invert_affine, transform_points
from posecore.transforms.reference import get_warp_matrix_np, warp_affine_cv2

N, K = 2, 5
FLIP = (0, 2, 1, 4, 3)


def _people(b: int, width: int, height: int, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, N, K, generator=g) * (width - 120) + 60
    y = torch.rand(b, N, K, generator=g) * (height - 80) + 40
    return torch.stack([x, y], dim=-1)


def _batch(images: Tensor, kp: Tensor, keys: Tensor | None = None) -> dict[str, Tensor]:
    b = images.shape[0]
    return {
        "images": images,
        "keypoints": kp,
        "visible": torch.ones(b, N, K),
        "bbox": torch.cat([kp.amin(2) - 3, kp.amax(2) + 3], dim=-1),
        "flip": torch.zeros(b, dtype=torch.bool),
        "keys": torch.arange(b) if keys is None else keys,
    }


def _dot_batch(real_images: Tensor, paint) -> dict[str, Tensor]:
    b, _, h, w = real_images.shape
    kp = _people(b, w, h)
    dots = paint(kp.reshape(b, N * K, 2), h, w)
    return _batch(torch.cat([real_images.float(), dots], dim=1), kp)


RECIPES = {
    "flip_affine": [RandomFlip(FLIP, prob=1.0), BottomupRandomAffine((256, 256))],
    "affine_keyed_random": [RandomFlip(FLIP), BottomupRandomAffine((256, 192))],
    "affine_udp": [RandomFlip(FLIP), BottomupRandomAffine((256, 256), use_udp=True, scale_type="long")],
    "resize_fit": [BottomupResize((256, 256))],
    "resize_expand": [BottomupResize((256, 256), resize_mode="expand")],
    "flip_resize_udp": [RandomFlip(FLIP, prob=1.0), BottomupResize((256, 256), use_udp=True)],
}


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_dots_follow_the_image(real_images: Tensor, dots, recipe: str) -> None:
    paint, centroids, away = dots
    batch = _dot_batch(real_images, paint)
    out = Compose(RECIPES[recipe])(batch, KeyedRNG(seed=1, epoch=0))
    b = batch["images"].shape[0]
    h, w = out["images"].shape[-2:]
    found = centroids(out["images"][:, 3:]).reshape(b, N, K, 2)
    src_k = torch.where(out["flip"][:, None], torch.tensor(FLIP)[None], torch.arange(K)[None])
    found = found.gather(2, src_k[:, None, :, None].expand(-1, N, -1, 2))
    kp, vis = out["keypoints"], out["visible"]
    checked = (vis > 0) & away(kp, out["warp"], (w, h))
    assert checked.sum() >= 30
    err = (found - kp).norm(dim=-1)[checked]
    assert err.max() < 0.1, err.max()
    if "flip" in recipe.split("_")[0]:
        assert out["flip"].all()
    # boxes move with their people: each warped box still holds its visible keypoints
    box = out["bbox"]
    inside = (kp >= box[..., None, :2] - 1e-3) & (kp <= box[..., None, 2:] + 1e-3)
    assert inside.all()


def test_resize_golden() -> None:
    images = torch.zeros(1, 3, 480, 640, dtype=torch.uint8)
    kp = torch.tensor([[[[320.0, 240.0]] * K] * N])
    out = BottomupResize((512, 512))(_batch(images, kp))
    # fit: 640 x 480 -> 512 x 384, centred vertically in 512 x 512 (MMPose's non-UDP BottomupResize)
    np.testing.assert_allclose(out["warp"][0].numpy(), [[0.8, 0.0, 0.0], [0.0, 0.8, 64.0]], atol=1e-5)
    assert out["images"].shape == (1, 3, 512, 512)
    udp = BottomupResize((512, 512), use_udp=True)(_batch(images, kp))
    ref = get_warp_matrix_np((319.5, 239.5), (640, 480), 0.0, (512, 384), use_udp=True)
    np.testing.assert_allclose(udp["warp"][0].numpy(), ref, atol=1e-5)
    expand = BottomupResize((512, 512), resize_mode="expand")(_batch(images, kp))
    assert expand["images"].shape == (1, 3, 512, 704)  # 512 / 480 * 640 = 682.7, padded up to 32s
    with pytest.raises(ValueError, match="multiple of size_factor"):
        BottomupResize((500, 512))


def test_resize_matches_cv2(real_image: np.ndarray) -> None:
    h, w = real_image.shape[:2]
    images = torch.from_numpy(real_image).permute(2, 0, 1)[None]
    out = BottomupResize((256, 256))(_batch(images, _people(1, w, h)))
    ref = warp_affine_cv2(real_image, out["warp"][0].numpy(), (256, 256)).astype(np.float32)
    ours = out["images"][0].permute(1, 2, 0).numpy()
    ys, xs = np.mgrid[0:256, 0:256]
    back = transform_points(
        torch.tensor(np.stack([xs, ys], -1).reshape(1, -1, 2), dtype=torch.float32), invert_affine(out["warp"])
    )
    bx, by = back[0, :, 0].reshape(256, 256).numpy(), back[0, :, 1].reshape(256, 256).numpy()
    inner = (bx >= 1) & (bx <= w - 2) & (by >= 1) & (by <= h - 2)
    assert np.abs(ours - ref)[inner].mean() < 1.5


def test_random_affine_batched_equals_per_image(real_images: Tensor) -> None:
    b, _, h, w = real_images.shape
    kp = _people(b, w, h, seed=2)
    keys = torch.tensor([9, 4, 2**35, 0, 13, 21, 34, 55])
    pipeline = Compose([RandomFlip(FLIP), BottomupRandomAffine((192, 192))])
    rng = KeyedRNG(3, 4)
    whole = pipeline(_batch(real_images, kp, keys), rng)
    for i in range(b):
        one = pipeline(_batch(real_images[i : i + 1], kp[i : i + 1], keys[i : i + 1]), rng)
        for key in ("keypoints", "visible", "warp", "flip", "bbox"):
            assert torch.allclose(one[key].float(), whole[key][i : i + 1].float(), atol=1e-4), key
        assert (one["images"] - whole["images"][i : i + 1]).abs().max() < 1e-3


def test_random_affine_parameter_ranges() -> None:
    n = 4000
    images = torch.zeros(n, 1, 4, 8)
    kp = torch.zeros(n, N, K, 2)
    out = BottomupRandomAffine((8, 4), rotate_prob=0.5, zero_outside=False)(_batch(images, kp), KeyedRNG(0))
    a = out["warp"][:, :, :2]
    rot = torch.rad2deg(torch.atan2(a[:, 0, 1], a[:, 0, 0]))
    assert rot.abs().max() <= 30.0 + 1e-3
    assert (rot.abs() > 1e-4).float().mean().item() == pytest.approx(0.5, abs=0.03)
    factor = 1.0 / a.det().abs().sqrt()  # source pixels per input pixel = the random scale factor (8 / 8)
    assert factor.min() >= 0.75 - 1e-4 and factor.max() <= 1.5 + 1e-4


def _onestage_codec():  # noqa: ANN202
    from posecore.codecs import build_codec

    return build_codec("yoloxpose", input_size=(64, 48))


def test_onestage_targets_clip_compact_and_ignore() -> None:
    """Rows (people, crowd regions, padding) -> people first and valid, crowd regions as ignore boxes."""
    k = 3
    bbox = torch.tensor(
        [
            [[-10.0, 5, 20, 30], [70, 10, 90, 20], [10, 10, 30, 40], [62.5, 0, 80, 10], [0, 0, 0, 0]],
            [[5.0, 5, 6.5, 40], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]],
        ]
    )
    kp = torch.full((2, 5, k, 2), 12.0)
    kp[0, 0, 0] = torch.tensor([-2.0, 10.0])  # outside the input
    batch = {
        "keypoints": kp,
        "visible": torch.ones(2, 5, k),
        "bbox": bbox,
        "present": torch.tensor([[True, True, True, True, False], [True, False, False, False, False]]),
        "crowd": torch.tensor([[False, False, True, True, False], [False] * 5]),
    }
    t = GenerateOneStageTarget(_onestage_codec())(batch)["targets"]
    # row 0: person 0 clipped to [0, 5, 20, 30], person 1 wholly right of the 64 px input: invalid;
    # row 1: a 1.5 px wide person is invalid too
    assert t["valid"].tolist() == [[True, False], [False, False]]
    assert t["boxes"][0, 0].tolist() == [0, 5, 20, 30] and t["areas"][0, 0] == 500
    assert (t["boxes"][~t["valid"]] == 0).all() and (t["visible"][~t["valid"]] == 0).all()
    assert t["visible"][0, 0].tolist() == [0.0, 1.0, 1.0], "keypoints outside the input are not visible"
    assert t["ignore_valid"].tolist() == [[True, True], [False, False]]
    assert t["ignore_boxes"][0].tolist() == [[10, 10, 30, 40], [62.5, 0, 64, 10]]
    assert t["keypoints"].shape == (2, 2, k, 2) and t["keypoint_weights"].shape == (2, 2, k)


def test_onestage_targets_need_a_onestage_codec() -> None:
    from posecore.codecs import build_codec

    with pytest.raises(ValueError, match="one-stage codec"):
        GenerateOneStageTarget(build_codec("msra_heatmap", input_size=(64, 48), heatmap_size=(16, 12)))


def test_image_train_pipeline_keeps_uint8_and_makes_targets(coco_meta) -> None:  # noqa: ANN001
    from posecore.transforms import image_train_pipeline
    from posecore.transforms.topdown import TopdownAugmentation

    pipeline = image_train_pipeline(coco_meta, _onestage_codec(), TopdownAugmentation(photometric=True))
    g = torch.Generator().manual_seed(0)
    kp = torch.rand(2, 1, 17, 2, generator=g) * 50 + 10
    batch = {
        "images": torch.randint(0, 256, (2, 3, 72, 96), dtype=torch.uint8, generator=g),
        "keypoints": kp,
        "visible": torch.ones(2, 1, 17),
        "bbox": torch.cat([kp.amin(2), kp.amax(2)], -1),
        "flip": torch.zeros(2, dtype=torch.bool),
        "keys": torch.tensor([0, 1]),
    }
    out = pipeline(batch, KeyedRNG(0))
    assert out["images"].dtype == torch.uint8 and out["images"].shape == (2, 3, 48, 64)
    assert out["targets"]["valid"].shape == (2, 1) and out["targets"]["ignore_boxes"].shape == (2, 1, 4)
