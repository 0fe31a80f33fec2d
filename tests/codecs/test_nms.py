"""NMS by box IoU and by OKS, torch and NumPy, against a naive pure-Python reference and golden numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from posecore.codecs._nms import (
    OKS_EPS,
    box_iou,
    box_iou_numpy,
    keypoint_oks,
    keypoint_oks_numpy,
    nms,
    nms_numpy,
    oks_nms,
    oks_nms_numpy,
)

K = 5
SIGMAS = [0.026, 0.05, 0.079, 0.089, 0.107]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


# --------------------------------------------------------------------------- the naive reference


def naive_iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1]) + max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]) - iw * ih
    return iw * ih / union if union > 0 else 0.0


def naive_oks(kept: list, other: list, area: float, sigmas: list[float], counted: list[bool]) -> float:
    terms = [
        math.exp(-((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2) / (2 * (2 * s) ** 2 * (area + OKS_EPS)))
        for p, q, s, c in zip(kept, other, sigmas, counted, strict=True)
        if c
    ]
    return sum(terms) / len(terms) if terms else 0.0


def naive_nms(scores: list[float], overlap, thr: float) -> list[int]:
    """Visit by (-score, index); keep one that no kept one overlaps by more than thr."""
    kept: list[int] = []
    for i in sorted(range(len(scores)), key=lambda i: (-scores[i], i)):
        if all(overlap(j, i) <= thr for j in kept):
            kept.append(i)
    return kept


# --------------------------------------------------------------------------- random clustered people


def clustered(n: int, seed: int, ties: bool = False) -> dict[str, np.ndarray]:
    """n people around n // 6 + 1 centres (so that NMS has work), float64."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(20, 180, (n // 6 + 1, 2))[rng.integers(0, n // 6 + 1, n)]
    wh = rng.uniform(5, 40, (n, 2))
    shift = rng.normal(0, 4, (n, 2))
    keypoints = centres[:, None] + shift[:, None] + rng.normal(0, 1, (n, K, 2)) * wh[:, None] / 3
    # A quarter are near-copies of others, which even a high threshold suppresses.
    copy, of = np.arange(n - n // 4, n), rng.integers(0, n - n // 4, n // 4)
    centres[copy], wh[copy] = centres[of], wh[of] * rng.uniform(0.97, 1.03, (n // 4, 2))
    shift[copy] = shift[of] + rng.normal(0, 0.3, (n // 4, 2))
    keypoints[copy] = keypoints[of] + rng.normal(0, 0.3, (n // 4, K, 2))
    boxes = np.concatenate([centres + shift - wh / 2, centres + shift + wh / 2], axis=1)
    scores = rng.integers(0, 5, n).astype(np.float64) if ties else rng.random(n)
    return {
        "boxes": boxes,
        "keypoints": keypoints,
        "scores": scores,
        "areas": wh.prod(axis=1),
        "keypoint_scores": rng.random((n, K)),
    }


def reference_box(p: dict[str, np.ndarray], thr: float) -> list[int]:
    b = p["boxes"].tolist()
    return naive_nms(p["scores"].tolist(), lambda j, i: naive_iou(b[j], b[i]), thr)


def reference_oks(p: dict[str, np.ndarray], thr: float, vis_thr: float | None) -> list[int]:
    kp, areas, ks = p["keypoints"].tolist(), p["areas"].tolist(), p["keypoint_scores"].tolist()

    def overlap(j: int, i: int) -> float:
        counted = (
            [True] * K if vis_thr is None else [a > vis_thr and b > vis_thr for a, b in zip(ks[j], ks[i], strict=True)]
        )
        return naive_oks(kp[j], kp[i], areas[j], SIGMAS, counted)

    return naive_nms(p["scores"].tolist(), overlap, thr)


def torch_people(p: dict[str, np.ndarray], device: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v, device=device, dtype=dtype) for k, v in p.items()}


# --------------------------------------------------------------------------- box NMS


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("thr", [0.0, 0.3, 0.5, 0.65, 0.9])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ties", [False, True])
def test_box_nms_equals_the_naive_reference(device: str, thr: float, seed: int, ties: bool) -> None:
    p = clustered(80, seed, ties)
    want = reference_box(p, thr)
    assert 1 < len(want) < 80  # NMS had something to do
    assert nms_numpy(p["boxes"], p["scores"], thr).tolist() == want
    for dtype in (torch.float64, torch.float32):
        t = torch_people(p, device, dtype)
        with torch.no_grad():
            got = nms(t["boxes"], t["scores"], thr)
        assert got.dtype == torch.int64 and got.device.type == device
        assert got.tolist() == want, dtype


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("thr", [0.3, 0.65, 0.9])
@pytest.mark.parametrize("vis_thr", [None, 0.3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_oks_nms_equals_the_naive_reference(device: str, thr: float, vis_thr: float | None, seed: int) -> None:
    p = clustered(80, seed)
    want = reference_oks(p, thr, vis_thr)
    assert 1 < len(want) < 80
    got = oks_nms_numpy(p["keypoints"], p["scores"], p["areas"], SIGMAS, thr, p["keypoint_scores"], vis_thr)
    assert got.tolist() == want
    for dtype in (torch.float64, torch.float32):
        t = torch_people(p, device, dtype)
        with torch.no_grad():
            got = oks_nms(t["keypoints"], t["scores"], t["areas"], SIGMAS, thr, t["keypoint_scores"], vis_thr)
        assert got.dtype == torch.int64 and got.device.type == device
        assert got.tolist() == want, dtype


@pytest.mark.parametrize("max_keep", [0, 1, 3, 1000])
def test_max_keep_is_the_top_of_the_uncapped_result(max_keep: int) -> None:
    p = clustered(80, 3)
    t = torch_people(p, "cpu", torch.float64)
    for mode in ("box", "oks"):
        if mode == "box":
            full, capped = nms_numpy(p["boxes"], p["scores"], 0.5), nms_numpy(p["boxes"], p["scores"], 0.5, max_keep)
            capped_t = nms(t["boxes"], t["scores"], 0.5, max_keep)
        else:
            args = (p["keypoints"], p["scores"], p["areas"], SIGMAS, 0.5)
            full, capped = oks_nms_numpy(*args), oks_nms_numpy(*args, max_keep=max_keep)
            capped_t = oks_nms(t["keypoints"], t["scores"], t["areas"], SIGMAS, 0.5, max_keep=max_keep)
        assert capped.tolist() == full[:max_keep].tolist()
        assert capped_t.tolist() == full[:max_keep].tolist()


def test_nothing_in_nothing_out() -> None:
    assert nms_numpy(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)
    assert oks_nms_numpy(np.zeros((0, K, 2)), np.zeros(0), np.zeros(0), SIGMAS, 0.5).dtype == np.int64
    got = nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert got.shape == (0,) and got.dtype == torch.int64
    assert oks_nms(torch.zeros(0, K, 2), torch.zeros(0), torch.zeros(0), SIGMAS, 0.5).shape == (0,)


def test_degenerate_boxes_and_zero_areas_suppress_nothing_and_stay_finite() -> None:
    boxes = np.array([[5.0, 5, 5, 5], [5.0, 5, 5, 5], [0.0, 0, 10, 0]])
    assert nms_numpy(boxes, np.array([0.9, 0.8, 0.7]), 0.5).tolist() == [0, 1, 2]
    assert nms(torch.tensor(boxes), torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist() == [0, 1, 2]
    # OKS with a zero area: equal keypoints are the same person (OKS 1), others are not (OKS 0).
    kp = np.array([[[1.0, 1.0]], [[1.0, 1.0]], [[2.0, 1.0]]])
    got = keypoint_oks_numpy(kp[0], kp, np.float64(0.0), np.array([0.1]))
    np.testing.assert_array_equal(got, [1.0, 1.0, 0.0])
    assert oks_nms_numpy(kp, np.array([0.9, 0.8, 0.7]), np.zeros(3), [0.1], 0.5).tolist() == [0, 2]


# --------------------------------------------------------------------------- overlaps: golden numbers


def test_iou_golden_and_pairwise() -> None:
    a = np.array([[0.0, 0, 2, 2], [0.0, 0, 4, 4]])
    b = np.array([[1.0, 1, 3, 3], [10.0, 10, 11, 11], [0.0, 0, 2, 2]])
    want = np.array([[1 / 7, 0, 1], [4 / 16, 0, 4 / 16]])
    np.testing.assert_allclose(box_iou_numpy(a[:, None], b[None]), want, rtol=1e-15)
    np.testing.assert_allclose(box_iou(torch.tensor(a)[:, None], torch.tensor(b)[None]).numpy(), want, rtol=1e-15)
    p = clustered(20, 4)
    naive = [[naive_iou(x, y) for y in p["boxes"].tolist()] for x in p["boxes"].tolist()]
    np.testing.assert_allclose(box_iou_numpy(p["boxes"][:, None], p["boxes"][None]), naive, rtol=1e-12, atol=1e-15)


def test_oks_golden_and_pairwise() -> None:
    # One keypoint 1 px right and 1 px down, area 100, sigma 0.1: exp(-2 / (2 * 0.2^2 * 100)) = exp(-0.25).
    a, b = np.array([[3.0, 4.0]]), np.array([[4.0, 5.0]])
    want = math.exp(-0.25)
    assert keypoint_oks_numpy(a, b, np.float64(100.0), np.array([0.1])) == pytest.approx(want, rel=1e-14)
    got = keypoint_oks(
        torch.tensor(a),
        torch.tensor(b),
        torch.tensor(100.0, dtype=torch.float64),
        torch.tensor([0.1], dtype=torch.float64),
    )
    assert float(got) == pytest.approx(want, rel=1e-14)
    # The mask: only counted keypoints average; none counted -> 0.
    two_a, two_b = np.array([[0.0, 0], [0, 0]]), np.array([[0.0, 0], [50, 50]])
    sig = np.array([0.1, 0.1])
    assert keypoint_oks_numpy(two_a, two_b, np.float64(1.0), sig, np.array([True, False])) == 1.0
    assert keypoint_oks_numpy(two_a, two_b, np.float64(1.0), sig, np.array([False, False])) == 0.0
    # Pairwise matrix (the kept one's area on the rows) against the naive loop.
    p = clustered(20, 5)
    kp, areas = p["keypoints"], p["areas"]
    naive = [
        [naive_oks(kp[i].tolist(), kp[j].tolist(), areas[i], SIGMAS, [True] * K) for j in range(20)] for i in range(20)
    ]
    got = keypoint_oks_numpy(kp[:, None], kp[None], areas[:, None], np.array(SIGMAS))
    np.testing.assert_allclose(got, naive, rtol=1e-12, atol=1e-15)
    got_t = keypoint_oks(
        torch.tensor(kp)[:, None],
        torch.tensor(kp)[None],
        torch.tensor(areas)[:, None],
        torch.tensor(SIGMAS, dtype=torch.float64),
    )
    np.testing.assert_allclose(got_t.numpy(), naive, rtol=1e-12, atol=1e-15)


def test_bad_arguments_are_clear_errors() -> None:
    p = clustered(10, 6)
    with pytest.raises(ValueError, match="one sigma per keypoint"):
        oks_nms_numpy(p["keypoints"], p["scores"], p["areas"], [0.1, 0.1], 0.5)
    with pytest.raises(ValueError, match="needs keypoint_scores"):
        oks_nms_numpy(p["keypoints"], p["scores"], p["areas"], SIGMAS, 0.5, vis_thr=0.3)
    with pytest.raises(ValueError, match="max_keep"):
        nms_numpy(p["boxes"], p["scores"], 0.5, max_keep=-1)
