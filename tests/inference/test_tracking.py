"""The tracker keeps identities on a synthetic sequence of moving, appearing and vanishing instances."""

from __future__ import annotations

import numpy as np
import pytest

from posecore.inference.tracking import PoseTracker, box_iou, oks

K = 5
SIGMAS = [0.05] * K


def _instance(cx: float, cy: float, size: float = 40.0) -> tuple[np.ndarray, np.ndarray]:
    box = np.array([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2])
    offsets = np.array([[-10, -10], [10, -10], [0, 0], [-10, 10], [10, 10]], dtype=np.float64) * size / 40
    return box, np.array([cx, cy]) + offsets


def _frame(centres: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    pairs = [_instance(*c) for c in centres]
    return np.stack([b for b, _ in pairs]).reshape(-1, 4), np.stack([k for _, k in pairs]).reshape(-1, K, 2)


@pytest.mark.parametrize(
    ("sigmas", "box_fallback"), [(SIGMAS, False), (None, False), (SIGMAS, True)], ids=["oks", "iou", "oks+iou"]
)
def test_ids_follow_moving_instances(sigmas: list[float] | None, box_fallback: bool) -> None:
    tracker = PoseTracker(sigmas=sigmas, threshold=0.3, box_fallback=box_fallback)
    a, b, c = np.array([50.0, 50.0]), np.array([200.0, 60.0]), np.array([120.0, 200.0])
    step_a, step_b = np.array([3.0, 1.0]), np.array([-2.0, 2.0])
    seen: list[dict[tuple[int, int], int]] = []
    for t in range(12):
        centres = [tuple(a + t * step_a), tuple(b + t * step_b)]
        if t >= 5:
            centres.append(tuple(c))  # appears at frame 5
        order = np.random.default_rng(t).permutation(len(centres))  # detection order changes every frame
        boxes, kps = _frame([centres[i] for i in order])
        ids = tracker.update(boxes, kps)
        seen.append({(int(order[j]), t): int(ids[j]) for j in range(len(order))})
    ids_of = [{who: tid for (who, _), tid in frame.items()} for frame in seen]
    assert all(f[0] == 0 and f[1] == 1 for f in ids_of)
    assert all(f[2] == 2 for f in ids_of[5:])


def test_lost_track_gets_a_new_id_after_max_age() -> None:
    tracker = PoseTracker(sigmas=SIGMAS, max_age=1)
    boxes, kps = _frame([(50.0, 50.0)])
    empty_b, empty_k = np.zeros((0, 4)), np.zeros((0, K, 2))
    assert tracker.update(boxes, kps).tolist() == [0]
    assert tracker.update(empty_b, empty_k).tolist() == []  # missed one frame: kept
    assert tracker.update(boxes, kps).tolist() == [0]
    tracker.update(empty_b, empty_k)
    tracker.update(empty_b, empty_k)  # missed two frames: dropped
    assert tracker.update(boxes, kps).tolist() == [1]


def test_jittering_keypoints_in_a_fixed_box_keep_their_id() -> None:
    """A whole-image box with an unsure model: OKS alone loses the track, the box keeps it."""
    rng = np.random.default_rng(0)
    box = np.array([[0.0, 0.0, 400.0, 400.0]])
    oks_only = PoseTracker(sigmas=SIGMAS, box_fallback=False)
    both = PoseTracker(sigmas=SIGMAS)
    ids_oks, ids_both = [], []
    for _ in range(5):
        kps = rng.uniform(0, 400, (1, K, 2))
        ids_oks += oks_only.update(box, kps).tolist()
        ids_both += both.update(box, kps).tolist()
    assert ids_both == [0] * 5
    assert len(set(ids_oks)) > 1


def test_a_jump_starts_a_new_track() -> None:
    tracker = PoseTracker(sigmas=SIGMAS)
    assert tracker.update(*_frame([(50.0, 50.0)])).tolist() == [0]
    assert tracker.update(*_frame([(400.0, 300.0)])).tolist() == [1]


def test_similarities() -> None:
    boxes, kps = _frame([(50.0, 50.0), (150.0, 50.0)])
    np.testing.assert_allclose(box_iou(boxes, boxes), np.eye(2))
    area = np.full(2, 1600.0)
    sim = oks(kps, kps, area, area, SIGMAS)
    np.testing.assert_allclose(np.diag(sim), 1.0)
    assert sim[0, 1] < 1e-6
    shifted = kps + [2.0, 0.0]
    # by hand: e = 4 / (2 * 0.05)^2 / 1600 / 2 = 0.125 for every keypoint
    np.testing.assert_allclose(oks(kps[:1], shifted[:1], area[:1], area[:1], SIGMAS), [[np.exp(-0.125)]])
