"""The YOLOX-Pose codec: one image's people <-> ground truth, and dense one-stage outputs -> people.

As MMPose's YOLOX-Pose (``YOLOXPoseHead`` with its ``predict_by_feat``), the assignment of
anchors to people happens in the head's loss (SimOTA), so ``encode`` only gathers per-person
ground truth; ``decode`` is the post-processing: sigmoid, score threshold, NMS, top-k.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from posecore._lazy import lazy_import

from ._nms import nms, nms_numpy, oks_nms, oks_nms_numpy
from ._refine import (
    heatmap_peaks,
    heatmap_peaks_numpy,
    heatmap_values,
    heatmap_values_numpy,
    snap_to_peaks,
    snap_to_peaks_numpy,
)
from ._utils import check_encode_inputs, check_size, compute_dtype
from .base import OneStageCodec, Poses, register_codec

if TYPE_CHECKING:
    import torch
    from torch import Tensor
else:
    torch = lazy_import("torch")

__all__ = ["DEFAULT_SIGMA", "HEATMAP_OUTPUT_KEY", "ONESTAGE_OUTPUT_KEYS", "YOLOXPose"]

#: The dense outputs of a one-stage head, A anchors of all levels (B images):
#: "obj_logits" (B, A), "boxes" (B, A, 4) xyxy, "keypoints" (B, A, K, 2) (both in input px),
#: "vis_logits" (B, A, K). Priors are already applied, so an exported model needs only NumPy after it.
ONESTAGE_OUTPUT_KEYS = ("obj_logits", "boxes", "keypoints", "vis_logits")
#: The extra output of ``refine="heatmap"``: per-keypoint heatmap logits (B, K, H / s, W / s).
HEATMAP_OUTPUT_KEY = "heatmaps"

#: Per-keypoint OKS sigma when none are given: COCO's shoulder sigma, mid-range of COCO's 0.025-0.107,
#: so that any skeleton gets a reasonable OKS NMS. Presets of a dataset with sigmas should pass them.
DEFAULT_SIGMA = 0.079

_NMS_MODES = ("box", "oks")
_REFINES = ("none", "heatmap")


@register_codec("yoloxpose")
@dataclass(frozen=True)
class YOLOXPose(OneStageCodec):
    """People of one image <-> ground truth; dense outputs of B images -> one :class:`Poses` each.

    encode: keypoints (N, K, 2) float32 in input pixels, visible (N, K) in [0, 1], boxes (N, 4)
        xyxy or None -> "boxes" (N, 4), "keypoints" (N, K, 2), "visible" (N, K) in {0, 1},
        "areas" (N,), "keypoint_weights" (N, K) (= "visible"), float32. A keypoint counts as
        visible where visible > 0.5 and it lies in [0, W] x [0, H] (MMPose's
        ``BottomupRandomAffine`` rule); a non-finite one is missing. Without boxes, a person's
        box is the extent of its keypoints with visible > 0.5 (also those outside the input:
        the person's extent; the data path clips boxes to the input), and a person with none
        gets the zero box. areas = box width * height, the OKS scale.
    decode: "obj_logits" (B, A), "boxes" (B, A, 4), "keypoints" (B, A, K, 2), "vis_logits"
        (B, A, K) -> per image the anchors with sigmoid(obj_logits) >= ``score_thr``, NMS
        (``nms_mode``, ``nms_thr``, see ``_nms.py``; OKS counts every keypoint), the best
        ``max_detections``: :class:`Poses` with scores = sigmoid(obj_logits) and
        keypoint_scores = sigmoid(vis_logits), float32, best first (equal scores: lower anchor first).
        With ``refine="heatmap"`` the head also predicts "heatmaps" (B, K, H / s, W / s) logits,
        s = ``heatmap_stride``, and each kept person's keypoints move onto the nearest peak of their
        heatmap inside the person's box (CenterNet's refinement, see ``_refine.py``), and
        keypoint_scores = sigmoid(vis_logits) * the keypoint's heatmap value at its final position:
        a keypoint off every peak counts as unsure when people are ranked by keypoint scores.
    """

    input_size: tuple[int, int]
    """(W, H) of the network input in pixels."""
    score_thr: float = 0.1
    """Lowest person score (sigmoid of the objectness logit) kept before NMS."""
    nms_mode: str = "oks"
    """"box": suppress by box IoU; "oks": by keypoint OKS, scaled by the kept person's box area."""
    nms_thr: float = 0.65
    """A person overlapping a better kept one by more than this (IoU or OKS) is dropped."""
    max_detections: int = 30
    """At most this many people per image, the best."""
    sigmas: tuple[float, ...] | None = None
    """Per-keypoint OKS sigmas for OKS NMS (the dataset's); None: ``DEFAULT_SIGMA`` for every keypoint."""
    refine: str = "none"
    """"heatmap": the head also predicts keypoint heatmaps and decoding snaps keypoints to their peaks."""
    heatmap_stride: int = 4
    """Input pixels per heatmap cell (``refine="heatmap"``); must divide the input size."""
    peak_thr: float = 0.1
    """Lowest heatmap probability of a peak a keypoint may move to."""
    snap_radius: float = 0.3
    """How far a keypoint may move, and how far outside its person's box the peak may lie, as a
    fraction of the box's longer side."""

    target_keys: ClassVar[tuple[str, ...]] = ("boxes", "keypoints", "visible", "areas")

    @property
    def output_keys(self) -> tuple[str, ...]:  # type: ignore[override]
        """The dense outputs ``decode`` reads: ``ONESTAGE_OUTPUT_KEYS`` (+ "heatmaps" with ``refine="heatmap"``)."""
        return ONESTAGE_OUTPUT_KEYS + ((HEATMAP_OUTPUT_KEY,) if self.refine == "heatmap" else ())

    def __post_init__(self) -> None:
        name = type(self).__name__
        object.__setattr__(self, "input_size", check_size(name, "input_size", self.input_size))
        for field in ("score_thr", "nms_thr", "peak_thr", "snap_radius"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"{name}.{field} must be a number in [0, 1]; got {value!r}")
            object.__setattr__(self, field, float(value))
        if self.nms_mode not in _NMS_MODES:
            raise ValueError(f"{name}.nms_mode must be one of {_NMS_MODES}; got {self.nms_mode!r}")
        for field in ("max_detections", "heatmap_stride"):
            m = getattr(self, field)
            if isinstance(m, bool) or not isinstance(m, int) or m < 1:
                raise ValueError(f"{name}.{field} must be an int >= 1; got {m!r}")
        if self.refine not in _REFINES:
            raise ValueError(f"{name}.refine must be one of {_REFINES}; got {self.refine!r}")
        if self.refine == "heatmap" and any(v % self.heatmap_stride for v in self.input_size):
            raise ValueError(
                f"{name}: heatmap_stride {self.heatmap_stride} must divide the input size {self.input_size} (W, H)"
            )
        if self.sigmas is not None:
            s = self.sigmas
            ok = isinstance(s, tuple | list) and len(s) > 0
            ok = ok and all(not isinstance(v, bool) and isinstance(v, int | float) and 0 < v < math.inf for v in s)
            if not ok:
                raise ValueError(
                    f"{name}.sigmas must be None or a non-empty list of positive numbers, one per keypoint "
                    f"(COCO's start 0.026, 0.025, 0.025, ...); got {s!r}"
                )
            object.__setattr__(self, "sigmas", tuple(float(v) for v in s))

    def target_shapes(self, num_keypoints: int) -> dict[str, tuple[int, ...]]:
        """Per-person shapes of the ground truth (the data path pads people to N per image)."""
        return {"boxes": (4,), "keypoints": (num_keypoints, 2), "visible": (num_keypoints,), "areas": ()}

    # ----------------------------------------------------------------------- encode

    def encode(self, keypoints: Tensor, visible: Tensor, boxes: Tensor | None = None) -> dict[str, Tensor]:
        """keypoints (N, K, 2), visible (N, K), boxes (N, 4) or None -> the ground truth (class docstring)."""
        name = type(self).__name__
        kp, vis = check_encode_inputs(name, keypoints, visible)
        labelled = vis > 0.5
        if boxes is None:
            lo = torch.where(labelled[..., None], kp, math.inf).amin(dim=1)
            hi = torch.where(labelled[..., None], kp, -math.inf).amax(dim=1)
            box = torch.where(labelled.any(dim=1)[:, None], torch.cat([lo, hi], dim=1), 0.0)
        elif not isinstance(boxes, torch.Tensor) or tuple(boxes.shape) != (kp.shape[0], 4):
            shape = tuple(boxes.shape) if isinstance(boxes, torch.Tensor) else type(boxes).__name__
            raise ValueError(f"{name}.encode: boxes must be a tensor (N, 4) = ({kp.shape[0]}, 4) xyxy; got {shape}")
        else:
            box = boxes.to(device=kp.device, dtype=torch.float32)
        size = torch.tensor(self.input_size, device=kp.device, dtype=kp.dtype)
        inside = ((kp >= 0) & (kp <= size)).all(dim=-1)
        shown = (labelled & inside).to(torch.float32)
        wh = (box[:, 2:] - box[:, :2]).clamp_min(0)
        return {
            "boxes": box,
            "keypoints": kp,
            "visible": shown,
            "areas": wh[:, 0] * wh[:, 1],
            "keypoint_weights": shown.clone(),
        }

    # ----------------------------------------------------------------------- decode

    def _sigma_list(self, num_keypoints: int) -> list[float]:
        if self.sigmas is None:
            return [DEFAULT_SIGMA] * num_keypoints
        if len(self.sigmas) != num_keypoints:
            raise ValueError(
                f"{type(self).__name__}.sigmas has {len(self.sigmas)} values but the model predicts "
                f"{num_keypoints} keypoints: give one sigma per keypoint (or None)"
            )
        return list(self.sigmas)

    def _check_dense(self, outputs: Mapping[str, Any]) -> None:
        _check_dense(type(self).__name__, outputs)
        if self.refine == "heatmap":
            b, k = outputs["obj_logits"].shape[0], outputs["keypoints"].shape[2]
            want = (b, k, self.input_size[1] // self.heatmap_stride, self.input_size[0] // self.heatmap_stride)
            got = tuple(outputs[HEATMAP_OUTPUT_KEY].shape)
            if got != want:
                raise ValueError(
                    f"{type(self).__name__}.decode: {HEATMAP_OUTPUT_KEY!r} must have shape {want} (B, K, H / s, W / s), "
                    f"s = heatmap_stride {self.heatmap_stride}; got {got}"
                )

    def decode(self, outputs: Mapping[str, Tensor]) -> list[Poses]:
        """Dense outputs (B, A, ...) -> B :class:`Poses` of torch float32 tensors on the outputs' device."""
        name = type(self).__name__
        for key in self.output_keys:
            if key not in outputs:
                raise KeyError(f"{name}.decode needs output {key!r}; got keys {sorted(outputs)}")
        self._check_dense(outputs)
        dtype = compute_dtype(outputs["obj_logits"])
        obj, boxes, kpts, vis = (outputs[k].to(dtype) for k in ONESTAGE_OUTPUT_KEYS)
        sigmas = self._sigma_list(kpts.shape[2]) if self.nms_mode == "oks" else []
        results = []
        for b in range(obj.shape[0]):
            scores = torch.sigmoid(obj[b])
            cand = torch.nonzero(scores >= self.score_thr).squeeze(1)  # ascending anchor order
            box, kp = boxes[b, cand], kpts[b, cand]
            if self.nms_mode == "box":
                keep = nms(box, obj[b, cand], self.nms_thr, self.max_detections)
            else:
                wh = (box[:, 2:] - box[:, :2]).clamp_min(0)
                keep = oks_nms(
                    kp, obj[b, cand], wh[:, 0] * wh[:, 1], sigmas, self.nms_thr, max_keep=self.max_detections
                )
            idx = cand[keep]
            kept = kpts[b, idx]
            kpt_scores = torch.sigmoid(vis[b, idx])
            if self.refine == "heatmap":
                heat = torch.sigmoid(outputs[HEATMAP_OUTPUT_KEY][b].to(dtype))
                peaks, peak_scores = heatmap_peaks(heat, self.heatmap_stride, self.peak_thr, self.max_detections)
                kept, _ = snap_to_peaks(kept, boxes[b, idx], peaks, peak_scores, self.snap_radius)
                kpt_scores = kpt_scores * heatmap_values(heat, kept, self.heatmap_stride)
            results.append(
                Poses(
                    boxes=boxes[b, idx].float(),
                    scores=scores[idx].float(),
                    keypoints=kept.float(),
                    keypoint_scores=kpt_scores.float(),
                )
            )
        return results

    def decode_numpy(self, outputs: Mapping[str, np.ndarray]) -> list[Poses]:
        """``decode`` in NumPy (float64 inside): B :class:`Poses` of float32 arrays."""
        name = type(self).__name__
        for key in self.output_keys:
            if key not in outputs:
                raise ValueError(f"{name} needs model output {key!r}; the model gives {sorted(outputs)}")
        arrays = {k: np.asarray(outputs[k]) for k in self.output_keys}
        self._check_dense(arrays)
        obj, boxes, kpts, vis = (arrays[k].astype(np.float64, copy=False) for k in ONESTAGE_OUTPUT_KEYS)
        sigmas = self._sigma_list(kpts.shape[2]) if self.nms_mode == "oks" else []
        results = []
        for b in range(obj.shape[0]):
            scores = _sigmoid_numpy(obj[b])
            cand = np.flatnonzero(scores >= self.score_thr)
            box, kp = boxes[b, cand], kpts[b, cand]
            if self.nms_mode == "box":
                keep = nms_numpy(box, obj[b, cand], self.nms_thr, self.max_detections)
            else:
                wh = np.clip(box[:, 2:] - box[:, :2], 0, None)
                areas = wh[:, 0] * wh[:, 1]
                keep = oks_nms_numpy(kp, obj[b, cand], areas, sigmas, self.nms_thr, max_keep=self.max_detections)
            idx = cand[keep]
            kept = kpts[b, idx]
            kpt_scores = _sigmoid_numpy(vis[b, idx])
            if self.refine == "heatmap":
                heat = _sigmoid_numpy(arrays[HEATMAP_OUTPUT_KEY][b].astype(np.float64))
                peaks, peak_scores = heatmap_peaks_numpy(heat, self.heatmap_stride, self.peak_thr, self.max_detections)
                kept, _ = snap_to_peaks_numpy(kept, boxes[b, idx], peaks, peak_scores, self.snap_radius)
                kpt_scores = kpt_scores * heatmap_values_numpy(heat, kept, self.heatmap_stride)
            results.append(
                Poses(
                    boxes=boxes[b, idx].astype(np.float32),
                    scores=scores[idx].astype(np.float32),
                    keypoints=kept.astype(np.float32),
                    keypoint_scores=kpt_scores.astype(np.float32),
                )
            )
        return results


def _sigmoid_numpy(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp(-x) = inf for x < -709 gives the right 0
        return 1.0 / (1.0 + np.exp(-x))


def _check_dense(owner: str, outputs: Mapping[str, Any]) -> None:
    """The dense outputs agree on B, A and K: torch tensors and NumPy arrays alike."""
    obj = outputs["obj_logits"]
    if len(obj.shape) != 2:
        raise ValueError(f"{owner}.decode: 'obj_logits' must have shape (B, A); got {tuple(obj.shape)}")
    kpts = outputs["keypoints"]
    k = kpts.shape[2] if len(kpts.shape) == 4 else "K"
    b, a = tuple(obj.shape)
    want = {"boxes": (b, a, 4), "keypoints": (b, a, k, 2), "vis_logits": (b, a, k)}
    for key, shape in want.items():
        got = tuple(outputs[key].shape)
        if got != shape:
            raise ValueError(
                f"{owner}.decode: {key!r} must have shape {shape} (B, A from 'obj_logits', K from "
                f"'keypoints'); got {got}"
            )
