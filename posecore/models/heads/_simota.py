"""SimOTA dynamic label assignment (YOLOX, Ge et al. 2021) with an OKS term, for one image at a time.

Which anchors learn which person is decided anew each step from the current predictions:
candidates are anchors near a person (centre inside the box, or within ``center_radius``
strides of the box centre); each person takes the ``k`` candidates of lowest cost, with ``k``
the (rounded-down, at least 1) sum of its 10 best IoUs, so a well-predicted person gets more
positives; an anchor claimed by several people keeps the cheapest. Vectorised over anchors
and people (no Python loop), so a head loops over the images of a batch only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from posecore.models.losses.detection import box_iou, keypoint_oks

#: Cost of pairing a person with an anchor outside its box-and-centre region (MMPose's INF).
OUTSIDE_COST = 1e5
EPS = 1e-7


@dataclass(frozen=True)
class Assignment:
    """One image's assignment over its A anchors.

    gt_index (A,) int64: the person each anchor learns (index into the image's people), -1 for
        a negative (background) anchor;
    iou (A,) float: IoU of the anchor's predicted box with its person's box (0 for negatives),
        the objectness target of IoU-aware training;
    ignore (A,) bool: negatives whose centre lies in a crowd region: no objectness loss.
    """

    gt_index: Tensor
    iou: Tensor
    ignore: Tensor

    @property
    def positive(self) -> Tensor:
        """(A,) bool."""
        return self.gt_index >= 0


class SimOTAAssigner:
    """cost(anchor, person) = obj_weight * BCE(sigmoid(obj logit), IoU)
    + iou_weight * -log(IoU) + oks_weight * (1 - OKS) + OUTSIDE_COST outside the person's box and centre region.

    IoU is that of the predicted box with the person's box, OKS that of the predicted keypoints
    with the person's visible keypoints (the dataset's ``sigmas`` (K,), the box area as scale). MMPose's YOLOX-Pose differs in small ways: its class cost is
    -log sqrt(cls * obj) and it sets k from OKS; this follows YOLOX's IoU rule and makes the
    objectness cost the objectness loss it trains (target = IoU).
    """

    def __init__(
        self,
        center_radius: float = 2.5,
        candidate_topk: int = 10,
        obj_weight: float = 1.0,
        iou_weight: float = 3.0,
        oks_weight: float = 3.0,
    ) -> None:
        if not center_radius > 0:
            raise ValueError(f"SimOTAAssigner: center_radius must be > 0 (in strides); got {center_radius!r}")
        if isinstance(candidate_topk, bool) or not isinstance(candidate_topk, int) or candidate_topk < 1:
            raise ValueError(f"SimOTAAssigner: candidate_topk must be a positive int; got {candidate_topk!r}")
        if min(obj_weight, iou_weight, oks_weight) < 0:
            raise ValueError("SimOTAAssigner: cost weights must be >= 0")
        self.center_radius = float(center_radius)
        self.candidate_topk = candidate_topk
        self.obj_weight, self.iou_weight, self.oks_weight = float(obj_weight), float(iou_weight), float(oks_weight)

    @torch.no_grad()
    def assign(
        self,
        priors: Tensor,
        strides: Tensor,
        obj_logits: Tensor,
        boxes: Tensor,
        keypoints: Tensor,
        gt_boxes: Tensor,
        gt_keypoints: Tensor,
        gt_visible: Tensor,
        gt_areas: Tensor,
        sigmas: Tensor,
        ignore_boxes: Tensor | None = None,
    ) -> Assignment:
        """One image: priors (A, 2) anchor points and strides (A,) in input pixels; predictions
        obj_logits (A,), boxes (A, 4) xyxy, keypoints (A, K, 2); its N people gt_boxes (N, 4),
        gt_keypoints (N, K, 2), gt_visible (N, K), gt_areas (N,) (N may be 0); the OKS sigmas
        (K,); crowd regions ignore_boxes (M, 4) or None -> :class:`Assignment`.
        """
        num_anchors, num_gt = priors.shape[0], gt_boxes.shape[0]
        device = priors.device
        gt_index = torch.full((num_anchors,), -1, dtype=torch.long, device=device)
        iou_out = torch.zeros(num_anchors, dtype=boxes.dtype, device=device)
        if num_gt:
            in_box, in_center = self._regions(priors, strides, gt_boxes)  # (A, N) each
            candidate = (in_box | in_center).any(dim=1)
            if bool(candidate.any()):
                cand = candidate.nonzero(as_tuple=True)[0]
                matched, matched_iou = self._match(
                    obj_logits[cand].float(),
                    boxes[cand].float(),
                    keypoints[cand].float(),
                    gt_boxes.float(),
                    gt_keypoints.float(),
                    gt_visible.float(),
                    gt_areas.float(),
                    sigmas.float(),
                    in_box[cand] & in_center[cand],
                )
                gt_index[cand] = matched
                iou_out[cand] = matched_iou.to(iou_out.dtype)
        ignore = torch.zeros(num_anchors, dtype=torch.bool, device=device)
        if ignore_boxes is not None and ignore_boxes.shape[0]:
            ignore = self._inside(priors, ignore_boxes).any(dim=1) & (gt_index < 0)
        return Assignment(gt_index, iou_out, ignore)

    @staticmethod
    def _inside(points: Tensor, boxes: Tensor) -> Tensor:
        """points (A, 2), boxes (N, 4) -> (A, N) bool: strictly inside."""
        x, y = points[:, 0:1], points[:, 1:2]
        return (x > boxes[:, 0]) & (x < boxes[:, 2]) & (y > boxes[:, 1]) & (y < boxes[:, 3])

    def _regions(self, priors: Tensor, strides: Tensor, gt_boxes: Tensor) -> tuple[Tensor, Tensor]:
        """(A, N) bool each: anchor centre inside the box; within center_radius strides of the box centre."""
        in_box = self._inside(priors, gt_boxes)
        centre = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2  # (N, 2)
        reach = self.center_radius * strides[:, None]  # (A, 1)
        offset = (priors[:, None, :] - centre[None]).abs()  # (A, N, 2)
        in_center = (offset[..., 0] < reach) & (offset[..., 1] < reach)
        return in_box, in_center

    def _match(
        self,
        obj_logits: Tensor,
        boxes: Tensor,
        keypoints: Tensor,
        gt_boxes: Tensor,
        gt_keypoints: Tensor,
        gt_visible: Tensor,
        gt_areas: Tensor,
        sigmas: Tensor,
        inside_both: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Candidates (V,) x people (N,) -> matched person per candidate (V,) (-1: none), its IoU (V,)."""
        num_cand, num_gt = inside_both.shape
        ious = box_iou(boxes[:, None], gt_boxes[None])  # (V, N)
        cost = self.iou_weight * -torch.log(ious + EPS)
        if self.obj_weight:
            cost = cost + self.obj_weight * F.binary_cross_entropy_with_logits(
                obj_logits[:, None].expand(num_cand, num_gt), ious, reduction="none"
            )
        if self.oks_weight:
            oks = keypoint_oks(
                keypoints[:, None], gt_keypoints[None], gt_visible[None], gt_areas[None],
                sigmas, norm_target_weight=True,
            )  # fmt: skip
            cost = cost + self.oks_weight * (1 - oks)
        cost = cost + OUTSIDE_COST * (~inside_both).to(cost)

        # k per person: sum of its best IoUs (at most candidate_topk of them), at least 1
        top = min(self.candidate_topk, num_cand)
        dynamic_k = ious.topk(top, dim=0).values.sum(dim=0).int().clamp(min=1)  # (N,)
        order = cost.topk(int(dynamic_k.max()), dim=0, largest=False).indices  # (k_max, N)
        take = torch.arange(order.shape[0], device=cost.device)[:, None] < dynamic_k[None]  # (k_max, N)
        matching = torch.zeros_like(cost, dtype=torch.bool)
        cols = torch.arange(num_gt, device=cost.device).expand_as(order)
        matching[order[take], cols[take]] = True

        # an anchor claimed by several people goes to the one it costs least
        contested = matching.sum(dim=1) > 1
        if bool(contested.any()):
            cheapest = cost[contested].argmin(dim=1)
            matching[contested] = F.one_hot(cheapest, num_gt).bool()
        positive = matching.any(dim=1)
        matched = torch.where(positive, matching.float().argmax(dim=1), -1)
        matched_iou = torch.where(positive, (ious * matching).sum(dim=1), torch.zeros_like(ious[:, 0]))
        return matched, matched_iou
