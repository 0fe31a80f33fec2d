"""3D metrics for lifted poses (Human3.6M, MPI-INF-3DHP): MPJPE, P-MPJPE, N-MPJPE, PCK3D, AUC3D.

Inputs: ``pred``, ``gt`` (N, J, 3) float in millimetres, one row per frame (instance);
``mask`` (N, J) (bool, or weights where > 0 means labelled); optional ``actions`` (N,) strings.
The errors are Euclidean distances in mm between ``pred`` and ``gt`` exactly as given, so pass
root-relative poses (the root joint subtracted from both, as MMPose's lifting codecs output) for
the Human3.6M protocol-1 MPJPE; absolute poses also work for MPJPE and P-MPJPE (the Procrustes
fit removes translation) but make N-MPJPE, a scale about the origin, meaningless.

Definitions, following MMPose 1.x (``mmpose/evaluation/metrics/keypoint_3d_metrics.py`` ``MPJPE``
with modes ``mpjpe`` / ``p-mpjpe`` / ``n-mpjpe``, and ``functional/keypoint_eval.py``):

* ``MPJPE``: mean error over the unmasked joints of all frames (pooled, not a mean of actions);
* ``P-MPJPE``: after a per-frame least-squares similarity transform (rotation, translation,
  scale) of the prediction onto the ground truth (protocol 2);
* ``N-MPJPE``: after a per-frame least-squares scale only (Rhodin et al., 2018);
* ``PCK3D``: the share of unmasked joints whose (unaligned) error is ``< 150`` mm, strictly, as
  MPI-INF-3DHP's ``mpii_compute_3d_pck.m`` and MMPose's ``keypoint_3d_pck``;
* ``AUC3D``: the mean PCK3D over the 31 thresholds ``0, 5, ..., 150`` mm (so an error of 0 mm
  scores 30/31: nothing is ``< 0``).

Both alignments are fitted on all J joints of a frame, masked or not (MMPose), through
:func:`posecore.evaluation.functional.align_keypoints`. PCK3D and AUC3D are fractions in [0, 1];
MMPose and the MPI-INF-3DHP tables print them times 100.

Per action, frames are grouped by the action's category, the name before its first ``'_'`` or
``' '`` (``"Directions_1"`` and ``"Directions 1"`` -> ``"Directions"``; MMPose splits on ``'_'``
only, its Human3.6M file names have no spaces). Deviation from MMPose: its per-action numbers
call ``keypoint_mpjpe`` without the mode's alignment, so its ``P-MPJPE_<action>`` is the
unaligned MPJPE; here every per-action column applies its own alignment, as the published
per-action Human3.6M tables do.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from posecore.evaluation.functional import Alignment, align_keypoints
from posecore.evaluation.keypoint_metrics import MetricReport

__all__ = [
    "AUC3D_THRESHOLDS",
    "MODES",
    "PCK3D_THRESHOLD",
    "Pose3DEvaluator",
    "Pose3DReport",
    "action_category",
]

#: Metric name -> the alignment fitted per frame before measuring (MMPose's ``MPJPE.ALIGNMENT``).
MODES: dict[str, Alignment] = {"MPJPE": "none", "P-MPJPE": "procrustes", "N-MPJPE": "scale"}
PCK3D_THRESHOLD = 150.0  # mm, MPI-INF-3DHP
AUC3D_THRESHOLDS = np.linspace(0.0, 150.0, 31)  # mm, 0 to 150 in 5 mm steps

_CATEGORY_SPLIT = re.compile(r"[_ ]")


def action_category(action: str) -> str:
    """The Human3.6M action category: the name before the first ``'_'`` or ``' '`` (``"Walking_1"`` -> ``"Walking"``)."""
    category = _CATEGORY_SPLIT.split(str(action), maxsplit=1)[0]
    if not category:
        raise ValueError(f"action {action!r} has no category before its first '_' or ' '")
    return category


@dataclass
class Pose3DReport(MetricReport):
    """Summary numbers and two tables; every value in mm except the PCK3D/AUC3D fractions.

    ``metrics``: ``MPJPE``, ``P-MPJPE``, ``N-MPJPE``, ``PCK3D``, ``AUC3D``.
    ``per_keypoint``: ``{joint name: {metric: value, "count": unmasked frames}}``.
    ``per_action``: ``{action category: {metric: value, "count": frames}}`` (empty without actions).
    A table value is ``-1`` where its row has no unmasked joint (the 2-D tables' convention).
    """

    per_action: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "per_action": {k: dict(v) for k, v in self.per_action.items()}}


def _group_means(
    values: dict[str, np.ndarray], mask: np.ndarray, groups: np.ndarray, num_groups: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Means (G,) of each (N, J) array over the unmasked entries of each group; -1 for an empty group.

    ``groups`` (N, J) int in ``[0, num_groups)``. Returns the means and the counts (G,).
    """
    index = groups[mask]
    count = np.bincount(index, minlength=num_groups)
    means = {}
    for name, value in values.items():
        total = np.bincount(index, weights=value[mask], minlength=num_groups)
        means[name] = np.where(count > 0, total / np.maximum(count, 1), -1.0)
    return means, count


class Pose3DEvaluator:
    """MPJPE, P-MPJPE, N-MPJPE, PCK3D and AUC3D of lifted 3D poses (module docstring).

    ``joint_names`` (J,) label the per-joint table, in the order of the J axis.
    ``pck_threshold`` (mm) and ``auc_thresholds`` (T,) (mm) default to MPI-INF-3DHP's.
    """

    def __init__(
        self,
        joint_names: Sequence[str],
        pck_threshold: float = PCK3D_THRESHOLD,
        auc_thresholds: Sequence[float] | np.ndarray = AUC3D_THRESHOLDS,
    ) -> None:
        self.joint_names = [str(n) for n in joint_names]
        if not self.joint_names:
            raise ValueError("joint_names is empty; pass one name per joint of the (N, J, 3) poses")
        if len(set(self.joint_names)) != len(self.joint_names):
            raise ValueError(f"joint_names must be unique, got {self.joint_names}")
        self.pck_threshold = float(pck_threshold)
        self.auc_thresholds = np.sort(np.asarray(auc_thresholds, dtype=np.float64).reshape(-1))
        if self.auc_thresholds.size == 0:
            raise ValueError("auc_thresholds is empty")

    def _inputs(self, pred: Any, gt: Any, mask: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pred = np.asarray(pred, dtype=np.float64)
        gt = np.asarray(gt, dtype=np.float64)
        mask = np.asarray(mask)
        if mask.ndim == 3 and mask.shape[-1] == 1:
            mask = mask[..., 0]
        mask = mask > 0
        j = len(self.joint_names)
        if pred.ndim != 3 or pred.shape != gt.shape or pred.shape[1:] != (j, 3):
            raise ValueError(
                f"pred and gt must both be (N, {j}, 3) (one row per frame, {j} joint names), "
                f"got {pred.shape} and {gt.shape}"
            )
        if mask.shape != pred.shape[:2]:
            raise ValueError(f"mask must be (N, J) = {pred.shape[:2]}, got {mask.shape}")
        if not mask.any():
            raise ValueError("no unmasked joint to evaluate: mask is all False")
        if not (np.isfinite(pred).all() and np.isfinite(gt).all()):
            raise ValueError(
                "pred and gt must be finite everywhere: the alignments are fitted on all joints, masked "
                "or not; fill unlabelled joints with a finite value (e.g. the root)"
            )
        return pred, gt, mask

    def joint_values(self, pred: np.ndarray, gt: np.ndarray) -> dict[str, np.ndarray]:
        """Per frame and joint (N, J) float64: the three errors (mm), the PCK3D hit (0/1) and the
        AUC3D score (the share of ``auc_thresholds`` above the unaligned error).

        Averaging any of them over the unmasked entries gives the metric of that name.
        """
        values = {name: np.linalg.norm(align_keypoints(pred, gt, a) - gt, axis=-1) for name, a in MODES.items()}
        error = values["MPJPE"]
        values["PCK3D"] = (error < self.pck_threshold).astype(np.float64)
        # mean over thresholds of [error < t] == share of thresholds greater than the error
        above = self.auc_thresholds.size - np.searchsorted(self.auc_thresholds, error, side="right")
        values["AUC3D"] = above / self.auc_thresholds.size
        return values

    def evaluate(self, pred: Any, gt: Any, mask: Any, actions: Sequence[str] | None = None) -> Pose3DReport:
        """pred, gt (N, J, 3) mm; mask (N, J) or (N, J, 1); actions (N,) names (e.g. ``"Directions_1"``) or None."""
        pred, gt, mask = self._inputs(pred, gt, mask)
        n, j = mask.shape
        values = self.joint_values(pred, gt)

        overall, _ = _group_means(values, mask, np.zeros((n, j), dtype=np.int64), 1)
        metrics = {name: float(v[0]) for name, v in overall.items()}

        joint_ids = np.broadcast_to(np.arange(j), (n, j))
        per_joint, joint_count = _group_means(values, mask, joint_ids, j)
        per_keypoint = {
            name: {**{m: float(v[k]) for m, v in per_joint.items()}, "count": float(joint_count[k])}
            for k, name in enumerate(self.joint_names)
        }

        per_action: dict[str, dict[str, float]] = {}
        if actions is not None:
            labels = [action_category(a) for a in actions]
            if len(labels) != n:
                raise ValueError(f"actions must have one name per frame ({n}), got {len(labels)}")
            categories, inverse = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
            action_ids = np.broadcast_to(inverse.reshape(n, 1), (n, j))
            means, _ = _group_means(values, mask, action_ids, len(categories))
            frames = np.bincount(inverse, minlength=len(categories))
            per_action = {
                str(c): {**{m: float(v[a]) for m, v in means.items()}, "count": float(frames[a])}
                for a, c in enumerate(categories)
            }
        return Pose3DReport(metrics, per_keypoint, per_action)
