"""3D pose metrics on hand-computed examples: MPJPE, P-MPJPE, N-MPJPE, PCK3D, AUC3D, per joint and per action."""

from __future__ import annotations

import math

import numpy as np
import pytest

from posecore.evaluation.functional import keypoint_mpjpe
from posecore.evaluation.keypoint_metrics import MetricReport
from posecore.evaluation.pose3d import (
    AUC3D_THRESHOLDS,
    MODES,
    Pose3DEvaluator,
    Pose3DReport,
    action_category,
)

JOINTS = ["pelvis", "left_hip", "left_knee", "neck", "head"]
N, J = 4, len(JOINTS)


def _gt(seed: int = 0, n: int = N) -> np.ndarray:
    """Root-relative poses (n, J, 3) in mm, a body's extent of a few hundred mm."""
    gt = np.random.default_rng(seed).normal(0.0, 300.0, size=(n, J, 3))
    return gt - gt[:, :1]


def _rotation(ax: float, az: float) -> np.ndarray:
    cx, sx, cz, sz = math.cos(ax), math.sin(ax), math.cos(az), math.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ rx


def _ones() -> np.ndarray:
    return np.ones((N, J), dtype=bool)


EVAL = Pose3DEvaluator(JOINTS)


def test_mpjpe_of_a_known_offset():
    gt = _gt()
    report = EVAL.evaluate(gt + np.array([30.0, 40.0, 0.0]), gt, _ones())
    assert isinstance(report, Pose3DReport) and isinstance(report, MetricReport)
    assert report.metrics["MPJPE"] == pytest.approx(50.0)
    # a translation is undone by Procrustes
    assert report.metrics["P-MPJPE"] == pytest.approx(0.0, abs=1e-6)
    assert report.metrics["PCK3D"] == 1.0  # 50 < 150
    assert report.metrics["AUC3D"] == pytest.approx(20 / 31)  # thresholds 55 .. 150 exceed 50
    for name in JOINTS:
        assert report.per_keypoint[name]["MPJPE"] == pytest.approx(50.0)
        assert report.per_keypoint[name]["count"] == N
    assert report.per_action == {}


def test_p_mpjpe_of_a_similarity_transformed_copy_is_zero():
    gt = _gt(1)
    pred = 0.7 * gt @ _rotation(0.4, 1.1).T + np.array([120.0, -45.0, 3000.0])
    report = EVAL.evaluate(pred, gt, _ones())
    assert report.metrics["P-MPJPE"] == pytest.approx(0.0, abs=1e-6)
    assert report.metrics["MPJPE"] > 100.0
    assert all(row["P-MPJPE"] == pytest.approx(0.0, abs=1e-6) for row in report.per_keypoint.values())


def test_n_mpjpe_undoes_a_scale_but_not_a_rotation():
    gt = _gt(2)
    scaled = EVAL.evaluate(1.3 * gt, gt, _ones())
    assert scaled.metrics["N-MPJPE"] == pytest.approx(0.0, abs=1e-6)
    assert scaled.metrics["MPJPE"] > 10.0
    rotated = EVAL.evaluate(gt @ _rotation(0.0, math.pi / 2).T, gt, _ones())
    assert rotated.metrics["N-MPJPE"] > 10.0
    assert rotated.metrics["P-MPJPE"] == pytest.approx(0.0, abs=1e-6)


def test_masked_joints_do_not_count():
    gt = np.zeros((2, J, 3))
    gt[:, :, 0] = np.arange(J) * 100.0  # distinct joints so the alignments are defined
    pred = gt.copy()
    pred[:, :, 2] += 10.0  # 10 mm everywhere
    pred[0, 3, 2] += 5000.0  # way off, but unlabelled
    mask = np.ones((2, J), dtype=bool)
    mask[0, 3] = False
    mask[:, 4] = False  # joint 4 never labelled
    report = EVAL.evaluate(pred, gt, mask)
    assert report.metrics["MPJPE"] == pytest.approx(10.0)
    assert report.metrics["PCK3D"] == 1.0
    assert report.per_keypoint["neck"]["count"] == 1.0
    assert report.per_keypoint["neck"]["MPJPE"] == pytest.approx(10.0)
    assert report.per_keypoint["head"] == {name: -1.0 for name in (*MODES, "PCK3D", "AUC3D")} | {"count": 0.0}
    # a (N, J, 1) visibility array with 0 / 1 works as the mask
    assert EVAL.evaluate(pred, gt, mask[..., None].astype(np.float32)).metrics == report.metrics


def test_pck3d_and_auc3d_on_hand_made_errors():
    gt = np.zeros((1, 3, 3))
    gt[0, :, 1] = [0.0, 500.0, 1000.0]
    pred = gt.copy()
    pred[0, :, 0] = [0.0, 100.0, 200.0]  # errors 0, 100, 200 mm
    ev = Pose3DEvaluator(["a", "b", "c"])
    report = ev.evaluate(pred, gt, np.ones((1, 3), dtype=bool))
    assert report.metrics["PCK3D"] == pytest.approx(2 / 3)
    # thresholds 0..150 step 5 (31): t = 0 counts nothing (strict <), 5..100 count the 0 (20 of them),
    # 105..150 count the 0 and the 100 (10 of them)
    assert len(AUC3D_THRESHOLDS) == 31
    assert report.metrics["AUC3D"] == pytest.approx((20 * 1 / 3 + 10 * 2 / 3) / 31)  # 40 / 93
    assert report.metrics["MPJPE"] == pytest.approx(100.0)
    assert report.per_keypoint["a"]["AUC3D"] == pytest.approx(30 / 31)
    assert report.per_keypoint["b"]["PCK3D"] == 1.0 and report.per_keypoint["c"]["PCK3D"] == 0.0
    # exactly 150 mm is not within the threshold (MPI-INF-3DHP, MMPose: error < 150)
    pred[0, :, 0] = 150.0
    assert ev.evaluate(pred, gt, np.ones((1, 3), dtype=bool)).metrics["PCK3D"] == 0.0


def test_per_action_grouping():
    gt = _gt(3)
    pred = gt.copy()
    offsets = [10.0, 30.0, 50.0, 70.0]  # one per frame, along z
    pred[:, :, 2] += np.array(offsets)[:, None]
    pred[3] = 0.5 * gt[3] @ _rotation(0.3, 0.2).T  # Walking's frame: only Procrustes undoes it
    actions = ["Directions_1", "Directions 2", "WalkDog_1", "Walking"]
    report = EVAL.evaluate(pred, gt, _ones(), actions)
    assert list(report.per_action) == ["Directions", "WalkDog", "Walking"]
    assert report.per_action["Directions"]["MPJPE"] == pytest.approx(20.0)
    assert report.per_action["Directions"]["count"] == 2.0
    assert report.per_action["WalkDog"]["MPJPE"] == pytest.approx(50.0)
    # each per-action column applies its own alignment (MMPose's per-action P-MPJPE does not)
    assert report.per_action["Walking"]["P-MPJPE"] == pytest.approx(0.0, abs=1e-6)
    assert report.per_action["Walking"]["MPJPE"] > 10.0
    # the overall numbers pool the frames
    walking = report.per_action["Walking"]["MPJPE"]
    assert report.metrics["MPJPE"] == pytest.approx((10 + 30 + 50 + walking) / 4)


@pytest.mark.parametrize(
    ("action", "category"),
    [
        ("Directions_1", "Directions"),
        ("Walking 1", "Walking"),
        ("Eating", "Eating"),
        ("SittingDown_2_b", "SittingDown"),
    ],
)
def test_action_category(action, category):
    assert action_category(action) == category


@pytest.mark.parametrize("mode", list(MODES))
def test_summary_matches_the_functional_mpjpe(mode):
    rng = np.random.default_rng(4)
    gt = _gt(4, n=20)
    pred = gt + rng.normal(0.0, 40.0, size=gt.shape)
    mask = rng.random((20, J)) > 0.2
    report = EVAL.evaluate(pred, gt, mask)
    assert report.metrics[mode] == pytest.approx(keypoint_mpjpe(pred, gt, mask, MODES[mode]), rel=1e-12)


def test_to_dict_has_both_tables():
    gt = _gt(5)
    out = EVAL.evaluate(gt + 1.0, gt, _ones(), ["Eating_1"] * N).to_dict()
    assert {"MPJPE", "P-MPJPE", "N-MPJPE", "PCK3D", "AUC3D", "per_keypoint", "per_action"} <= set(out)
    assert out["per_action"]["Eating"]["count"] == N


def test_input_errors():
    gt = _gt(6)
    with pytest.raises(ValueError, match=r"pred and gt must both be \(N, 5, 3\)"):
        EVAL.evaluate(gt[:, :4], gt, _ones())
    with pytest.raises(ValueError, match=r"pred and gt must both be \(N, 5, 3\)"):
        EVAL.evaluate(gt[..., :2], gt[..., :2], _ones())
    with pytest.raises(ValueError, match=r"\(N, 4, 3\) \(one row per frame, 4 joint names\)"):
        Pose3DEvaluator(JOINTS[:4]).evaluate(gt, gt, _ones())
    with pytest.raises(ValueError, match=r"mask must be \(N, J\)"):
        EVAL.evaluate(gt, gt, np.ones((N, J + 1), dtype=bool))
    with pytest.raises(ValueError, match="no unmasked joint"):
        EVAL.evaluate(gt, gt, np.zeros((N, J), dtype=bool))
    with pytest.raises(ValueError, match="one name per frame"):
        EVAL.evaluate(gt, gt, _ones(), ["Eating_1"] * (N - 1))
    bad = gt.copy()
    bad[0, 1, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        EVAL.evaluate(bad, gt, _ones())
    with pytest.raises(ValueError, match="no category"):
        action_category("_1")
    with pytest.raises(ValueError, match="unique"):
        Pose3DEvaluator(["a", "a"])
    with pytest.raises(ValueError, match="empty"):
        Pose3DEvaluator([])
