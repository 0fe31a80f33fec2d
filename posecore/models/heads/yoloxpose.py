"""YOLOX-Pose head (Maji et al. 2022; MMPose's ``YOLOXPoseHead``): one-stage multi-person pose, no detector.

Dense predictions at every anchor point of several feature levels (strides 8, 16, 32 as a
rule), decoded in the head so that every output is in input pixels; SimOTA picks each step
which anchors learn which person (:mod:`._simota`).

Over 400 lines because the head owns its whole task: the four dense branches, the optional
heatmap branch (and its stride-4 skip), anchor priors, assignment-driven losses and the heatmap
targets read one set of shapes; the assigner and the decoding already live elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from posecore.codecs import ONESTAGE_OUTPUT_KEYS, Codec, OneStageCodec, Poses
from posecore.codecs.yoloxpose import DEFAULT_SIGMA, HEATMAP_OUTPUT_KEY
from posecore.models.backbones.cspnext import ConvBNSiLU, DepthwiseSeparableConv
from posecore.models.builders import HEADS
from posecore.models.losses.detection import BCELoss, IoULoss, OKSLoss, keypoint_oks
from posecore.models.losses.heatmap import FocalHeatmapLoss

from ._base import KeypointAxes, _positive_int, layer_keypoint_axes
from ._simota import SimOTAAssigner

#: Initial person probability of every anchor (YOLOX / RetinaNet's prior): logit -4.595.
PRIOR_PROB = 0.01
#: Initial keypoint probability of every heatmap cell (CenterNet's prior): logit -2.19.
HEATMAP_PRIOR_PROB = 0.1
#: Targets the head reads besides the codec's: which padded people are real, and crowd regions.
TARGET_KEYS = ("boxes", "keypoints", "visible", "areas", "valid")


@HEADS.register("yoloxpose")
class YOLOXPoseHead(nn.Module):
    """feats: tuple of L maps (B, in_channels[l], H / s_l, W / s_l), s_l = in_stride[l]
    -> "obj_logits" (B, A), "boxes" (B, A, 4) xyxy, "keypoints" (B, A, K, 2), "vis_logits" (B, A, K),
    coordinates in input pixels, A = sum of (H / s_l) (W / s_l) anchors, level by level, row-major.

    Per level, three branches of 3x3 conv-BN-SiLU (``stacked_convs`` each, the pose branch twice
    as many) of ``feat_channels``: objectness (1 logit), box (dx, dy, log w, log h) and pose
    (K offsets, K visibility logits), as MMPose's ``YOLOXPoseHeadModule`` less its separate class
    score (one class: the objectness is the person score). Decoding from the anchor point p
    (x s, y s) (MMPose's ``MlvlPointGenerator``, offset 0): box centre p + (dx, dy) s, size
    exp(log w, log h) s (exponent clamped so that no box overflows), keypoints p + offset s.

    ``loss(outputs, targets)`` -> "loss_obj", "loss_box", "loss_oks", "loss_vis" (+ "loss_kpt"
    when ``kpt_loss_weight`` > 0), each a sum over positives (over all anchors but crowd-ignored
    ones for objectness) divided by the number of positives (at least 1), as YOLOX; the
    visibility BCE is the mean over the positives' keypoints, as MMPose. Objectness is IoU-aware:
    its target is the IoU of the positive's box with its person's (0 for negatives), or with
    ``obj_target="oks"`` the square root of its keypoints' OKS (MMPose's RTMO / YOLOX-Pose class target).
    Defaults follow MMPose's ``yoloxpose_s_8xb32-300e_coco-640``: IoU loss 1 - IoU^2 weight 5,
    OKS loss weight 30 over the visible keypoints, BCE weight 1.

    With a codec of ``refine="heatmap"`` a fourth branch reads the finest level, upsamples it to
    the codec's ``heatmap_stride`` and predicts "heatmaps" (B, K, H / s, W / s): logits of every
    visible keypoint of every person, trained with ``focal_heatmap`` ("loss_heatmap", weight
    ``heatmap_loss_weight``) against targets drawn from the batch's people (:meth:`heatmap_targets`).
    Decoding snaps the regressed keypoints to their peaks (CenterNet; ``posecore/codecs/_refine.py``).
    With ``heatmap_skip`` the first input level is finer backbone features at the heatmap stride
    (the neck's ``pass_through``), read by the heatmap branch only: a 1x1 conv of it is added to
    the upsampled finest level, as a U-Net skip; the anchors sit on the other levels. With a codec
    that predicts no heatmaps (``refine: none``) the skip level is accepted and read by nothing, so
    that the preset's codec can be overridden alone.
    """

    multi_level: ClassVar[bool] = True
    output_keys: ClassVar[tuple[str, ...]] = ONESTAGE_OUTPUT_KEYS

    def __init__(
        self,
        in_channels: Sequence[int],
        in_stride: Sequence[int],
        num_keypoints: int,
        codec: Codec,
        feat_channels: int = 256,
        stacked_convs: int = 2,
        use_depthwise: bool = False,
        obj_loss_weight: float = 1.0,
        box_loss_weight: float = 5.0,
        oks_loss_weight: float = 30.0,
        vis_loss_weight: float = 1.0,
        kpt_loss_weight: float = 0.0,
        box_loss_mode: str = "square",
        center_radius: float = 2.5,
        candidate_topk: int = 10,
        assign_iou_weight: float = 3.0,
        assign_oks_weight: float = 3.0,
        obj_target: str = "iou",
        heatmap_loss_weight: float = 1.0,
        heatmap_skip: bool = False,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.skip_channels, self.skip_level = 0, bool(heatmap_skip)
        if heatmap_skip:
            in_channels, in_stride, self.skip_channels = self._split_skip(in_channels, in_stride, codec)
        self.in_channels, self.strides = self._check_levels(in_channels, in_stride)
        self.num_keypoints = _positive_int(name, "num_keypoints", num_keypoints, " (use the dataset meta's)")
        feat_channels = _positive_int(name, "feat_channels", feat_channels)
        stacked_convs = _positive_int(name, "stacked_convs", stacked_convs)
        if not isinstance(codec, OneStageCodec) or tuple(codec.output_keys[:4]) != ONESTAGE_OUTPUT_KEYS:
            raise ValueError(
                f"{name} is a one-stage head and needs a one-stage codec (OneStageCodec with output_keys "
                f"{ONESTAGE_OUTPUT_KEYS}), e.g. build_codec('yoloxpose', input_size=...); got {type(codec).__name__}"
            )
        self.codec = codec
        k = self.num_keypoints

        def branch(c_in: int, depth: int) -> nn.Sequential:
            conv = DepthwiseSeparableConv if use_depthwise else ConvBNSiLU
            return nn.Sequential(*(conv(c_in if i == 0 else feat_channels, feat_channels, 3) for i in range(depth)))

        def outputs(channels: int) -> nn.ModuleList:
            return nn.ModuleList(nn.Conv2d(feat_channels, channels, 1) for _ in self.strides)

        self.cls_convs = nn.ModuleList(branch(c, stacked_convs) for c in self.in_channels)
        self.reg_convs = nn.ModuleList(branch(c, stacked_convs) for c in self.in_channels)
        self.pose_convs = nn.ModuleList(branch(c, 2 * stacked_convs) for c in self.in_channels)
        self.obj_preds, self.box_preds = outputs(1), outputs(4)
        self.kpt_preds, self.vis_preds = outputs(2 * k), outputs(k)
        with torch.no_grad():
            for conv in (*self.obj_preds, *self.box_preds, *self.kpt_preds, *self.vis_preds):
                conv.bias.zero_()
            for conv in self.obj_preds:
                conv.bias.fill_(-math.log((1 - PRIOR_PROB) / PRIOR_PROB))

        self.output_keys = tuple(codec.output_keys)  # type: ignore[misc]
        self.heatmap_stride = 0
        if HEATMAP_OUTPUT_KEY in self.output_keys:
            self.heatmap_stride = int(getattr(codec, "heatmap_stride", 4))
            self._make_heatmap_branch(feat_channels, k, use_depthwise)
        self.heatmap_loss = FocalHeatmapLoss(loss_weight=heatmap_loss_weight)

        self._make_priors()
        sigmas = getattr(codec, "sigmas", None)
        sigmas = (DEFAULT_SIGMA,) * k if sigmas is None else tuple(sigmas)
        if len(sigmas) != k:
            raise ValueError(
                f"{name}: the codec has {len(sigmas)} OKS sigmas but the head predicts {k} keypoints; give the "
                "codec one sigma per keypoint (the dataset's) or none"
            )
        self.register_buffer("sigmas", torch.tensor(sigmas, dtype=torch.float32), persistent=False)
        self.assigner = SimOTAAssigner(
            center_radius, candidate_topk, iou_weight=assign_iou_weight, oks_weight=assign_oks_weight
        )
        self.obj_loss = BCELoss(reduction="sum", loss_weight=obj_loss_weight)
        self.box_loss = IoULoss(mode=box_loss_mode, reduction="sum", loss_weight=box_loss_weight)
        self.oks_loss = OKSLoss(sigmas, norm_target_weight=True, reduction="sum", loss_weight=oks_loss_weight)
        self.vis_loss = BCELoss(reduction="mean", loss_weight=vis_loss_weight)
        self.kpt_loss_weight = float(kpt_loss_weight)
        if obj_target not in ("iou", "oks"):
            raise ValueError(f"{name}: obj_target must be 'iou' or 'oks', got {obj_target!r}")
        self.obj_target = obj_target

    # ------------------------------------------------------------------ build-time helpers

    @classmethod
    def _split_skip(
        cls, in_channels: Sequence[int], in_stride: Sequence[int], codec: Codec
    ) -> tuple[tuple[int, ...], tuple[int, ...], int]:
        """(anchor levels' channels, their strides, the skip level's channels: 0 when nothing reads it)."""
        name = cls.__name__
        channels, strides = tuple(in_channels), tuple(in_stride)
        heatmaps = HEATMAP_OUTPUT_KEY in tuple(getattr(codec, "output_keys", ()))
        s = int(getattr(codec, "heatmap_stride", 4))
        if len(channels) < 2 or len(strides) != len(channels) or (heatmaps and strides[0] != s):
            raise ValueError(
                f"{name}: heatmap_skip reads the first level as features at the heatmap stride {s}, then the anchor "
                f"levels; got strides {strides}. Add the backbone's stride-{s} level (out_indices) and pass it "
                "through the neck (pafpn pass_through: 1), or set heatmap_skip: false"
            )
        return channels[1:], strides[1:], int(channels[0]) if heatmaps else 0

    @classmethod
    def _check_levels(
        cls, in_channels: Sequence[int], in_stride: Sequence[int]
    ) -> tuple[tuple[int, ...], tuple[int, ...]]:
        name = cls.__name__
        if isinstance(in_channels, int) or isinstance(in_stride, int):
            raise ValueError(
                f"{name} reads every feature level: in_channels and in_stride must be sequences (the neck's "
                f"out_channels and strides), got {in_channels!r} and {in_stride!r}"
            )
        channels = tuple(_positive_int(name, "in_channels entries", c) for c in in_channels)
        strides = tuple(_positive_int(name, "in_stride entries", s) for s in in_stride)
        if not channels or len(channels) != len(strides):
            raise ValueError(f"{name}: got {len(channels)} in_channels and {len(strides)} strides; one per level")
        if list(strides) != sorted(set(strides)):
            raise ValueError(f"{name}: strides must increase (fine to coarse levels); got {strides}")
        return channels, strides

    def _make_heatmap_branch(self, feat_channels: int, k: int, use_depthwise: bool) -> None:
        """conv at the finest level -> upsample to ``heatmap_stride`` -> conv -> 1x1 to K logits."""
        finest, s = self.strides[0], self.heatmap_stride
        if finest % s:
            raise ValueError(
                f"{type(self).__name__}: the codec's heatmap_stride {s} must divide the finest level's stride "
                f"{finest} (the heatmaps are that level upsampled)"
            )
        conv = DepthwiseSeparableConv if use_depthwise else ConvBNSiLU
        layers: list[nn.Module] = [conv(self.in_channels[0], feat_channels, 3)]
        if finest // s > 1:
            layers.append(nn.Upsample(scale_factor=finest // s, mode="bilinear", align_corners=False))
        layers += [conv(feat_channels, feat_channels, 3), nn.Conv2d(feat_channels, k, 1)]
        self.heatmap_convs = nn.Sequential(*layers)
        if self.skip_channels:
            self.heatmap_skip = ConvBNSiLU(self.skip_channels, feat_channels, 1)
        with torch.no_grad():
            self.heatmap_convs[-1].bias.fill_(-math.log((1 - HEATMAP_PRIOR_PROB) / HEATMAP_PRIOR_PROB))

    def _make_priors(self) -> None:
        """Anchor points (A, 2) (x s, y s) and their strides (A,), level by level, row-major: buffers."""
        size = getattr(self.codec, "input_size", None)
        if not (isinstance(size, tuple) and len(size) == 2):
            raise ValueError(f"{type(self).__name__}: codec {type(self.codec).__name__} has no (W, H) input_size")
        w, h = size
        top = self.strides[-1]
        if w % top or h % top:
            fit = (-(-w // top) * top, -(-h // top) * top)
            raise ValueError(
                f"{type(self).__name__}: input_size (W, H) = {(w, h)} must be a multiple of the largest stride "
                f"{top} so that every level's anchors tile the input; use e.g. {fit}"
            )
        points, strides = [], []
        self.level_sizes: tuple[tuple[int, int], ...] = tuple((h // s, w // s) for s in self.strides)
        for s, (fh, fw) in zip(self.strides, self.level_sizes, strict=True):
            ys, xs = torch.meshgrid(torch.arange(fh), torch.arange(fw), indexing="ij")
            points.append(torch.stack((xs, ys), dim=-1).reshape(-1, 2).float() * s)
            strides.append(torch.full((fh * fw,), float(s)))
        self.register_buffer("priors", torch.cat(points), persistent=False)
        self.register_buffer("prior_strides", torch.cat(strides), persistent=False)
        # no box may be wider than twice the input at the finest level: exp() stays finite in float16
        self.max_log_size = math.log(2 * max(w, h) / self.strides[0])

    @property
    def num_anchors(self) -> int:
        return int(self.priors.shape[0])

    def keypoint_axes(self) -> KeypointAxes:
        """Per level, ``kpt_preds`` ((dx, dy) of each keypoint in turn) and ``vis_preds`` (one logit per
        keypoint); with a heatmap branch, its last conv (one map per keypoint)."""
        out: KeypointAxes = {}
        for i in range(len(self.strides)):
            out.update(layer_keypoint_axes(f"kpt_preds.{i}", self.kpt_preds[i], 2))
            out.update(layer_keypoint_axes(f"vis_preds.{i}", self.vis_preds[i], 1))
        heatmap_convs = getattr(self, "heatmap_convs", None)
        if isinstance(heatmap_convs, nn.Sequential):
            last = len(heatmap_convs) - 1
            out.update(layer_keypoint_axes(f"heatmap_convs.{last}", heatmap_convs[last], 1))
        return out

    # ------------------------------------------------------------------ forward

    def forward(self, feats: Sequence[Tensor]) -> dict[str, Tensor]:
        name = type(self).__name__
        skip = None
        if self.skip_level and not isinstance(feats, Tensor) and len(feats) == len(self.strides) + 1:
            skip, feats = feats[0], feats[1:]
        if isinstance(feats, Tensor) or len(feats) != len(self.strides):
            got = "a tensor" if isinstance(feats, Tensor) else f"{len(feats)} maps"
            raise ValueError(f"{name} was built for {len(self.strides)} feature levels {self.strides}; got {got}")
        obj, box, kpt, vis = [], [], [], []
        for i, x in enumerate(feats):
            want = (self.in_channels[i], *self.level_sizes[i])
            if x.ndim != 4 or tuple(x.shape[1:]) != want:
                raise ValueError(
                    f"{name}: feature {i} is {tuple(x.shape)} but the head was built for (B, C, H, W) = (B, {want[0]}, "
                    f"{want[1]}, {want[2]}): stride {self.strides[i]} of input {self.codec.input_size} (W, H); build "
                    "it with the neck's out_channels and strides and the codec's input size"
                )
            cls_feat, reg_feat, pose_feat = self.cls_convs[i](x), self.reg_convs[i](x), self.pose_convs[i](x)
            obj.append(self.obj_preds[i](cls_feat).flatten(2))
            box.append(self.box_preds[i](reg_feat).flatten(2))
            kpt.append(self.kpt_preds[i](pose_feat).flatten(2))
            vis.append(self.vis_preds[i](pose_feat).flatten(2))
        batch, k = feats[0].shape[0], self.num_keypoints
        box_t = torch.cat(box, dim=2).transpose(1, 2)  # (B, A, 4)
        kpt_t = torch.cat(kpt, dim=2).transpose(1, 2).reshape(batch, -1, k, 2)
        stride = self.prior_strides[:, None].to(box_t.dtype)
        centre = self.priors + box_t[..., :2] * stride
        size = torch.exp(box_t[..., 2:].clamp(max=self.max_log_size)) * stride
        out = {
            "obj_logits": torch.cat(obj, dim=2)[:, 0],
            "boxes": torch.cat((centre - size / 2, centre + size / 2), dim=-1),
            "keypoints": self.priors[:, None] + kpt_t * stride[..., None],
            "vis_logits": torch.cat(vis, dim=2).transpose(1, 2),
        }
        if self.heatmap_stride:
            out[HEATMAP_OUTPUT_KEY] = self._heatmaps(feats[0], skip)
        return out

    def _heatmaps(self, finest: Tensor, skip: Tensor | None) -> Tensor:
        if not self.skip_channels:
            return self.heatmap_convs(finest)
        if skip is None:
            raise ValueError(f"{type(self).__name__} was built with heatmap_skip: the first feature is the skip level")
        up = self.heatmap_convs[:-2](finest)  # conv (+ upsample) to the heatmap stride
        return self.heatmap_convs[-1](self.heatmap_convs[-2](up + self.heatmap_skip(skip)))

    def decode(self, outputs: Mapping[str, Tensor]) -> list[Poses]:
        """outputs -> one :class:`Poses` per image, by the head's codec."""
        return self.codec.decode(outputs)

    # ------------------------------------------------------------------ loss

    def _check_targets(self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> None:
        name = type(self).__name__
        missing = [key for key in TARGET_KEYS if key not in targets]
        if missing:
            raise KeyError(f"{name}.loss: targets lack {missing}; the one-stage data path yields {TARGET_KEYS}")
        batch, n = targets["valid"].shape[:2] if targets["valid"].ndim == 2 else (-1, -1)
        k = targets["keypoints"].shape[2] if targets["keypoints"].ndim == 4 else "?"
        if k != self.num_keypoints:
            raise ValueError(
                f"{name}.loss: targets have {k} keypoints per person but the head predicts {self.num_keypoints}; "
                f"build the head with num_keypoints={k} (the dataset meta's)"
            )
        want = {"boxes": (batch, n, 4), "keypoints": (batch, n, k, 2), "visible": (batch, n, k), "areas": (batch, n)}
        for key, shape in want.items():
            if tuple(targets[key].shape) != shape:
                raise ValueError(f"{name}.loss: target {key!r} is {tuple(targets[key].shape)}, expected {shape}")
        if batch != outputs["obj_logits"].shape[0]:
            raise ValueError(f"{name}.loss: targets of {batch} images for outputs of {outputs['obj_logits'].shape[0]}")

    @torch.no_grad()
    def assign(self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """SimOTA per image -> gt_index (B, A) int64 into the padded people (-1: negative),
        iou (B, A) of each positive with its person, ignore (B, A) bool (crowd-region negatives)."""
        ignore_boxes, ignore_valid = targets.get("ignore_boxes"), targets.get("ignore_valid")
        gt_index, ious, ignore = [], [], []
        for b in range(outputs["obj_logits"].shape[0]):
            people = targets["valid"][b].bool().nonzero(as_tuple=True)[0]
            crowd = None
            if ignore_boxes is not None:
                crowd = ignore_boxes[b] if ignore_valid is None else ignore_boxes[b][ignore_valid[b].bool()]
            result = self.assigner.assign(
                self.priors,
                self.prior_strides,
                outputs["obj_logits"][b],
                outputs["boxes"][b],
                outputs["keypoints"][b],
                targets["boxes"][b, people],
                targets["keypoints"][b, people],
                targets["visible"][b, people],
                targets["areas"][b, people],
                self.sigmas,
                crowd,
            )
            mapped = people[result.gt_index.clamp(min=0)] if len(people) else result.gt_index
            gt_index.append(torch.where(result.positive, mapped, -1))
            ious.append(result.iou)
            ignore.append(result.ignore)
        return torch.stack(gt_index), torch.stack(ious), torch.stack(ignore)

    def loss(self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """outputs of ``forward``, the batch's targets (see ``posecore/codecs/yoloxpose.py`` and the data
        path: boxes (B, N, 4), keypoints (B, N, K, 2), visible (B, N, K), areas (B, N), valid (B, N),
        optional ignore_boxes (B, M, 4) / ignore_valid (B, M)) -> named scalar losses."""
        self._check_targets(outputs, targets)
        obj_logits, boxes = outputs["obj_logits"].float(), outputs["boxes"].float()
        keypoints, vis_logits = outputs["keypoints"].float(), outputs["vis_logits"].float()
        gt_index, ious, ignore = self.assign(
            {"obj_logits": obj_logits, "boxes": boxes, "keypoints": keypoints}, targets
        )
        positive = gt_index >= 0
        norm = positive.sum().clamp(min=1).to(obj_logits)
        b_idx, a_idx = positive.nonzero(as_tuple=True)
        g = gt_index[b_idx, a_idx]
        gt_boxes, gt_kpts = targets["boxes"][b_idx, g].float(), targets["keypoints"][b_idx, g].float()
        gt_vis, gt_areas = targets["visible"][b_idx, g].float(), targets["areas"][b_idx, g].float()
        pos_kpts = keypoints[b_idx, a_idx]
        quality = ious
        if self.obj_target == "oks":
            # the person score learns sqrt(OKS) of its keypoints (MMPose's YOLOX-Pose/RTMO class target),
            # so detections rank by keypoint quality, which is what keypoint AP rewards
            with torch.no_grad():
                oks = keypoint_oks(pos_kpts, gt_kpts, gt_vis, gt_areas, self.sigmas, norm_target_weight=True)
            quality = torch.zeros_like(ious).index_put((b_idx, a_idx), oks.clamp(min=0).sqrt())
        obj_target = torch.where(positive, quality, torch.zeros_like(quality))
        losses = {"loss_obj": self.obj_loss(obj_logits, obj_target, (~ignore).to(obj_logits)) / norm}
        losses["loss_box"] = self.box_loss(boxes[b_idx, a_idx], gt_boxes) / norm
        losses["loss_oks"] = self.oks_loss(pos_kpts, gt_kpts, gt_vis, gt_areas) / norm
        losses["loss_vis"] = self.vis_loss(vis_logits[b_idx, a_idx], gt_vis)
        if self.heatmap_stride:
            logits = outputs[HEATMAP_OUTPUT_KEY].float()
            target, weights = self.heatmap_targets(targets, logits.shape[-2:])
            losses["loss_heatmap"] = self.heatmap_loss(logits, target, weights)
        if self.kpt_loss_weight > 0:
            # L1 of the offsets in strides (MMPose's auxiliary keypoint loss), visible keypoints, / K
            stride = self.prior_strides[a_idx][:, None, None]
            l1 = ((pos_kpts - gt_kpts) / stride).abs().sum(dim=-1) * gt_vis
            losses["loss_kpt"] = self.kpt_loss_weight * l1.sum() / self.num_keypoints / norm
        return losses

    @torch.no_grad()
    def heatmap_targets(self, targets: Mapping[str, Tensor], size: Sequence[int]) -> tuple[Tensor, Tensor]:
        """The batch's people -> heatmap targets (B, K, h, w) and weights (B, K), (h, w) = ``size``.

        Each visible keypoint of a real person puts 1 at its cell (keypoint / stride, rounded, as
        CenterNet) and a Gaussian around it; overlapping people take the maximum. The Gaussian's
        sigma is the keypoint's OKS spread, 2 sigma_k sqrt(area) input pixels, in cells and kept in
        [1, 3]: tight for eyes, wider for hips, as keypoint AP judges them. Weights: 1 (every
        image's maps are supervised, people or not).
        """
        h, w = int(size[0]), int(size[1])
        s = float(self.heatmap_stride)
        kpts = targets["keypoints"].float()  # (B, N, K, 2)
        shown = (targets["visible"].float() > 0.5) & (targets["valid"].float() > 0.5)[..., None]  # (B, N, K)
        cell = (kpts / s).round()
        cx, cy = cell[..., 0].clamp(0, w - 1), cell[..., 1].clamp(0, h - 1)
        spread = 2 * self.sigmas * targets["areas"].float().clamp_min(0).sqrt()[..., None] / s
        var = 2 * spread.clamp(1.0, 3.0) ** 2  # (B, N, K)
        gx = torch.exp(-((torch.arange(w, device=kpts.device) - cx[..., None]) ** 2) / var[..., None])
        gx = gx * shown[..., None]  # (B, N, K, w): nothing for hidden keypoints and padding
        gy = torch.exp(-((torch.arange(h, device=kpts.device) - cy[..., None]) ** 2) / var[..., None])
        target = kpts.new_zeros(kpts.shape[0], self.num_keypoints, h, w)
        for n in range(kpts.shape[1]):  # person by person: (B, K, h, w) at a time, never (B, N, K, h, w)
            torch.maximum(target, gy[:, n, :, :, None] * gx[:, n, :, None, :], out=target)
        return target, torch.ones(target.shape[:2], device=target.device)
