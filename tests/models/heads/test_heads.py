"""Registry-driven head tests: every head builds with its codec, produces the codec's target shapes,
trains (finite loss, gradients on every parameter) and decodes; mismatches fail at build time."""

from __future__ import annotations

import re

import head_recipes as R  # tests/_helpers (on sys.path by tests/conftest.py)
import pytest
import torch

from posecore.codecs import build_codec
from posecore.models.builders import HEADS, LOSSES
from posecore.models.heads import PoseHead

VARIANTS = {r.id: r for r in R.VARIANTS}


def test_every_head_has_a_recipe():
    missing = sorted(set(R.SINGLE_LEVEL) - set(R.RECIPES)) + sorted(set(R.MULTI_LEVEL) - set(R.MULTI_LEVEL_RECIPES))
    assert not missing, f"add a codec recipe for head(s) {missing} in tests/_helpers/head_recipes.py"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_forward_loss_backward_decode(variant):
    recipe = VARIANTS[variant]
    torch.manual_seed(0)
    head, codec = recipe.build()
    assert isinstance(head, PoseHead)
    head.train()
    feats = R.features()
    outputs = head(feats)

    shapes = codec.target_shapes(R.NUM_KEYPOINTS)
    assert set(codec.target_keys) <= set(outputs) == set(head.output_keys)
    for key, shape in shapes.items():
        assert tuple(outputs[key].shape) == (R.BATCH, *shape), key
    for key in set(outputs) - set(shapes):  # extras such as RLE's sigmas
        assert outputs[key].shape[:2] == (R.BATCH, R.NUM_KEYPOINTS)

    targets = codec.encode(*R.keypoints())
    losses = head.loss(outputs, targets)
    assert losses and all(name.startswith("loss_") for name in losses)
    total = sum(losses.values())
    assert total.ndim == 0 and torch.isfinite(total)
    total.backward()
    no_grad = [name for name, p in head.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad}"
    grad_norm = sum(p.grad.abs().sum() for p in head.parameters() if p.grad is not None)
    assert torch.isfinite(grad_norm) and grad_norm > 0

    head.eval()
    with torch.no_grad():
        keypoints, scores = head.decode(head(feats))
    assert keypoints.shape == (R.BATCH, R.NUM_KEYPOINTS, 2) and scores.shape == (R.BATCH, R.NUM_KEYPOINTS)
    assert torch.isfinite(keypoints).all()


@pytest.mark.parametrize("name", R.SINGLE_LEVEL)
def test_targets_of_another_keypoint_count_say_how_to_fix(name):
    head, codec = R.RECIPES[name].build()
    kp, vis = R.keypoints(num_keypoints=R.NUM_KEYPOINTS - 1)
    with pytest.raises(ValueError, match=rf"num_keypoints={R.NUM_KEYPOINTS - 1}"):
        head.loss(head(R.features()), codec.encode(kp, vis))


@pytest.mark.parametrize("name", R.SINGLE_LEVEL)
@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_invalid_num_keypoints(name, bad):
    with pytest.raises(ValueError, match="num_keypoints must be a positive int"):
        R.RECIPES[name].build(num_keypoints=bad)


#: A stride that cannot produce the codec's sizes from a 48 x 64 input, and what the error suggests.
BAD_STRIDES = {
    "heatmap": [(32, r"not a multiple of in_stride 32.*\(64, 64\)"), (8, r"use 1 deconv layer.*heatmap_size")],
    "integral_regression": [(32, "not a multiple of in_stride 32"), (4, r"use 0 deconv layer.*heatmap_size")],
    "rtmcc": [(32, r"not a multiple of in_stride 32.*input size")],
    "simcc": [(32, r"not a multiple of in_stride 32.*input size")],
    "regression": [],  # global average pooling: any stride fits
    "rle": [],
}


def test_every_head_has_stride_cases():
    assert set(BAD_STRIDES) == set(R.SINGLE_LEVEL)


@pytest.mark.parametrize(
    ("name", "stride", "message"), [(n, s, m) for n, cases in BAD_STRIDES.items() for s, m in cases]
)
def test_wrong_stride_is_rejected_at_build(name, stride, message):
    with pytest.raises(ValueError, match=message):
        R.RECIPES[name].build(in_stride=stride)


@pytest.mark.parametrize("name", [n for n, cases in BAD_STRIDES.items() if cases])
def test_feature_of_another_size_is_rejected_at_forward(name):
    head, _ = R.RECIPES[name].build()
    small = tuple(f[..., :2, :2] for f in R.features())
    with pytest.raises(ValueError, match="true stride"):
        head(small)


@pytest.mark.parametrize("name", R.SINGLE_LEVEL)
def test_wrong_channels_are_rejected_at_forward(name):
    head, _ = R.RECIPES[name].build()
    feats = R.features()
    with pytest.raises(ValueError, match=re.escape("out_channels[-1]")):
        head((feats[0], feats[1][:, :8]))


@pytest.mark.parametrize("name", R.SINGLE_LEVEL)
def test_codec_of_another_kind_is_rejected(name):
    other = "regression" if R.RECIPES[name].codec != "regression" else "simcc"
    codec = R.RECIPES[next(n for n, r in R.RECIPES.items() if r.codec == other)].build_codec()
    with pytest.raises(ValueError, match="pair the head with a matching codec"):
        HEADS.build(name, in_channels=16, in_stride=16, num_keypoints=5, codec=codec)


def test_heatmap_deconv_count_matches_heatmap_size():
    # 3 deconvs from stride 16 give stride 2, not the codec's stride 4.
    with pytest.raises(ValueError, match=r"3 deconv layer\(s\) make them 24x32.*use 2 deconv layer"):
        R.RECIPES["heatmap"].build(deconv_out_channels=(8, 8, 8), deconv_kernel_sizes=(4, 4, 4))


def test_heatmap_head_without_final_layer_needs_matching_channels():
    with pytest.raises(ValueError, match="has_final_layer=True"):
        R.RECIPES["heatmap"].build(has_final_layer=False)
    head, _ = R.RECIPES["heatmap"].build(deconv_out_channels=(16, 5), has_final_layer=False)
    assert head(R.features())["heatmaps"].shape[1] == 5


@pytest.mark.parametrize("loss", ["keypoint_ohkm_mse", "adaptive_wing"])
def test_heatmap_head_takes_another_loss(loss):
    built = LOSSES.build(loss, topk=2) if loss == "keypoint_ohkm_mse" else loss
    head, codec = R.RECIPES["heatmap"].build(loss=built)
    losses = head.loss(head(R.features()), codec.encode(*R.keypoints()))
    assert torch.isfinite(losses["loss_heatmaps"])


def test_unknown_loss_lists_the_registered_ones():
    with pytest.raises(ValueError, match="unknown loss 'l3'.*keypoint_mse"):
        R.RECIPES["heatmap"].build(loss="l3")


def test_integral_regression_heatmaps_are_distributions_and_coords_their_means():
    head, codec = R.RECIPES["integral_regression"].build()
    out = head(R.features())
    heatmaps = out["heatmaps"]
    torch.testing.assert_close(heatmaps.sum(dim=(-2, -1)), torch.ones(R.BATCH, R.NUM_KEYPOINTS))
    w_hm, h_hm = R.HEATMAP_SIZE
    x = (heatmaps * torch.arange(w_hm) / w_hm).sum(dim=(-2, -1))
    y = (heatmaps * (torch.arange(h_hm) / h_hm)[:, None]).sum(dim=(-2, -1))
    torch.testing.assert_close(out["coords"], torch.stack((x, y), dim=-1))
    # Without the heatmap term only the coordinate loss is reported (pure IPR).
    head, codec = R.RECIPES["integral_regression"].build(heatmap_loss_weight=0.0)
    assert set(head.loss(head(R.features()), codec.encode(*R.keypoints()))) == {"loss_coords"}


def test_integral_regression_soft_argmax_of_codec_heatmaps_gives_codec_coords():
    # A symmetric distribution around heatmap pixel (i, j) soft-argmaxes to (i / W_hm, j / H_hm) = (x / W, y / H)
    # (sigma 1 keeps the 3-sigma patch inside the 12 x 16 map).
    codec = build_codec("integral_regression", input_size=R.INPUT_SIZE, heatmap_size=R.HEATMAP_SIZE, sigma=1.0)
    kp = torch.tensor([[[4.0 * 5, 4.0 * 7]]])  # heatmap pixel (5, 7) at stride 4
    targets = codec.encode(kp, torch.ones(1, 1))
    w_hm, h_hm = R.HEATMAP_SIZE
    hm = targets["heatmaps"]
    x = (hm * torch.arange(w_hm) / w_hm).sum(dim=(-2, -1))
    y = (hm * (torch.arange(h_hm) / h_hm)[:, None]).sum(dim=(-2, -1))
    torch.testing.assert_close(torch.stack((x, y), dim=-1), targets["coords"], atol=1e-6, rtol=0)


def test_rle_sigmas_are_probabilities_and_decode_scores_use_them():
    head, codec = R.RECIPES["rle"].build()
    out = head(R.features())
    assert ((out["sigmas"] > 0) & (out["sigmas"] < 1)).all()
    _, scores = head.decode(out)
    torch.testing.assert_close(scores, (1 - out["sigmas"]).mean(-1))
    # The RealNVP flow is part of the head, so an optimiser over head.parameters() trains it.
    assert any(name.startswith("loss_module.flow_model.") for name, _ in head.named_parameters())


def test_rtmcc_options_rel_bias_and_rope_run():
    head, codec = R.RECIPES["rtmcc"].build(use_rel_bias=True, pos_enc=True, act_fn="ReLU", drop_path=0.1)
    out = head(R.features())
    sum(head.loss(out, codec.encode(*R.keypoints())).values()).backward()
    assert head.gau.w.grad is not None


# ----------------------------------------------------------------------------- one-stage (multi-level) heads


@pytest.mark.parametrize("name", R.MULTI_LEVEL)
def test_multi_level_forward_loss_backward_decode(name):
    torch.manual_seed(0)
    head, codec = R.build_multi_level(name)
    assert not isinstance(head, PoseHead) and head.multi_level
    outputs = head(R.pyramid())
    assert tuple(outputs) == tuple(codec.output_keys)
    for key, value in outputs.items():
        assert value.shape[:2] == (R.BATCH, R.ML_ANCHORS) and torch.isfinite(value).all(), key

    losses = head.loss(outputs, R.people(codec, (0, 3)))  # an image without people, one with three
    assert losses and all(name.startswith("loss_") and v.ndim == 0 and torch.isfinite(v) for name, v in losses.items())
    sum(losses.values()).backward()
    no_grad = [n for n, p in head.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad}"

    head.eval()
    with torch.no_grad():
        poses = head.decode(head(R.pyramid()))
    assert len(poses) == R.BATCH
    assert all(p.keypoints.shape[1:] == (R.NUM_KEYPOINTS, 2) for p in poses)


@pytest.mark.parametrize("name", R.MULTI_LEVEL)
def test_multi_level_batch_without_people_trains_objectness_only(name):
    head, codec = R.build_multi_level(name)
    with torch.no_grad():
        losses = head.loss(head(R.pyramid()), R.people(codec, (0, 0)))
    assert float(losses.pop("loss_obj")) > 0
    assert all(float(v) == 0 for v in losses.values())


@pytest.mark.parametrize("name", R.MULTI_LEVEL)
def test_multi_level_checks(name):
    with pytest.raises(ValueError, match="num_keypoints must be a positive int"):
        R.build_multi_level(name, num_keypoints=0)
    with pytest.raises(ValueError, match="one-stage codec"):
        HEADS.build(
            name,
            in_channels=R.ML_CHANNELS,
            in_stride=R.ML_STRIDES,
            num_keypoints=5,
            codec=R.RECIPES["simcc"].build_codec(),
        )
    with pytest.raises(ValueError, match="sequences"):
        R.build_multi_level(name, in_channels=16, in_stride=16)
    head, codec = R.build_multi_level(name)
    feats = R.pyramid()
    with pytest.raises(ValueError, match="out_channels and strides"):
        head((feats[0][:, :4], *feats[1:]))
    with pytest.raises(ValueError, match=rf"num_keypoints={R.NUM_KEYPOINTS - 1}"):
        head.loss(head(feats), R.people(codec, (1, 2), num_keypoints=R.NUM_KEYPOINTS - 1))
