from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor

from posecore.metainfo import DatasetMeta
from posecore.transforms import (
    Compose,
    GenerateTarget,
    GetBBoxCenterScale,
    KeyedRNG,
    Normalize,
    PhotometricDistortion,
    RandomBBoxTransform,
    RandomFlip,
    RandomHalfBody,
    TopdownAffine,
    TopdownAugmentation,
    make_topdown_batch,
    topdown_train_pipeline,
    topdown_val_pipeline,
)
from posecore.transforms.geometry import fix_aspect_ratio, invert_affine, transform_points
from posecore.transforms.reference import topdown_sample_cv2

INPUT = (192, 256)
K = 17


def _keypoints(b: int, width: int, height: int, seed: int = 0) -> Tensor:
    """(B, K, 2) random keypoints well inside a (width, height) image."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, K, generator=g) * (width - 120) + 60
    y = torch.rand(b, K, generator=g) * (height - 80) + 40
    return torch.stack([x, y], dim=-1)


def _dot_batch(real_images: Tensor, paint, seed: int = 0):
    """Real RGB images with one dot channel per keypoint stacked on: (B, 3 + K, H, W)."""
    b, _, h, w = real_images.shape
    kp = _keypoints(b, w, h, seed)
    images = torch.cat([real_images.float(), paint(kp, h, w)], dim=1)
    bbox = torch.cat([kp.amin(1) - 5, kp.amax(1) + 5], dim=-1)
    return make_topdown_batch(images, kp, torch.ones(b, K), torch.arange(b) + 1000, bbox=bbox)


def _check_dots(out, flip_indices: list[int], dots, min_checked: int = 30, tol: float = 0.1) -> int:
    """Every visible keypoint sits on its dot; after a flip keypoint k carries the dot of flip_indices[k]."""
    _, centroids, away = dots
    kp, vis = out["keypoints"], out["visible"]
    found = centroids(out["images"][:, 3:])  # channel j holds source keypoint j's dot
    idx = torch.where(out["flip"][:, None], torch.tensor(flip_indices)[None], torch.arange(K)[None])
    found = found.gather(1, idx[..., None].expand(-1, -1, 2))
    checked = (vis > 0) & away(kp, out["warp"], INPUT)
    err = (found - kp).norm(dim=-1)[checked]
    assert int(checked.sum()) >= min_checked
    assert err.max().item() < tol, err.max().item()
    return int(checked.sum())


def _recipes(meta: DatasetMeta) -> dict[str, list]:
    fi, up, low = meta.flip_indices, meta.upper_body_ids, meta.lower_body_ids
    always = {"shift_prob": 1.0, "scale_prob": 1.0, "rotate_prob": 1.0}
    return {
        "flip": [GetBBoxCenterScale(), RandomFlip(fi, prob=1.0), TopdownAffine(INPUT)],
        "half_body": [GetBBoxCenterScale(), RandomHalfBody(up, low, prob=1.0), TopdownAffine(INPUT)],
        "shift_scale_rotate": [GetBBoxCenterScale(), RandomBBoxTransform(**always), TopdownAffine(INPUT)],
        "udp_flip_rotate": [
            GetBBoxCenterScale(),
            RandomFlip(fi, prob=1.0),
            RandomBBoxTransform(**always),
            TopdownAffine(INPUT, use_udp=True),
        ],
        "everything_forced": [
            GetBBoxCenterScale(),
            RandomFlip(fi, prob=1.0),
            RandomHalfBody(up, low, prob=1.0),
            RandomBBoxTransform(**always),
            TopdownAffine(INPUT),
        ],
        "mmpose_defaults": [
            GetBBoxCenterScale(),
            RandomFlip(fi),
            RandomHalfBody(up, low),
            RandomBBoxTransform(),
            TopdownAffine(INPUT),
        ],
    }


@pytest.mark.parametrize(
    "recipe", ["flip", "half_body", "shift_scale_rotate", "udp_flip_rotate", "everything_forced", "mmpose_defaults"]
)
def test_dots_follow_the_image(real_images: Tensor, coco_meta: DatasetMeta, dots, recipe: str) -> None:
    batch = _dot_batch(real_images, dots[0])
    pipeline = Compose(_recipes(coco_meta)[recipe])
    checked = 0
    for epoch in (0, 1):
        out = pipeline(batch, KeyedRNG(seed=3, epoch=epoch))
        assert out["images"].shape == (8, 3 + K, INPUT[1], INPUT[0])
        checked += _check_dots(out, coco_meta.flip_indices, dots, min_checked=20)
        if recipe in ("flip", "udp_flip_rotate", "everything_forced"):
            assert out["flip"].all()
    assert checked >= 60


def test_flip_really_swaps_which_dot_a_keypoint_carries(real_images: Tensor, coco_meta: DatasetMeta, dots) -> None:
    """The check above is not vacuous: without the left/right swap the dots would be far off."""
    batch = _dot_batch(real_images, dots[0])
    out = Compose(_recipes(coco_meta)["flip"])(batch, KeyedRNG(0))
    found = dots[1](out["images"][:, 3:])
    left_shoulder, right_shoulder = coco_meta.index("left_shoulder"), coco_meta.index("right_shoulder")
    # output keypoint "left_shoulder" is the mirrored source right shoulder
    on_right_dot = (found[:, right_shoulder] - out["keypoints"][:, left_shoulder]).norm(dim=-1)
    on_left_dot = (found[:, left_shoulder] - out["keypoints"][:, left_shoulder]).norm(dim=-1)
    assert (on_right_dot < 0.5).all()
    assert (on_left_dot > 5).all()


def test_out_of_input_keypoints_become_invisible(real_images: Tensor, coco_meta: DatasetMeta, dots) -> None:
    batch = _dot_batch(real_images, dots[0])
    out = Compose(_recipes(coco_meta)["half_body"])(batch, KeyedRNG(0))
    kp, vis = out["keypoints"], out["visible"]
    inside = (kp[..., 0] >= 0) & (kp[..., 0] <= INPUT[0] - 1) & (kp[..., 1] >= 0) & (kp[..., 1] <= INPUT[1] - 1)
    assert torch.equal(vis > 0, inside)
    assert (~inside).any(), "a half-body crop should cut off some keypoints"
    kept = Compose(
        [
            GetBBoxCenterScale(),
            RandomHalfBody(coco_meta.upper_body_ids, coco_meta.lower_body_ids, prob=1.0),
            TopdownAffine(INPUT, zero_outside=False),
        ]
    )(batch, KeyedRNG(0))
    assert (kept["visible"] == 1).all()


@pytest.mark.parametrize("use_udp", [False, True])
def test_batched_equals_mmpose_order_per_sample(real_images: Tensor, coco_meta: DatasetMeta, use_udp: bool) -> None:
    """Folding the flip into the warp == MMPose's literal order (mirror the pixels, then crop) with cv2."""
    b, _, h, w = real_images.shape
    kp = _keypoints(b, w, h, seed=1)
    batch = make_topdown_batch(
        real_images, kp, torch.ones(b, K), torch.arange(b), bbox=torch.cat([kp.amin(1), kp.amax(1)], -1)
    )
    fi = coco_meta.flip_indices
    rng = KeyedRNG(11, 0)
    geometric = Compose(
        [
            GetBBoxCenterScale(),
            RandomFlip(fi),
            RandomHalfBody(coco_meta.upper_body_ids, coco_meta.lower_body_ids, prob=0.5),
            RandomBBoxTransform(rotate_prob=1.0),
        ]
    )
    pre = geometric(batch, rng)
    out = TopdownAffine(INPUT, use_udp=use_udp)(pre, rng)
    assert pre["flip"].any() and (~pre["flip"]).any()
    for i in range(b):
        flip = bool(pre["flip"][i])
        cx, cy = pre["center"][i].tolist()
        center = (w - 1 - cx, cy) if flip else (cx, cy)  # the reference mirrors it back itself
        image = real_images[i].permute(1, 2, 0).numpy()
        crop, ref_kp, ref_vis = topdown_sample_cv2(
            image, kp[i].numpy(), np.ones(K, np.float32), center, pre["scale"][i].tolist(),
            float(pre["rotation"][i]), flip, fi, INPUT, use_udp,
        )  # fmt: skip
        np.testing.assert_allclose(out["keypoints"][i].numpy(), ref_kp, atol=2e-3)
        np.testing.assert_array_equal(out["visible"][i].numpy(), ref_vis)
        ours = out["images"][i].permute(1, 2, 0).numpy()
        diff = np.abs(ours - crop.astype(np.float32))
        inner = _inner_mask(out["warp"][i : i + 1], (w, h))
        assert diff[inner].mean() < 1.5, (i, diff[inner].mean())


def _inner_mask(warp: Tensor, src_size: tuple[int, int]) -> np.ndarray:
    """Output pixels whose source point lies at least one pixel inside the source image."""
    ys, xs = np.mgrid[0 : INPUT[1], 0 : INPUT[0]]
    pts = torch.tensor(np.stack([xs, ys], -1).reshape(1, -1, 2), dtype=torch.float32)
    back = transform_points(pts, invert_affine(warp))[0].numpy().reshape(INPUT[1], INPUT[0], 2)
    w, h = src_size
    return (back[..., 0] >= 1) & (back[..., 0] <= w - 2) & (back[..., 1] >= 1) & (back[..., 1] <= h - 2)


def test_full_image_direct_path(real_image: np.ndarray, coco_meta: DatasetMeta) -> None:
    """B = 1 with a whole image of its own size: the warp maps predictions back to the image."""
    h, w = real_image.shape[:2]
    kp = _keypoints(1, w, h, seed=4)
    batch = make_topdown_batch(
        torch.from_numpy(real_image).permute(2, 0, 1)[None],
        kp,
        torch.ones(1, K),
        [7],
        bbox=torch.tensor([[100.0, 80.0, 400.0, 380.0]]),
    )
    out = topdown_val_pipeline(_codec(), normalize=None)(batch)
    assert out["images"].shape == (1, 3, INPUT[1], INPUT[0])
    back = transform_points(out["keypoints"], invert_affine(out["warp"]))
    assert torch.allclose(back, kp, atol=1e-3)


def _codec():
    from posecore.codecs.base import Codec

    class _C(Codec):  # minimal stand-in with the input size the tests use
        input_size = INPUT
        target_keys = ("coords",)

        def encode(self, keypoints, visible):
            return {"coords": keypoints, "keypoint_weights": visible}

        def decode(self, outputs):
            return outputs["coords"], torch.ones(outputs["coords"].shape[:-1])

        def target_shapes(self, num_keypoints):
            return {"coords": (num_keypoints, 2)}

    return _C()


def test_batch_of_8_equals_8_batches_of_1(real_images: Tensor, coco_meta: DatasetMeta) -> None:
    b, _, h, w = real_images.shape
    kp = _keypoints(b, w, h, seed=2)
    vis = (torch.rand(b, K, generator=torch.Generator().manual_seed(2)) > 0.2).float()
    keys = torch.tensor([5, 900, 3, 77, 2**33, 41, 8, 1234])
    bbox = torch.cat([kp.amin(1), kp.amax(1)], -1)
    pipeline = topdown_train_pipeline(coco_meta, _codec(), aug=TopdownAugmentation(photometric=True))
    rng = KeyedRNG(seed=5, epoch=2)
    whole = pipeline(make_topdown_batch(real_images, kp, vis, keys, bbox=bbox), rng)
    order = torch.tensor([3, 0, 7, 1, 6, 2, 5, 4])
    for i in order.tolist():
        one = pipeline(
            make_topdown_batch(
                real_images[i : i + 1], kp[i : i + 1], vis[i : i + 1], keys[i : i + 1], bbox=bbox[i : i + 1]
            ),
            rng,
        )
        for key in ("keypoints", "visible", "center", "scale", "rotation", "flip", "warp"):
            assert torch.allclose(one[key].float(), whole[key][i : i + 1].float(), atol=1e-4), key
        assert (one["images"] - whole["images"][i : i + 1]).abs().max() < 1e-3
        assert torch.allclose(one["targets"]["keypoint_weights"], whole["targets"]["keypoint_weights"][i : i + 1])


def test_uint8_batches_normalised_on_the_device_equal_normalised_batches(
    real_images: Tensor, coco_meta: DatasetMeta
) -> None:
    b, _, h, w = real_images.shape
    kp = _keypoints(b, w, h, seed=3)
    batch = make_topdown_batch(
        real_images, kp, torch.ones(b, K), torch.arange(b), bbox=torch.cat([kp.amin(1), kp.amax(1)], -1)
    )
    rng = KeyedRNG(seed=1, epoch=0)
    normalized = topdown_train_pipeline(coco_meta, _codec())(batch, rng)
    raw = topdown_train_pipeline(coco_meta, _codec(), normalize=None, keep_uint8=True)(batch, rng)
    assert raw["images"].dtype == torch.uint8 and normalized["images"].dtype == torch.float32
    on_device = Normalize().inputs({"inputs": raw["images"], "targets": raw["targets"]})
    assert torch.equal(on_device["inputs"], normalized["images"])
    assert on_device["targets"] is raw["targets"]
    assert torch.equal(raw["targets"]["coords"], normalized["targets"]["coords"])
    with pytest.raises(ValueError, match="keep_uint8=True needs normalize=None"):
        topdown_train_pipeline(coco_meta, _codec(), keep_uint8=True)


def test_random_half_body_rules() -> None:
    """MMPose's selection rules, checked on hand-made visibility patterns."""
    upper, lower = tuple(range(0, 9)), tuple(range(9, 17))
    kp = torch.stack([torch.arange(K, dtype=torch.float32) * 10, torch.arange(K, dtype=torch.float32) * 5], -1)
    vis = torch.ones(4, K)
    vis[1, 11:] = 0  # lower body has 2 < 3 visible: the upper body, though the lower is preferred
    vis[2, 1:9] = 0  # upper body has 1 < 2 visible: the lower body
    vis[3, 8:] = 0  # only 8 < 9 visible in total: untouched
    batch = {
        "keypoints": kp.expand(4, K, 2),
        "visible": vis,
        "center": torch.zeros(4, 2),
        "scale": torch.ones(4, 2),
        "keys": torch.arange(4),
    }
    out = RandomHalfBody(upper, lower, prob=1.0, upper_prioritized_prob=0.0)(batch, KeyedRNG(0))
    # centre = mean of the chosen visible keypoints, scale = their extent x 1.5
    assert out["center"][0].tolist() == pytest.approx([125.0, 62.5])  # lower 9..16
    assert out["scale"][0].tolist() == pytest.approx([70.0 * 1.5, 35.0 * 1.5])
    assert out["center"][1].tolist() == pytest.approx([40.0, 20.0])  # upper 0..8
    assert out["scale"][1].tolist() == pytest.approx([80.0 * 1.5, 40.0 * 1.5])
    assert out["center"][2].tolist() == pytest.approx([125.0, 62.5])
    assert out["center"][3].tolist() == [0.0, 0.0] and out["scale"][3].tolist() == [1.0, 1.0]


def test_random_half_body_probabilities() -> None:
    n = 20_000
    kp = torch.stack([torch.arange(K, dtype=torch.float32), torch.zeros(K)], -1).expand(n, K, 2)
    batch = {
        "keypoints": kp,
        "visible": torch.ones(n, K),
        "center": torch.full((n, 2), -1.0),
        "scale": torch.ones(n, 2),
        "keys": torch.arange(n),
    }
    out = RandomHalfBody(tuple(range(11)), tuple(range(11, 17)))(batch, KeyedRNG(1))
    applied = out["center"][:, 0] >= 0
    assert applied.float().mean().item() == pytest.approx(0.3, abs=0.015)
    upper = out["center"][applied, 0] < 10.5
    assert upper.float().mean().item() == pytest.approx(0.7, abs=0.02)


def test_random_bbox_transform_distribution() -> None:
    n = 20_000
    batch = {
        "center": torch.zeros(n, 2),
        "scale": torch.full((n, 2), 100.0),
        "rotation": torch.zeros(n),
        "keys": torch.arange(n),
    }
    out = RandomBBoxTransform()(batch, KeyedRNG(2))
    rot, shift, factor = out["rotation"], out["center"], out["scale"][:, 0] / 100
    assert (rot != 0).float().mean().item() == pytest.approx(0.6, abs=0.015)
    assert rot.abs().max() <= 80.0
    assert rot[rot != 0].std().item() == pytest.approx(80 * 0.5379, rel=0.03)  # truncnorm(-1, 1) std
    assert (shift[:, 0] != 0).float().mean().item() == pytest.approx(0.3, abs=0.015)
    assert torch.equal(shift[:, 0] != 0, shift[:, 1] != 0)
    assert shift.abs().max() <= 16.0 + 1e-4
    assert 0.5 <= factor.min() and factor.max() <= 1.5
    assert factor.mean().item() == pytest.approx(1.0, abs=0.01)
    assert torch.equal(out["scale"][:, 0], out["scale"][:, 1])


def test_topdown_affine_fixes_the_aspect_ratio_and_keeps_the_centre() -> None:
    images = torch.zeros(1, 3, 100, 100, dtype=torch.uint8)
    batch = make_topdown_batch(
        images,
        torch.tensor([[[50.0, 40.0]]]),
        torch.ones(1, 1),
        [0],
        center=torch.tensor([[50.0, 40.0]]),
        scale=torch.tensor([[30.0, 30.0]]),
    )
    out = TopdownAffine((48, 64))(batch)
    assert out["scale"].tolist() == [[30.0, 40.0]]
    assert out["keypoints"][0, 0].tolist() == pytest.approx([24.0, 32.0])  # the centre lands on (w / 2, h / 2)
    udp = TopdownAffine((48, 64), use_udp=True)(batch)
    assert udp["keypoints"][0, 0].tolist() == pytest.approx([23.5, 31.5])


def test_train_pipeline_is_mmpose_recipe(coco_meta: DatasetMeta) -> None:
    codec = _codec()
    steps = topdown_train_pipeline(coco_meta, codec).transforms
    assert [type(t).__name__ for t in steps] == [
        "GetBBoxCenterScale", "RandomFlip", "RandomHalfBody", "RandomBBoxTransform", "TopdownAffine", "Normalize", "GenerateTarget",
    ]  # fmt: skip
    assert steps[0].padding == 1.25 and steps[4].input_size == INPUT and not steps[4].use_udp
    assert steps[1].flip_indices == tuple(coco_meta.flip_indices)
    with_photo = topdown_train_pipeline(coco_meta, codec, aug=TopdownAugmentation(photometric=True), normalize=None)
    assert [type(t).__name__ for t in with_photo.transforms][-2:] == ["PhotometricDistortion", "GenerateTarget"]
    assert isinstance(with_photo.transforms[-2], PhotometricDistortion)
    with pytest.raises(ValueError, match="differs from the codec's input_size"):
        topdown_train_pipeline(coco_meta, codec, input_size=(256, 256))
    val = topdown_val_pipeline(codec).transforms
    assert [type(t) for t in val] == [GetBBoxCenterScale, TopdownAffine, Normalize]
    assert isinstance(topdown_val_pipeline(codec, with_targets=True).transforms[-1], GenerateTarget)


def test_random_transforms_need_an_rng(real_images: Tensor, coco_meta: DatasetMeta) -> None:
    batch = make_topdown_batch(
        real_images[:1], torch.zeros(1, K, 2), torch.ones(1, K), [0], bbox=torch.tensor([[0.0, 0, 50, 50]])
    )
    with pytest.raises(ValueError, match="needs a KeyedRNG"):
        RandomFlip(coco_meta.flip_indices)(batch)
    with pytest.raises(ValueError, match="before TopdownAffine"):
        RandomFlip(coco_meta.flip_indices)(TopdownAffine(INPUT)(GetBBoxCenterScale()(batch)), KeyedRNG(0))
    with pytest.raises(ValueError, match="flip_indices"):
        RandomFlip((1, 0))(batch, KeyedRNG(0))


def test_msra_codec_targets_peak_at_the_keypoints(real_images: Tensor, coco_meta: DatasetMeta) -> None:
    codecs = pytest.importorskip("posecore.codecs.msra_heatmap")
    codec = codecs.MSRAHeatmap(input_size=INPUT, heatmap_size=(48, 64), sigma=2.0)
    b, _, h, w = real_images.shape
    kp = _keypoints(b, w, h, seed=3)
    batch = make_topdown_batch(
        real_images, kp, torch.ones(b, K), torch.arange(b), bbox=torch.cat([kp.amin(1), kp.amax(1)], -1)
    )
    out = topdown_train_pipeline(coco_meta, codec)(batch, KeyedRNG(0))
    heatmaps = out["targets"]["heatmaps"]
    assert heatmaps.shape == (b, K, 64, 48)
    assert torch.equal(out["targets"]["keypoint_weights"] > 0, out["visible"] > 0)
    centre = torch.trunc(out["keypoints"] / 4 + 0.5)  # MMPose's rounded gaussian centre
    on = (out["visible"] > 0) & (centre[..., 0] < 48) & (centre[..., 1] < 64)
    peak = heatmaps.flatten(2).argmax(-1)
    peak_xy = torch.stack([peak % 48, peak // 48], -1).float()
    assert on.sum() > 50
    assert (peak_xy - centre)[on].abs().max() == 0


def test_fix_aspect_ratio_used_by_affine_matches_mmpose() -> None:
    scale = torch.tensor([[120.0, 90.0], [30.0, 200.0]])
    assert torch.allclose(fix_aspect_ratio(scale, 0.75), torch.tensor([[120.0, 160.0], [150.0, 200.0]]))


def test_normalize_and_photometric_keep_shapes(real_images: Tensor) -> None:
    batch = {"images": real_images, "keys": torch.arange(8)}
    photo = PhotometricDistortion()(batch, KeyedRNG(0))
    assert photo["images"].dtype == torch.uint8 and photo["images"].shape == real_images.shape
    norm = Normalize()(batch)
    assert norm["images"].dtype == torch.float32
