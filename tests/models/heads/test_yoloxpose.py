"""YOLOX-Pose head at COCO's K = 17 on a 256 x 256 input: shapes, priors, decoding, initial
objectness, losses (people / no people / crowd regions), and how it refuses parts that do not fit."""

from __future__ import annotations

import math

import pytest
import torch

import posecore.models.heads  # noqa: F401  (registers the heads)
import posecore.models.necks  # noqa: F401
from posecore.codecs import build_codec
from posecore.codecs.yoloxpose import DEFAULT_SIGMA
from posecore.models.builders import HEADS, LOSSES, NECKS
from posecore.models.heads import YOLOXPoseHead
from posecore.models.heads.yoloxpose import HEATMAP_PRIOR_PROB
from posecore.models.losses.detection import box_iou, keypoint_oks

K = 17
SIZE = 256
STRIDES = (8, 16, 32)
CHANNELS = (16, 16, 16)
A = 32 * 32 + 16 * 16 + 8 * 8  # 1344


def _head(refine: str = "none", **options) -> YOLOXPoseHead:
    codec = build_codec("yoloxpose", input_size=(SIZE, SIZE), refine=refine)
    options = {"feat_channels": 16, **options}
    return HEADS.build("yoloxpose", in_channels=CHANNELS, in_stride=STRIDES, num_keypoints=K, codec=codec, **options)


def _feats(batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(
        torch.randn(batch, c, SIZE // s, SIZE // s, generator=g) for c, s in zip(CHANNELS, STRIDES, strict=True)
    )


def _targets(head: YOLOXPoseHead, counts: tuple[int, ...] = (0, 3), seed: int = 0) -> dict[str, torch.Tensor]:
    """Whole-image targets: image b has counts[b] people, padded to the most; encoded by the head's codec."""
    g = torch.Generator().manual_seed(seed)
    n = max(max(counts), 1)
    out = {key: torch.zeros(len(counts), n, *shape) for key, shape in head.codec.target_shapes(K).items()}
    out["valid"] = torch.zeros(len(counts), n, dtype=torch.bool)
    for b, count in enumerate(counts):
        if count:
            centres = 40 + torch.rand(count, 1, 2, generator=g) * (SIZE - 80)
            kp = centres + torch.randn(count, K, 2, generator=g) * 20
            encoded = head.codec.encode(kp, torch.ones(count, K))
            for key in head.codec.target_keys:
                out[key][b, :count] = encoded[key]
            out["valid"][b, :count] = True
    return out


def test_forward_shapes_for_coco_at_256():
    head = _head()
    assert head.multi_level and head.num_anchors == A and head.strides == STRIDES and head.num_keypoints == K
    out = head(_feats())
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "obj_logits": (2, A),
        "boxes": (2, A, 4),
        "keypoints": (2, A, K, 2),
        "vis_logits": (2, A, K),
    }
    assert tuple(out) == tuple(head.codec.output_keys)


def test_priors_are_anchor_points_level_by_level_row_major():
    head = _head()
    priors, strides = head.priors, head.prior_strides
    assert priors.shape == (A, 2) and strides.shape == (A,)
    assert priors[0].tolist() == [0, 0] and priors[1].tolist() == [8, 0] and priors[32].tolist() == [0, 8]
    assert priors[1023].tolist() == [248, 248] and strides[1023] == 8
    assert priors[1024].tolist() == [0, 0] and strides[1024] == 16 and priors[1025].tolist() == [16, 0]
    assert priors[1024 + 256].tolist() == [0, 0] and strides[-1] == 32 and priors[-1].tolist() == [224, 224]
    # computed once, not part of checkpoints
    state = head.state_dict()
    assert not any(key in state for key in ("priors", "prior_strides", "sigmas"))


def test_zero_regression_decodes_to_the_anchor_and_a_stride_sized_box():
    head = _head()
    with torch.no_grad():
        for conv in (*head.box_preds, *head.kpt_preds):
            conv.weight.zero_()
            conv.bias.zero_()
    out = head(_feats(batch=1))
    half = head.prior_strides[:, None] / 2
    torch.testing.assert_close(out["boxes"][0], torch.cat([head.priors - half, head.priors + half], dim=1))
    torch.testing.assert_close(out["keypoints"][0], head.priors[:, None].expand(A, K, 2))
    # offsets are in strides: a bias of 1 on x moves every keypoint by its anchor's stride
    with torch.no_grad():
        for conv in head.kpt_preds:
            conv.bias[0::2] = 1.0
    moved = head(_feats(batch=1))["keypoints"][0]
    torch.testing.assert_close(moved[..., 0] - head.priors[:, None, 0], head.prior_strides[:, None].expand(A, K))


def test_box_size_exponent_is_clamped():
    head = _head()
    with torch.no_grad():
        for conv in head.box_preds:
            conv.bias[2:] = 1e4
        boxes = head(_feats(batch=1))["boxes"]
    assert torch.isfinite(boxes).all()
    assert float((boxes[..., 2] - boxes[..., 0]).max()) == pytest.approx(2 * SIZE / 8 * 32, rel=1e-4)


def test_objectness_starts_at_the_prior_probability():
    head = _head()
    for conv in head.obj_preds:
        assert float(conv.bias.detach()) == pytest.approx(-math.log(99), abs=1e-6)  # -4.595: p = 0.01
    feats = tuple(torch.zeros_like(f) for f in _feats())
    head.eval()
    with torch.no_grad():
        score = torch.sigmoid(head(feats)["obj_logits"])
    assert float((score - 0.01).abs().max()) < 0.02


def test_loss_with_an_empty_image_and_one_with_three_people_trains_every_part():
    torch.manual_seed(0)
    head = _head()
    losses = head.loss(head(_feats()), _targets(head, (0, 3)))
    assert set(losses) == {"loss_obj", "loss_box", "loss_oks", "loss_vis"}
    assert all(v.ndim == 0 and torch.isfinite(v) and float(v.detach()) > 0 for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in head.parameters())
    gt_index, _, _ = head.assign(head(_feats()), _targets(head, (0, 3)))
    assert not (gt_index[0] >= 0).any() and set(gt_index[1][gt_index[1] >= 0].tolist()) <= {0, 1, 2}


def test_loss_terms_are_normalised_by_the_positives():
    head = _head()
    out = head(_feats())
    targets = _targets(head, (2, 3))
    gt_index, ious, _ = head.assign(out, targets)
    positive = gt_index >= 0
    num_pos = int(positive.sum())
    obj_target = torch.where(positive, ious, torch.zeros_like(ious))
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out["obj_logits"], obj_target, reduction="sum")
    losses = head.loss(out, targets)
    torch.testing.assert_close(losses["loss_obj"], expected / num_pos)
    b, a = positive.nonzero(as_tuple=True)
    g = gt_index[b, a]
    iou = box_iou(out["boxes"][b, a], targets["boxes"][b, g])
    torch.testing.assert_close(losses["loss_box"], 5.0 * (1 - iou.square()).sum() / num_pos)


def test_oks_objectness_target_is_the_square_root_of_each_positives_oks():
    head = _head(obj_target="oks")
    out = head(_feats())
    targets = _targets(head, (2, 3))
    gt_index, _, _ = head.assign(out, targets)
    positive = gt_index >= 0
    b, a = positive.nonzero(as_tuple=True)
    g = gt_index[b, a]
    oks = keypoint_oks(
        out["keypoints"][b, a],
        targets["keypoints"][b, g],
        targets["visible"][b, g],
        targets["areas"][b, g],
        head.sigmas,
        norm_target_weight=True,
    )
    obj_target = torch.zeros_like(out["obj_logits"])
    obj_target[b, a] = oks.sqrt()
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out["obj_logits"], obj_target, reduction="sum")
    torch.testing.assert_close(head.loss(out, targets)["loss_obj"], expected / int(positive.sum()))
    with pytest.raises(ValueError, match="obj_target"):
        _head(obj_target="centerness")


def test_crowd_regions_give_no_objectness_gradient():
    head = _head()
    out = head(_feats())
    out["obj_logits"].retain_grad()
    targets = _targets(head, (0, 0))
    targets["ignore_boxes"] = torch.tensor([[[0.0, 0.0, 100.0, 100.0]], [[0.0, 0.0, 0.0, 0.0]]])
    targets["ignore_valid"] = torch.tensor([[True], [False]])
    head.loss(out, targets)["loss_obj"].backward()
    grad = out["obj_logits"].grad
    inside = (head.priors > 0).all(dim=1) & (head.priors < 100).all(dim=1)
    assert float(grad[0, inside].abs().sum()) == 0.0 and (grad[0, ~inside] != 0).all()
    assert (grad[1] != 0).all()  # its crowd box is not valid


def test_optional_keypoint_l1_loss():
    head = _head(kpt_loss_weight=1.0)
    losses = head.loss(head(_feats()), _targets(head, (1, 2)))
    assert "loss_kpt" in losses and torch.isfinite(losses["loss_kpt"]) and float(losses["loss_kpt"].detach()) > 0


def test_sigmas_come_from_the_codec():
    assert torch.allclose(_head().sigmas, torch.full((K,), DEFAULT_SIGMA))
    coco = tuple(0.025 + 0.005 * i for i in range(K))
    codec = build_codec("yoloxpose", input_size=(SIZE, SIZE), sigmas=coco)
    head = HEADS.build("yoloxpose", in_channels=CHANNELS, in_stride=STRIDES, num_keypoints=K, codec=codec)
    assert torch.allclose(head.sigmas, torch.tensor(coco)) and torch.allclose(head.oks_loss.sigmas, torch.tensor(coco))
    codec = build_codec("yoloxpose", input_size=(SIZE, SIZE), sigmas=coco[:5])
    with pytest.raises(ValueError, match="5 OKS sigmas but the head predicts 17"):
        HEADS.build("yoloxpose", in_channels=CHANNELS, in_stride=STRIDES, num_keypoints=K, codec=codec)


def test_parts_that_do_not_fit_are_refused():
    codec = build_codec("yoloxpose", input_size=(200, 256))
    with pytest.raises(ValueError, match=r"multiple of the largest stride 32.*\(224, 256\)"):
        HEADS.build("yoloxpose", in_channels=CHANNELS, in_stride=STRIDES, num_keypoints=K, codec=codec)
    simcc = build_codec("simcc", input_size=(192, 256))
    with pytest.raises(ValueError, match="one-stage codec"):
        HEADS.build("yoloxpose", in_channels=CHANNELS, in_stride=STRIDES, num_keypoints=K, codec=simcc)
    codec = _head().codec
    with pytest.raises(ValueError, match="one per level"):
        HEADS.build("yoloxpose", in_channels=CHANNELS[:2], in_stride=STRIDES, num_keypoints=K, codec=codec)
    with pytest.raises(ValueError, match="strides must increase"):
        HEADS.build("yoloxpose", in_channels=CHANNELS, in_stride=(8, 32, 16), num_keypoints=K, codec=codec)
    head = _head()
    with pytest.raises(ValueError, match="3 feature levels"):
        head(_feats()[:2])
    small = tuple(f[..., :4, :4] for f in _feats())
    with pytest.raises(ValueError, match="codec's input size"):
        head(small)
    with pytest.raises(KeyError, match="valid"):
        head.loss(head(_feats()), {k: v for k, v in _targets(head).items() if k != "valid"})


# ----------------------------------------------------------------------------- heatmap refinement


def test_heatmap_branch_predicts_stride_4_maps_starting_at_the_prior():
    head = _head("heatmap")
    out = head(_feats())
    assert tuple(out) == tuple(head.codec.output_keys) == (*_head().codec.output_keys, "heatmaps")
    assert tuple(out["heatmaps"].shape) == (2, K, SIZE // 4, SIZE // 4)
    # the last conv's bias sets every cell's initial keypoint probability to about HEATMAP_PRIOR_PROB
    bias = head.heatmap_convs[-1].bias
    torch.testing.assert_close(torch.sigmoid(bias), torch.full_like(bias, HEATMAP_PRIOR_PROB))
    assert not hasattr(_head(), "heatmap_convs") and "heatmaps" not in _head()(_feats())


def test_heatmap_targets_put_one_at_each_visible_keypoints_cell_and_a_gaussian_around_it():
    head = _head("heatmap")
    s = head.heatmap_stride
    kpts = torch.zeros(1, 2, K, 2)
    kpts[0, 0, :] = torch.tensor([41.0, 82.0])  # cell (10.25, 20.5) -> rounded (10, 20)
    kpts[0, 0, 1] = torch.tensor([120.0, 120.0])  # keypoint 1 of person 0 is invisible: no peak
    kpts[0, 1, :] = torch.tensor([200.0, 40.0])  # person 1 is padding: no peaks
    visible = torch.ones(1, 2, K)
    visible[0, 0, 1] = 0
    areas = torch.tensor([[400.0, 400.0]])  # sqrt 20 px
    valid = torch.tensor([[True, False]])
    target, weights = head.heatmap_targets(
        {"keypoints": kpts, "visible": visible, "areas": areas, "valid": valid}, (SIZE // s, SIZE // s)
    )
    assert tuple(target.shape) == (1, K, SIZE // s, SIZE // s) and torch.equal(weights, torch.ones(1, K))
    k0 = target[0, 0]
    assert float(k0[20, 10]) == 1.0 and int((k0 == 1).sum()) == 1  # row y = 20, column x = 10
    # sigma in cells: 2 * sigma_k * sqrt(area) / s = 2 * 0.079 * 20 / 4 = 0.79 (DEFAULT_SIGMA), kept at least 1
    assert float(k0[20, 11]) == pytest.approx(math.exp(-1 / 2), rel=1e-5)
    assert float(k0[22, 10]) == pytest.approx(math.exp(-4 / 2), rel=1e-5)
    assert float(target[0, 1].max()) == 0.0  # the invisible keypoint
    assert float(target[0, 2, 10, 50]) < 1e-6  # nothing at the padded person's keypoints
    # larger people get wider Gaussians: sqrt(area) 60 -> sigma 2 * 0.079 * 60 / 4 = 2.37 cells;
    # sqrt(area) 100 -> 3.95, kept at 3
    for area, sigma in ((3600.0, 2 * DEFAULT_SIGMA * 60 / 4), (10000.0, 3.0)):
        wide, _ = head.heatmap_targets(
            {"keypoints": kpts, "visible": visible, "areas": torch.tensor([[area, 0.0]]), "valid": valid},
            (SIZE // s, SIZE // s),
        )
        assert float(wide[0, 11, 20, 13]) == pytest.approx(math.exp(-9 / (2 * sigma**2)), rel=1e-5)


def test_heatmap_targets_of_two_people_take_the_maximum():
    head = _head("heatmap")
    t = _targets(head, (2,))
    maps, _ = head.heatmap_targets(t, (SIZE // 4, SIZE // 4))
    one = [head.heatmap_targets({k: v[:, i : i + 1] for k, v in t.items()}, (SIZE // 4, SIZE // 4))[0] for i in (0, 1)]
    torch.testing.assert_close(maps, torch.maximum(*one))


def test_heatmap_loss_trains_the_heatmap_branch_even_on_an_image_with_no_people():
    torch.manual_seed(0)
    head = _head("heatmap", heatmap_loss_weight=2.0)
    out = head(_feats())
    losses = head.loss(out, _targets(head, (0, 3)))
    assert set(losses) == {"loss_obj", "loss_box", "loss_oks", "loss_vis", "loss_heatmap"}
    target, weights = head.heatmap_targets(_targets(head, (0, 3)), out["heatmaps"].shape[-2:])
    expected = 2.0 * LOSSES.build("focal_heatmap")(out["heatmaps"], target, weights)
    torch.testing.assert_close(losses["loss_heatmap"], expected)
    losses["loss_heatmap"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.heatmap_convs.parameters())
    empty = head.loss(head(_feats()), _targets(head, (0, 0)))["loss_heatmap"]
    assert torch.isfinite(empty) and float(empty.detach()) > 0  # the background still teaches low probabilities


def test_heatmap_stride_must_divide_the_finest_level():
    codec = build_codec("yoloxpose", input_size=(SIZE, SIZE), refine="heatmap", heatmap_stride=16)
    with pytest.raises(ValueError, match="heatmap_stride 16 must divide the finest level's stride 8"):
        HEADS.build("yoloxpose", in_channels=CHANNELS, in_stride=STRIDES, num_keypoints=K, codec=codec)


def test_with_the_pafpn_neck_on_a_backbone_pyramid():
    neck = NECKS.build("pafpn", in_channels=(24, 40, 80), strides=STRIDES, out_channels=16, num_csp_blocks=1)
    codec = build_codec("yoloxpose", input_size=(SIZE, SIZE))
    head = HEADS.build(
        "yoloxpose", in_channels=neck.out_channels, in_stride=neck.strides, num_keypoints=K, codec=codec,
        feat_channels=16, use_depthwise=True,
    )  # fmt: skip
    g = torch.Generator().manual_seed(1)
    pyramid = tuple(
        torch.randn(2, c, SIZE // s, SIZE // s, generator=g) for c, s in zip((24, 40, 80), STRIDES, strict=True)
    )
    out = head(neck(pyramid))
    sum(head.loss(out, _targets(head, (3, 0))).values()).backward()
    assert all(p.grad is not None for p in (*neck.parameters(), *head.parameters()))
    head.eval()
    with torch.no_grad():
        poses = head.decode(head(neck(pyramid)))
    assert len(poses) == 2 and all(p.keypoints.shape[1:] == (K, 2) for p in poses)


def _skip_head() -> YOLOXPoseHead:
    codec = build_codec("yoloxpose", input_size=(SIZE, SIZE), refine="heatmap")
    return HEADS.build(
        "yoloxpose", in_channels=(8, *CHANNELS), in_stride=(4, *STRIDES), num_keypoints=K, codec=codec,
        feat_channels=16, heatmap_skip=True,
    )  # fmt: skip


def test_heatmap_skip_feeds_the_stride_4_level_to_the_heatmaps_only():
    head = _skip_head().eval()
    assert head.strides == STRIDES and head.num_anchors == A and head.skip_channels == 8
    skip = torch.randn(2, 8, SIZE // 4, SIZE // 4, requires_grad=True)
    feats = _feats()
    out = head((skip, *feats))
    assert tuple(out["heatmaps"].shape) == (2, K, SIZE // 4, SIZE // 4)
    (grad,) = torch.autograd.grad(out["heatmaps"].sum(), skip, retain_graph=True)
    assert grad.abs().sum() > 0
    dense = sum(out[k].sum() for k in ("obj_logits", "boxes", "keypoints", "vis_logits"))
    assert torch.autograd.grad(dense, skip, allow_unused=True)[0] is None  # anchors do not read the skip
    with torch.no_grad():
        other = head((torch.zeros_like(skip), *feats))
    torch.testing.assert_close(other["keypoints"], out["keypoints"].detach())
    assert not torch.allclose(other["heatmaps"], out["heatmaps"].detach())
    sum(head.loss(head((skip, *feats)), _targets(head, (3, 0))).values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.heatmap_skip.parameters() if p.ndim > 1)


def test_heatmap_skip_is_refused_where_it_cannot_apply():
    codec = build_codec("yoloxpose", input_size=(SIZE, SIZE), refine="heatmap")
    plain = build_codec("yoloxpose", input_size=(SIZE, SIZE))
    unread = HEADS.build("yoloxpose", in_channels=(8, *CHANNELS), in_stride=(4, *STRIDES), num_keypoints=K,
                         codec=plain, heatmap_skip=True)  # fmt: skip
    assert unread.skip_channels == 0 and not hasattr(unread, "heatmap_skip") and unread.strides == STRIDES
    assert "heatmaps" not in unread((torch.randn(2, 8, SIZE // 4, SIZE // 4), *_feats()))  # refine: none reads no skip
    with pytest.raises(ValueError, match="pass it through the neck"):
        HEADS.build(
            "yoloxpose", in_channels=CHANNELS, in_stride=STRIDES, num_keypoints=K, codec=codec, heatmap_skip=True
        )
    with pytest.raises(ValueError, match="first feature is the skip level"):
        _skip_head()(_feats())


def test_heatmap_skip_on_a_built_estimator_wires_backbone_neck_and_head():
    from posecore.metainfo import load_meta
    from posecore.models.estimator import ModelSpec, build_estimator

    spec = ModelSpec.resolve(
        "yoloxpose-lite0", input_size=(64, 64), backbone={"out_indices": [0, 1, 2, 3], "pretrained": None},
        neck={"pass_through": 1}, head={"heatmap_skip": True},
    )  # fmt: skip
    model = build_estimator(spec, load_meta("coco"), pretrained=False).eval()
    assert model.neck.strides == (4, 8, 16, 32) and model.head.strides == STRIDES
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert tuple(out["heatmaps"].shape) == (1, K, 16, 16) and out["keypoints"].shape[1] == 8 * 8 + 4 * 4 + 2 * 2
