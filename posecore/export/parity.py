"""ONNX Runtime vs PyTorch on the same real inputs: the parity check every bundle passes before it is written.

:func:`check_parity` runs the inputs through both in chunks of several batch sizes and compares
the raw outputs (largest absolute difference, output by output) and what the model's codec
decodes from each:

- top-down: keypoints (N, K, 2) row by row (largest distance, model-input pixels);
- one-stage: the :class:`~posecore.codecs.base.Poses` of each image. Both must find the same
  number of people, paired by an optimal assignment on their largest box-corner or keypoint
  distance (so two near-equal scores that swap places are no difference); the largest
  keypoint and box distances of the pairs are reported. A person found by one side only counts
  as a different count unless its score is within :data:`SCORE_MARGIN` of the codec's
  ``score_thr``: outputs equal to ``atol`` can legitimately fall on both sides of a threshold.

One-stage dense outputs in model-input pixels (:data:`PIXEL_OUTPUTS`: every anchor's box and
keypoints) are held to the pixel tolerance, not to ``atol``: the head scales its regression by
the anchor stride (up to 32) and adds the anchor's position, so float32 rounding that leaves a
logit within 1e-5 moves a coordinate of ~100 px by a few 1e-3 px. ``max_abs_diff`` (``atol``)
covers the logits (``obj_logits``, ``vis_logits``, unitless like a heatmap's); every anchor's
keypoint distance and box-corner difference go into ``max_kpt_px`` and ``max_box_px``, with the
decoded people's. A codec that refines keypoints on heatmaps (``refine="heatmap"``) has its
"heatmaps" logits held to ``atol`` like the others, and its people are compared as decoded
without the refinement: snapping a keypoint to a peak is a choice at thresholds (peak score,
distance) that outputs equal to ``atol`` can fall on both sides of, and the decoder is the same
code for both runtimes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from posecore.codecs.base import Poses
from posecore.export.onnx import run_onnx
from posecore.models.estimator import PoseEstimator

__all__ = ["PIXEL_OUTPUTS", "SCORE_MARGIN", "Parity", "check_parity", "compare_poses"]

#: A person whose score is this close to the codec's ``score_thr`` may be found by one runtime only.
SCORE_MARGIN = 1e-3
#: One-stage dense outputs in model-input pixels: boxes (B, A, 4) xyxy, keypoints (B, A, K, 2).
PIXEL_OUTPUTS = ("boxes", "keypoints")


@dataclass(frozen=True)
class Parity:
    """ONNX Runtime vs PyTorch on the same inputs: largest absolute output difference (per output and overall)
    and largest decoded keypoint distance (model-input pixels).

    One-stage models (module docstring): ``max_abs_diff`` covers the outputs not in
    ``pixel_outputs``; ``max_kpt_px`` and ``max_box_px`` (box corners, held to the same
    ``max_kpt_px``) cover every anchor and the decoded people; ``count_mismatches``: decoded
    images where the two found a different number of people beyond borderline scores (must be 0).
    """

    max_abs_diff: float
    per_output: dict[str, float]
    max_kpt_px: float
    samples: int
    batch_sizes: tuple[int, ...]
    max_box_px: float = 0.0
    count_mismatches: int = 0
    pixel_outputs: tuple[str, ...] = ()

    def failures(self, atol: float, max_kpt_px: float) -> list[str]:
        out = []
        if not self.max_abs_diff <= atol:
            held = {k: v for k, v in self.per_output.items() if k not in self.pixel_outputs}
            worst = max(held, key=lambda k: held[k])
            out.append(f"max |onnx - torch| = {self.max_abs_diff:.3g} (output {worst!r}) > export.atol = {atol:g}")
        if not self.max_kpt_px <= max_kpt_px:
            out.append(
                f"decoded keypoints differ by up to {self.max_kpt_px:.3g} px > export.max_kpt_px = {max_kpt_px:g}"
            )
        if not self.max_box_px <= max_kpt_px:
            out.append(
                f"decoded person boxes differ by up to {self.max_box_px:.3g} px > export.max_kpt_px = {max_kpt_px:g}"
            )
        if self.count_mismatches:
            out.append(
                f"{self.count_mismatches} decoded image(s) (over all batch sizes) hold a different number of people"
            )
        return out


def _finite_max(value: float, current: float) -> float:
    return max(current, value if np.isfinite(value) else float("inf"))


def _numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)


def compare_poses(
    ref: Sequence[Poses], got: Sequence[Poses], score_thr: float | None = None
) -> tuple[float, float, int]:
    """One :class:`Poses` per image from each runtime -> (largest keypoint distance, largest box-corner
    difference, images with a different count), in model-input pixels (see the module docstring).

    ``score_thr``: the codec's; unpaired people scoring within :data:`SCORE_MARGIN` of it are
    borderline and do not count (None: every unpaired person does).
    """
    if len(ref) != len(got):
        raise ValueError(f"{len(ref)} images decoded from PyTorch's outputs but {len(got)} from ONNX Runtime's")
    kpt = box = 0.0
    mismatches = 0
    for a, b in zip(ref, got, strict=True):
        boxes_a, boxes_b = _numpy(a.boxes).astype(np.float64), _numpy(b.boxes).astype(np.float64)
        kp_a, kp_b = _numpy(a.keypoints).astype(np.float64), _numpy(b.keypoints).astype(np.float64)
        rows = cols = np.zeros(0, np.int64)
        if len(a) and len(b):
            kp_dist = np.linalg.norm(kp_a[:, None] - kp_b[None], axis=-1).max(-1, initial=0.0)  # (na, nb)
            box_dist = np.abs(boxes_a[:, None] - boxes_b[None]).max(-1)
            cost = np.nan_to_num(np.maximum(kp_dist, box_dist), nan=np.inf, posinf=1e30)
            rows, cols = linear_sum_assignment(cost)
            if len(rows):
                kpt = _finite_max(float(kp_dist[rows, cols].max()), kpt)
                box = _finite_max(float(box_dist[rows, cols].max()), box)
        unpaired = np.concatenate([np.delete(_numpy(a.scores), rows), np.delete(_numpy(b.scores), cols)]).astype(
            np.float64
        )
        borderline = score_thr is not None and bool(np.all(np.abs(unpaired - score_thr) <= SCORE_MARGIN))
        if len(unpaired) and not borderline:
            mismatches += 1
    return kpt, box, mismatches


@torch.no_grad()
def check_parity(
    model: PoseEstimator,
    session: Any,
    inputs: Tensor,
    batch_sizes: Sequence[int] = (1, 2, 5),
) -> Parity:
    """Run ``inputs`` (N, 3, h, w) through both in chunks of every batch size; decode both with ``model.codec``.

    ``session``: an ``onnxruntime.InferenceSession`` of the exported model. Compared outputs: the
    codec's ``output_keys`` for a one-stage model (what its bundle exports; its pixel outputs held
    to the pixel tolerance, see the module docstring), else every output.
    """
    model.eval()
    onestage = model.task == "onestage"
    pixel = PIXEL_OUTPUTS if onestage else ()
    diffs: dict[str, float] = {}
    kpt = box = 0.0
    mismatches = 0
    for b in batch_sizes:
        for start in range(0, len(inputs), b):
            chunk = inputs[start : start + b]
            ref = {k: v.float().cpu() for k, v in model(chunk).items()}
            if onestage:
                ref = {k: ref[k] for k in model.codec.output_keys}  # type: ignore[attr-defined]
            got = {k: torch.from_numpy(v) for k, v in run_onnx(session, chunk.cpu().numpy()).items()}
            missing = sorted(set(ref) - set(got))
            if missing:
                raise ValueError(f"the ONNX model lacks outputs {missing} (has {sorted(got)})")
            for k in ref:
                if got[k].shape != ref[k].shape:
                    raise ValueError(f"ONNX output {k!r} is {tuple(got[k].shape)}, PyTorch's {tuple(ref[k].shape)}")
                d = float((got[k] - ref[k]).abs().max()) if ref[k].numel() else 0.0
                diffs[k] = _finite_max(d, diffs.get(k, 0.0))
            if onestage:
                dense_kp = (got["keypoints"] - ref["keypoints"]).norm(dim=-1)
                kpt = _finite_max(float(dense_kp.max()) if dense_kp.numel() else 0.0, kpt)
                box = _finite_max(diffs["boxes"], box)
                codec = model.codec
                if getattr(codec, "refine", "none") != "none":
                    codec = dataclasses.replace(codec, refine="none")  # type: ignore[type-var]
                thr = getattr(codec, "score_thr", None)
                k_px, b_px, miss = compare_poses(codec.decode(ref), codec.decode(got), thr)
                kpt, box, mismatches = max(kpt, k_px), max(box, b_px), mismatches + miss
                continue
            kp_ref, _ = model.codec.decode(ref)
            kp_got, _ = model.codec.decode(got)
            dist = (kp_got - kp_ref).norm(dim=-1)
            kpt = _finite_max(float(dist.max()) if dist.numel() else 0.0, kpt)
    held = [v for k, v in diffs.items() if k not in pixel]
    return Parity(max(held, default=0.0), diffs, kpt, len(inputs), tuple(batch_sizes), box, mismatches, pixel)
