"""Functional metrics and OKS-NMS.

The ``TestPublished*`` inputs and expected numbers are MMPose 1.x's own unit tests,
``tests/test_evaluation/test_functional/test_keypoint_eval.py`` in open-mmlab/mmpose
(Apache-2.0), reproduced array for array.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from posecore.evaluation.functional import (
    COCO_SIGMAS,
    calc_distances,
    keypoint_auc,
    keypoint_epe,
    keypoint_mpjpe,
    keypoint_nme,
    keypoint_pck_accuracy,
    oks_iou,
    oks_nms,
    pck_curve,
    pose_pck_accuracy,
    soft_oks_nms,
)


def _pck_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # MMPose test_keypoint_pck_accuracy
    output = np.zeros((2, 5, 2))
    target = np.zeros((2, 5, 2))
    mask = np.array([[True, True, False, True, True], [True, True, False, True, True]])
    output[0, 0], target[0, 0] = [10, 0], [10, 0]
    output[0, 1], target[0, 1] = [20, 20], [10, 10]
    output[0, 2], target[0, 2] = [0, 0], [-1, 0]
    output[0, 3], target[0, 3] = [30, 30], [30, 30]
    output[0, 4], target[0, 4] = [0, 10], [0, 10]
    return output, target, mask


def _five_point_inputs(third_target: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # MMPose test_keypoint_auc / test_keypoint_epe / test_keypoint_nme
    output = np.zeros((1, 5, 2))
    target = np.zeros((1, 5, 2))
    mask = np.array([[True, True, False, True, True]])
    output[0, 0], target[0, 0] = [10, 4], [10, 0]
    output[0, 1], target[0, 1] = [10, 18], [10, 10]
    output[0, 2], target[0, 2] = [0, 0], third_target
    output[0, 3], target[0, 3] = [40, 40], [30, 30]
    output[0, 4], target[0, 4] = [20, 10], [0, 10]
    return output, target, mask


def _mpjpe_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # MMPose test_keypoint_mpjpe
    output = np.zeros((2, 5, 3))
    target = np.zeros((2, 5, 3))
    mask = np.array([[True, True, False, True, True], [True, True, False, True, True]])
    output[0, 0], target[0, 0] = [1, 0, 0], [1, 0, 0]
    output[1, 0], target[1, 0] = [1, 0, 0], [1, 1, 0]
    output[0, 1], target[0, 1] = [2, 2, 0], [1, 1, 1]
    output[1, 1], target[1, 1] = [2, 2, 1], [1, 0, 1]
    output[0, 2], target[0, 2] = [0, 0, -1], [-1, 0, 0]
    output[1, 2], target[1, 2] = [-1, 0, 0], [-1, 0, 0]
    output[0, 3], target[0, 3] = [3, 3, 1], [3, 3, 1]
    output[1, 3], target[1, 3] = [0, 0, 3], [0, 0, 3]
    output[0, 4], target[0, 4] = [0, 1, 1], [0, 1, 0]
    output[1, 4], target[1, 4] = [0, 0, 1], [1, 1, 0]
    return output, target, mask


class TestPublishedNumbers:
    def test_pck(self) -> None:
        output, target, mask = _pck_inputs()
        acc, avg, cnt = keypoint_pck_accuracy(output, target, mask, 0.5, np.full((2, 2), 10, dtype=np.float32))
        np.testing.assert_allclose(acc, [1, 0.5, -1, 1, 1], atol=1e-6)
        assert avg == pytest.approx(0.875, abs=1e-6)
        assert cnt == 4

        acc, avg, cnt = keypoint_pck_accuracy(output, target, mask, 0.5, np.zeros((2, 2)))
        np.testing.assert_allclose(acc, [-1] * 5)
        assert (avg, cnt) == (0, 0)

        acc, avg, cnt = keypoint_pck_accuracy(output, target, mask, 0.5, np.array([[0, 0], [10, 10]]))
        np.testing.assert_allclose(acc, [1, 1, -1, 1, 1])
        assert (avg, cnt) == (1, 4)

    def test_auc(self) -> None:
        output, target, mask = _five_point_inputs([0, -1])
        assert keypoint_auc(output, target, mask, 20, 4) == pytest.approx(0.375, abs=1e-6)

    def test_epe(self) -> None:
        output, target, mask = _five_point_inputs([-1, -1])
        assert keypoint_epe(output, target, mask) == pytest.approx(11.5355339, abs=1e-6)

    def test_nme(self) -> None:
        output, target, mask = _five_point_inputs([-1, -1])
        assert keypoint_nme(output, target, mask, np.ones((1, 2))) == pytest.approx(11.5355339, abs=1e-6)

    def test_mpjpe(self) -> None:
        output, target, mask = _mpjpe_inputs()
        assert keypoint_mpjpe(output, target, mask) == pytest.approx(0.9625211990796929, abs=1e-6)
        assert keypoint_mpjpe(output, target, mask, "procrustes") == pytest.approx(1.0047897634604497, abs=1e-6)
        assert keypoint_mpjpe(output, target, mask, "scale") == pytest.approx(1.0277129678465953, abs=1e-6)
        with pytest.raises(ValueError, match="alignment"):
            keypoint_mpjpe(output, target, mask, "alignment")  # type: ignore[arg-type]

    def test_pose_pck_accuracy(self) -> None:
        output = np.zeros((1, 5, 64, 64), dtype=np.float32)
        target = np.zeros((1, 5, 64, 64), dtype=np.float32)
        mask = np.array([[True, True, False, False, False]])
        output[0, 0, 20, 20] = 1
        target[0, 0, 10, 10] = 1
        output[0, 1, 30, 30] = 1
        target[0, 1, 30, 30] = 1
        acc, avg, cnt = pose_pck_accuracy(output, target, mask)
        np.testing.assert_allclose(acc, [0, 1, -1, -1, -1])
        assert (avg, cnt) == (0.5, 2)


def test_inputs_are_not_modified() -> None:
    output, target, mask = _pck_inputs()
    norm = np.array([[-5.0, 10.0], [10.0, 10.0]])
    before = norm.copy()
    calc_distances(output, target, mask, norm)
    np.testing.assert_array_equal(norm, before)


def test_distances_conventions() -> None:
    output, target, mask = _pck_inputs()
    norm = np.array([[10.0, 10.0], [0.0, 5.0]])  # instance 1 has a zero normaliser: all invalid
    dist = calc_distances(output, target, mask, norm)
    assert dist.shape == (5, 2)
    np.testing.assert_allclose(dist[:, 1], -1)
    np.testing.assert_allclose(dist[:, 0], [0, math.sqrt(2), -1, 0, 0])
    assert np.isfinite(dist).all()


def test_pck_curve_matches_pointwise() -> None:
    output, target, mask = _pck_inputs()
    norm = np.full((2, 2), 10.0)
    thrs = np.array([0.0, 0.5, 1.5])
    avg, per_kpt = pck_curve(output, target, mask, norm, thrs)
    for t, thr in enumerate(thrs):
        acc, a, _ = keypoint_pck_accuracy(output, target, mask, thr, norm)
        np.testing.assert_allclose(per_kpt[t], acc)
        assert avg[t] == pytest.approx(a)


def test_epe_without_labels_is_zero_not_nan() -> None:
    output, target, _ = _pck_inputs()
    assert keypoint_epe(output, target, np.zeros((2, 5), bool)) == 0.0


def test_mpjpe_degenerate_prediction_is_finite() -> None:
    gt = np.random.default_rng(0).normal(size=(2, 4, 3))
    pred = np.zeros_like(gt)
    for alignment in ("none", "scale", "procrustes"):
        assert math.isfinite(keypoint_mpjpe(pred, gt, np.ones((2, 4), bool), alignment))


def test_procrustes_recovers_similarity_transform() -> None:
    rng = np.random.default_rng(1)
    gt = rng.normal(size=(3, 6, 3))
    angle = 0.7
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    pred = 2.5 * gt @ rot.T + np.array([1.0, -2.0, 3.0])
    assert keypoint_mpjpe(pred, gt, np.ones((3, 6), bool), "procrustes") == pytest.approx(0.0, abs=1e-9)


# --- OKS and OKS-NMS -------------------------------------------------------------------


def _person(offset: float = 0.0, k: int = 3) -> np.ndarray:
    kpts = np.zeros((k, 3))
    kpts[:, 0] = np.arange(k) * 10.0 + offset
    kpts[:, 1] = 5.0
    kpts[:, 2] = 1.0
    return kpts


def test_oks_iou_by_hand() -> None:
    sigmas = np.array([0.1, 0.1, 0.1])
    g = _person()
    d = np.stack([_person(), _person(offset=1.0)])
    ious = oks_iou(g, d, 100.0, np.array([100.0, 100.0]), sigmas)
    # e = 1 / (2 * 0.1)^2 / (100 + eps) / 2 = 0.125 for every keypoint of the shifted copy
    np.testing.assert_allclose(ious, [1.0, math.exp(-0.125)], rtol=1e-12)


def test_oks_iou_vis_thr() -> None:
    sigmas = np.array([0.1, 0.1, 0.1])
    g = _person()
    d = _person(offset=1.0)[None].copy()
    d[0, 0, :2] += 100.0  # far off, but its score is low
    d[0, 0, 2] = 0.1
    assert oks_iou(g, d, 100.0, [100.0], sigmas, vis_thr=0.5)[0] == pytest.approx(math.exp(-0.125))
    d[0, :, 2] = 0.0
    assert oks_iou(g, d, 100.0, [100.0], sigmas, vis_thr=0.5)[0] == 0.0


def test_oks_iou_default_sigmas_need_17_keypoints() -> None:
    with pytest.raises(ValueError, match="sigmas"):
        oks_iou(_person(), _person()[None], 1.0, [1.0])
    assert oks_iou(_person(k=17), _person(k=17)[None], 1.0, [1.0])[0] == pytest.approx(1.0)
    assert COCO_SIGMAS.shape == (17,)


def test_oks_nms_suppresses_duplicates() -> None:
    sigmas = np.array([0.1, 0.1, 0.1])
    # 0 and 2 are near-duplicates of 1 (the best); 3 is another person far away
    kpts = np.stack([_person(0.5), _person(0.0), _person(0.2), _person(500.0)])
    scores = np.array([0.8, 0.9, 0.7, 0.6])
    areas = np.full(4, 100.0)
    keep = oks_nms(kpts, scores, areas, thr=0.9, sigmas=sigmas)
    # e = d^2 / (2 * 0.1)^2 / 100 / 2: OKS(1, 0) = exp(-0.03125) = 0.969 > 0.9, OKS(1, 2) = exp(-0.005) > 0.9
    np.testing.assert_array_equal(keep, [1, 3])
    # a threshold above both overlaps keeps everything, best first
    np.testing.assert_array_equal(oks_nms(kpts, scores, areas, thr=0.999, sigmas=sigmas), [1, 0, 2, 3])
    assert oks_nms(np.zeros((0, 3, 3)), np.zeros(0), np.zeros(0), 0.9, sigmas).size == 0


def test_soft_oks_nms_decays_scores() -> None:
    sigmas = np.array([0.1, 0.1, 0.1])
    kpts = np.stack([_person(0.0), _person(1.0), _person(500.0)])
    scores = np.array([0.9, 0.8, 0.5])
    areas = np.full(3, 100.0)
    keep, decayed = soft_oks_nms(kpts, scores, areas, thr=0.9, sigmas=sigmas)
    o = math.exp(-0.125)  # OKS between 0 and 1 (see test_oks_iou_by_hand); ~0 with 2
    s1 = 0.8 * math.exp(-(o**2) / 0.9)  # 0.8 * exp(-0.6892) = 0.4016 < 0.5: instance 2 moves ahead
    np.testing.assert_array_equal(keep, [0, 2, 1])
    np.testing.assert_allclose(decayed, [0.9, 0.5, s1], rtol=1e-9)
    keep, _ = soft_oks_nms(kpts, scores, areas, thr=0.9, max_dets=2, sigmas=sigmas)
    np.testing.assert_array_equal(keep, [0, 2])
    keep, decayed = soft_oks_nms(kpts, scores, areas, thr=0.8, sigmas=sigmas, method="linear")
    np.testing.assert_array_equal(keep, [0, 2, 1])  # o = 0.88 >= 0.8: 0.8 * (1 - o) = 0.094 < 0.5
    np.testing.assert_allclose(decayed, [0.9, 0.5, 0.8 * (1 - o)], rtol=1e-9)


@pytest.mark.parametrize("vis_thr", [None, 0.5])
def test_oks_nms_matrix_path_equals_row_path(vis_thr: float | None, monkeypatch: pytest.MonkeyPatch) -> None:
    import posecore.evaluation.functional as functional

    rng = np.random.default_rng(0)
    people = rng.uniform(0, 200, size=(8, 17, 2))  # 40 jittered copies of 8 people
    kpts = np.concatenate([people[rng.integers(0, 8, 40)], rng.uniform(0, 1, size=(40, 17, 1))], axis=-1)
    kpts[..., :2] += rng.normal(0, 3, size=(40, 17, 2))
    scores, areas = rng.uniform(0, 1, 40), rng.uniform(500, 3000, 40)
    fast = oks_nms(kpts, scores, areas, 0.3, vis_thr=vis_thr)
    fast_soft = soft_oks_nms(kpts, scores, areas, 0.3, vis_thr=vis_thr)
    monkeypatch.setattr(functional, "_PAIRWISE_MAX", 0)  # force one oks_iou call per kept instance
    np.testing.assert_array_equal(oks_nms(kpts, scores, areas, 0.3, vis_thr=vis_thr), fast)
    slow_soft = soft_oks_nms(kpts, scores, areas, 0.3, vis_thr=vis_thr)
    np.testing.assert_array_equal(slow_soft[0], fast_soft[0])
    np.testing.assert_array_equal(slow_soft[1], fast_soft[1])
    assert 1 < len(fast) < 40  # some, not all, suppressed
