"""Split-level evaluators on hand-computed examples; per-keypoint tables keyed by meta names."""

from __future__ import annotations

import math

import numpy as np
import pytest

from posecore.evaluation.keypoint_metrics import (
    AUCEvaluator,
    EPEEvaluator,
    MpiiPCKhEvaluator,
    NMEEvaluator,
    PCKEvaluator,
    bbox_sizes,
    head_sizes_from_keypoints,
    mpii_head_sizes,
    torso_sizes,
)
from posecore.metainfo import DatasetMeta, load_meta, parse_meta


def _meta(names: list[str], name: str = "toy") -> DatasetMeta:
    k = len(names)
    return parse_meta(
        {
            "name": name,
            "keypoints": [{"name": n, "color": [0, 0, 255]} for n in names],
            "skeleton": [],
            "joint_weights": [1.0] * k,
            "sigmas": [0.05] * k,
        }
    )


TOY = _meta(["head_top", "upper_neck", "left_shoulder", "right_hip"])


def _toy() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Instance 0: errors 5, 15, 30, 0 px; instance 1: exact, upper_neck unlabelled."""
    gt = np.array([[[0, 0], [0, 10], [0, 20], [10, 50]]] * 2, dtype=np.float64)
    pred = gt.copy()
    pred[0] += [[5, 0], [0, 15], [30, 0], [0, 0]]
    mask = np.array([[1, 1, 1, 1], [1, 0, 1, 1]], dtype=np.float32)
    bboxes = np.array([[0, 0, 20, 100], [0, 0, 20, 100]], dtype=np.float64)  # max side 100
    return pred, gt, mask, bboxes


def test_pck_bbox_by_hand() -> None:
    pred, gt, mask, bboxes = _toy()
    report = PCKEvaluator(TOY, thr=0.2, norm_item="bbox").evaluate(pred, gt, mask, bboxes=bboxes)
    # instance 0 normalised: 0.05, 0.15, 0.30, 0 -> hits 1, 1, 0, 1; instance 1 all hits (upper_neck masked)
    expected = {"head_top": 1.0, "upper_neck": 1.0, "left_shoulder": 0.5, "right_hip": 1.0}
    assert {k: v["PCK@0.2"] for k, v in report.per_keypoint.items()} == expected
    assert report.metrics == {"PCK": 0.875, "PCK@0.2": 0.875}
    assert report.per_keypoint["upper_neck"]["count"] == 1.0
    assert list(report.per_keypoint) == TOY.keypoint_names


def test_pck_head_by_hand() -> None:
    pred, gt, mask, _ = _toy()
    head = head_sizes_from_keypoints(gt, TOY)  # |head_top - upper_neck| = 10
    np.testing.assert_allclose(head, [10, 10])
    report = PCKEvaluator(TOY, thr=[0.6, 2.0], norm_item="head").evaluate(pred, gt, mask, head_sizes=head)
    # instance 0 normalised: 0.5, 1.5, 3.0, 0
    assert report.per_keypoint["head_top"]["PCKh@0.6"] == 1.0
    assert report.per_keypoint["upper_neck"]["PCKh@0.6"] == 0.0
    assert report.per_keypoint["left_shoulder"]["PCKh@0.6"] == 0.5
    assert report.metrics["PCKh@0.6"] == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    assert report.metrics["PCKh@2"] == pytest.approx((1 + 1 + 0.5 + 1) / 4)
    assert report.metrics["PCKh"] == report.metrics["PCKh@0.6"]


def test_pck_torso_by_hand() -> None:
    pred, gt, mask, _ = _toy()
    torso = math.hypot(10, 30)  # |left_shoulder - right_hip|
    np.testing.assert_allclose(torso_sizes(gt, pred, TOY), [torso, torso])
    report = PCKEvaluator(TOY, thr=0.5, norm_item="torso").evaluate(pred, gt, mask)
    # threshold 0.5 * 31.6 = 15.8 px: 5 and 15 hit, 30 misses
    assert report.metrics["tPCK"] == pytest.approx((1 + 1 + 0.5 + 1) / 4)


def test_torso_falls_back_to_prediction_with_warning() -> None:
    pred, gt, _, _ = _toy()
    gt[0, 3] = gt[0, 2]  # zero ground-truth torso
    with pytest.warns(UserWarning, match="torso"):
        sizes = torso_sizes(gt, pred, TOY)
    assert sizes[0] == pytest.approx(np.linalg.norm(pred[0, 2] - pred[0, 3]))


def test_several_norm_items_and_curve() -> None:
    pred, gt, mask, bboxes = _toy()
    evaluator = PCKEvaluator(TOY, thr=0.2, norm_item=["bbox", "head", "torso"])
    report = evaluator.evaluate(pred, gt, mask, bboxes=bboxes, head_sizes=[10, 10])
    assert {"PCK", "PCKh", "tPCK"} <= set(report.metrics)
    thresholds, values = evaluator.curve(pred, gt, mask, bboxes=bboxes)
    assert thresholds[0] == 0 and thresholds[-1] == 0.5 and len(thresholds) == 51
    assert np.all(np.diff(values) >= 0)
    assert values[20] == pytest.approx(report.metrics["PCK"])


def test_missing_normaliser_inputs() -> None:
    pred, gt, mask, _ = _toy()
    with pytest.raises(ValueError, match="bboxes"):
        PCKEvaluator(TOY).evaluate(pred, gt, mask)
    with pytest.raises(ValueError, match="norm_item"):
        PCKEvaluator(TOY, norm_item="face")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="left_shoulder"):
        PCKEvaluator(_meta(["a", "b"]), norm_item="torso")


def test_helpers() -> None:
    np.testing.assert_allclose(bbox_sizes([[0, 0, 30, 40], [5, 5, 6, 100]]), [40, 95])
    np.testing.assert_allclose(mpii_head_sizes([[[0, 0], [30, 40]]]), [0.6 * 50])


def test_mpii_pckh_like_mmpose() -> None:
    meta = load_meta("mpii")
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 200, size=(1, 16, 2))
    pred = gt.copy()
    pred[0, meta.index("left_wrist")] += [6, 0]  # 0.6 head sizes: a miss at 0.5 and 0.1
    pred[0, meta.index("head_top")] += [0, 3]  # 0.3: a hit at 0.5, a miss at 0.1
    pred[0, meta.index("pelvis")] += [50, 0]  # excluded from every summary
    report = MpiiPCKhEvaluator(meta).evaluate(pred, gt, np.ones((1, 16)), head_sizes=[10.0])
    m = report.metrics
    assert m["Head PCK"] == 100.0
    assert m["Wrist PCK"] == 50.0
    assert m["Shoulder PCK"] == m["Ankle PCK"] == 100.0
    assert m["PCK"] == pytest.approx(100 * 13 / 14)
    assert m["PCK@0.1"] == pytest.approx(100 * 12 / 14)
    assert report.per_keypoint["pelvis"]["PCKh"] == 0.0
    with pytest.raises(ValueError, match="MPII"):
        MpiiPCKhEvaluator(load_meta("coco"))


def _five() -> tuple[DatasetMeta, np.ndarray, np.ndarray, np.ndarray]:
    # MMPose's AUC/EPE example (tests/test_evaluation/test_functional/test_keypoint_eval.py)
    meta = _meta([f"k{i}" for i in range(5)])
    pred = np.array([[[10, 4], [10, 18], [0, 0], [40, 40], [20, 10]]], dtype=np.float64)
    gt = np.array([[[10, 0], [10, 10], [-1, -1], [30, 30], [0, 10]]], dtype=np.float64)
    mask = np.array([[True, True, False, True, True]])
    return meta, pred, gt, mask


def test_auc_and_per_keypoint() -> None:
    meta, pred, gt, mask = _five()
    report = AUCEvaluator(meta, norm_factor=20, num_thrs=4).evaluate(pred, gt, mask)
    assert report.metrics["AUC"] == pytest.approx(0.375)
    # normalised distances 0.2, 0.4, -, 0.71, 1.0 against thresholds 0, .25, .5, .75
    assert [v["AUC"] for v in report.per_keypoint.values()] == pytest.approx([0.75, 0.5, -1, 0.25, 0.0])


def test_epe_per_keypoint() -> None:
    meta, pred, gt, mask = _five()
    report = EPEEvaluator(meta).evaluate(pred, gt, mask)
    assert report.metrics["EPE"] == pytest.approx(11.5355339)
    assert [v["EPE"] for v in report.per_keypoint.values()] == pytest.approx([4, 8, -1, math.sqrt(200), 20])
    assert report.to_dict()["per_keypoint"]["k2"]["count"] == 0.0


def test_nme_inter_ocular_by_hand() -> None:
    meta = _meta(["left_eye_outer", "right_eye_outer", "nose"])
    gt = np.array([[[0, 0], [40, 30], [20, 40]]], dtype=np.float64)  # inter-ocular distance 50
    pred = gt + [[0, 0], [0, 0], [5, 0]]
    report = NMEEvaluator(meta, keypoint_indices=("left_eye_outer", "right_eye_outer")).evaluate(
        pred, gt, np.ones((1, 3))
    )
    assert report.metrics["NME"] == pytest.approx((5 / 50) / 3)
    assert report.per_keypoint["nose"]["NME"] == pytest.approx(0.1)
    by_index = NMEEvaluator(meta, keypoint_indices=(0, 1)).evaluate(pred, gt, np.ones((1, 3)))
    assert by_index.metrics == report.metrics


def test_nme_default_pair_by_meta_name() -> None:
    meta = load_meta("wflw")
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 100, size=(2, meta.num_keypoints, 2))
    gt[:, 72] = gt[:, 60] + [30, 40]  # outer eye corners 50 px apart
    pred = gt.copy()
    pred[:, 0] += [0, 10]
    report = NMEEvaluator(meta).evaluate(pred, gt, np.ones((2, meta.num_keypoints)))
    assert report.metrics["NME"] == pytest.approx(0.2 / meta.num_keypoints)
    with pytest.raises(ValueError, match="keypoint_indices"):
        NMEEvaluator(load_meta("coco"))


def test_nme_bbox_size() -> None:
    meta, pred, gt, mask = _five()
    report = NMEEvaluator(meta, norm_mode="use_norm_item", norm_item="bbox_size").evaluate(
        pred, gt, mask, bboxes=[[0, 0, 10, 20]]
    )
    assert report.metrics["NME"] == pytest.approx(11.5355339 / 20)
    other = NMEEvaluator(meta, norm_mode="use_norm_item", norm_item="interocular").evaluate(
        pred, gt, mask, norm_values=[20.0]
    )
    assert other.metrics == report.metrics
