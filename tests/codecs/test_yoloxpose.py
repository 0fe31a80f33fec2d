"""YOLOXPose: config checks, ground truth from keypoints, decode (threshold, NMS, top-k) and its NumPy twin."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onestage_outputs as oso  # tests/_helpers (put on sys.path by tests/conftest.py)
import pytest
import torch

from posecore.codecs import ONESTAGE_OUTPUT_KEYS, Poses, YOLOXPose, build_codec, numpy_decoder

SIZE = (64, 96)
K = 17
REPO = Path(__file__).resolve().parents[2]


def codec(**kwargs: object) -> YOLOXPose:
    return build_codec("yoloxpose", input_size=SIZE, **kwargs)  # type: ignore[return-value]


def people(counts: list[int], seed: int, c: YOLOXPose) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [c.encode(*oso.separated_people(n, K, SIZE, gen)) for n in counts]


def assert_found_exactly(found: list[Poses], truth: list[dict[str, torch.Tensor]]) -> None:
    assert len(found) == len(truth)
    for poses, gt in zip(found, truth, strict=True):
        n = gt["boxes"].shape[0]
        assert len(poses) == n
        torch.testing.assert_close(poses.boxes, gt["boxes"], rtol=0, atol=1e-4)
        torch.testing.assert_close(poses.keypoints, gt["keypoints"], rtol=0, atol=1e-4)
        want = torch.sigmoid(torch.tensor([oso.person_logit(i) for i in range(n)]))
        torch.testing.assert_close(poses.scores, want, rtol=0, atol=1e-6)
        assert bool(((poses.keypoint_scores > 0.5) == (gt["visible"] > 0)).all())


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"score_thr": 1.5}, r"score_thr must be a number in \[0, 1\]"),
        ({"score_thr": True}, "score_thr"),
        ({"nms_thr": -0.1}, "nms_thr"),
        ({"nms_mode": "soft"}, r"nms_mode must be one of \('box', 'oks'\)"),
        ({"max_detections": 0}, "max_detections must be an int >= 1"),
        ({"max_detections": 2.0}, "max_detections"),
        ({"sigmas": ()}, "sigmas must be None or a non-empty list"),
        ({"sigmas": (0.1, -0.1)}, "sigmas"),
        ({"sigmas": (0.1, math.nan)}, "sigmas"),
        ({"refine": "dcc"}, r"refine must be one of \('none', 'heatmap'\)"),
        ({"refine": "heatmap", "heatmap_stride": 5}, r"heatmap_stride 5 must divide the input size \(64, 96\)"),
        ({"heatmap_stride": 0}, "heatmap_stride must be an int >= 1"),
        ({"snap_radius": 2.0}, "snap_radius"),
    ],
)
def test_bad_config_says_what_is_expected(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        codec(**kwargs)


def test_config_defaults_and_lists() -> None:
    c = codec(sigmas=[0.1] * K)
    assert c.sigmas == (0.1,) * K and isinstance(c.sigmas, tuple)
    assert (c.score_thr, c.nms_mode, c.nms_thr, c.max_detections) == (0.1, "oks", 0.65, 30)
    assert c.task == "onestage" and c.output_keys == ONESTAGE_OUTPUT_KEYS
    assert codec(refine="heatmap").output_keys == (*ONESTAGE_OUTPUT_KEYS, "heatmaps")
    assert c.target_shapes(K) == {"boxes": (4,), "keypoints": (K, 2), "visible": (K,), "areas": ()}


# --------------------------------------------------------------------------- encode


def test_encode_golden() -> None:
    keypoints = torch.tensor(
        [
            [[10.0, 20.0], [30.0, 5.0], [70.0, 50.0], [20.0, 40.0]],  # third is outside (x > W = 64)
            [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]],  # nobody visible
            [[5.0, 6.0], [float("nan"), 0.0], [60.0, 90.0], [64.0, 96.0]],  # NaN: missing; (W, H) is inside
        ]
    )
    visible = torch.tensor([[1.0, 1.0, 1.0, 0.3], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    t = codec().encode(keypoints, visible)
    # The box is the extent of the keypoints with visible > 0.5, also outside the input.
    torch.testing.assert_close(t["boxes"], torch.tensor([[10.0, 5.0, 70.0, 50.0], [0.0] * 4, [5.0, 6.0, 64.0, 96.0]]))
    torch.testing.assert_close(t["areas"], torch.tensor([60.0 * 45.0, 0.0, 59.0 * 90.0]))
    want = [[1.0, 1.0, 0.0, 0.0], [0.0] * 4, [1.0, 0.0, 1.0, 1.0]]
    assert t["visible"].tolist() == want and t["keypoint_weights"].tolist() == want
    assert t["keypoints"][2, 1].tolist() == [0.0, 0.0]
    assert all(v.dtype == torch.float32 and bool(v.isfinite().all()) for v in t.values())


def test_encode_keeps_given_boxes() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 20.0], [5.0, 5.0, 4.0, 9.0]], dtype=torch.float64)  # second inverted
    t = codec().encode(torch.rand(2, K, 2) * 50, torch.ones(2, K), boxes)
    assert t["boxes"].dtype == torch.float32
    torch.testing.assert_close(t["boxes"], boxes.float())
    assert t["areas"].tolist() == [200.0, 0.0]
    with pytest.raises(ValueError, match=r"boxes must be a tensor \(N, 4\) = \(2, 4\)"):
        codec().encode(torch.rand(2, K, 2), torch.ones(2, K), torch.zeros(3, 4))


# --------------------------------------------------------------------------- decode


@pytest.mark.parametrize("mode", ["box", "oks"])
def test_decode_finds_exactly_the_people_it_was_shown(mode: str) -> None:
    c = codec(nms_mode=mode)
    truth = people([4, 0, 7, 1], seed=0, c=c)
    outputs = oso.dense_outputs(truth, SIZE, torch.Generator().manual_seed(1))
    assert_found_exactly(c.decode(outputs), truth)
    found = c.decode_numpy({k: v.numpy() for k, v in outputs.items()})
    assert_found_exactly([Poses(*(torch.from_numpy(getattr(p, f)) for f in _FIELDS)) for p in found], truth)


_FIELDS = ("boxes", "scores", "keypoints", "keypoint_scores")


def test_without_nms_the_duplicates_come_back() -> None:
    c = codec(nms_thr=1.0)  # nothing overlaps by more than 1
    truth = people([3], seed=2, c=c)
    (poses,) = c.decode(oso.dense_outputs(truth, SIZE, torch.Generator().manual_seed(3), copies=3))
    assert len(poses) == 9


def test_max_detections_keeps_the_best_and_score_thr_drops_the_weak() -> None:
    truth = people([12], seed=4, c=codec())
    outputs = oso.dense_outputs(truth, SIZE, torch.Generator().manual_seed(5))
    (poses,) = codec(max_detections=5).decode(outputs)
    assert_found_exactly([poses], [{k: v[:5] for k, v in truth[0].items()}])
    # person_logit(11) = 5.25 -> score 0.9948: a threshold just above it keeps 11 people.
    thr = float(torch.sigmoid(torch.tensor(oso.person_logit(11)))) + 1e-4
    (poses,) = codec(score_thr=thr).decode(outputs)
    assert_found_exactly([poses], [{k: v[:11] for k, v in truth[0].items()}])


@pytest.mark.parametrize("num_anchors", [0, 50])
def test_nobody_found_is_empty_poses(num_anchors: int) -> None:
    c = codec()
    outputs = {
        "obj_logits": torch.full((2, num_anchors), -5.0),
        "boxes": torch.rand(2, num_anchors, 4),
        "keypoints": torch.rand(2, num_anchors, K, 2),
        "vis_logits": torch.rand(2, num_anchors, K),
    }
    for found, lib in ((c.decode(outputs), torch), (c.decode_numpy({k: v.numpy() for k, v in outputs.items()}), np)):
        assert len(found) == 2
        for poses in found:
            assert len(poses) == 0
            shapes = [tuple(getattr(poses, f).shape) for f in _FIELDS]
            assert shapes == [(0, 4), (0,), (0, K, 2), (0, K)]
            assert all(getattr(poses, f).dtype == lib.float32 for f in _FIELDS)


@pytest.mark.parametrize("mode", ["box", "oks"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_decode_takes_amp_dtypes_and_returns_float32(mode: str, dtype: torch.dtype) -> None:
    c = codec(nms_mode=mode)
    truth = people([3, 2], seed=6, c=c)
    outputs = oso.dense_outputs(truth, SIZE, torch.Generator().manual_seed(7))
    found = c.decode({k: v.to(dtype) for k, v in outputs.items()})
    assert [len(p) for p in found] == [3, 2]
    for poses, gt in zip(found, truth, strict=True):
        assert all(getattr(poses, f).dtype == torch.float32 for f in _FIELDS)
        torch.testing.assert_close(poses.keypoints, gt["keypoints"], rtol=0, atol=0.5)  # bfloat16: 8 bits


@pytest.mark.parametrize("mode", ["box", "oks"])
def test_decode_numpy_equals_decode_on_random_outputs(mode: str) -> None:
    gen = torch.Generator().manual_seed(8)
    a = oso.num_anchors(SIZE)
    outputs = {
        "obj_logits": torch.randn(3, a, generator=gen) * 3,
        "boxes": torch.rand(3, a, 4, generator=gen).sort(dim=-1).values * 60,  # x1 <= y1 <= x2 <= y2: valid boxes
        "keypoints": torch.rand(3, a, K, 2, generator=gen) * 60,
        "vis_logits": torch.randn(3, a, K, generator=gen),
    }
    c = codec(nms_mode=mode, nms_thr=0.3, max_detections=100)
    found_t = c.decode({k: v.double() for k, v in outputs.items()})
    found_n = c.decode_numpy({k: v.numpy() for k, v in outputs.items()})
    assert 0 < sum(len(p) for p in found_n) and any(len(p) < 100 for p in found_n)
    for pt, pn in zip(found_t, found_n, strict=True):
        for f in _FIELDS:
            assert getattr(pn, f).dtype == np.float32
            np.testing.assert_allclose(getattr(pn, f), getattr(pt, f).numpy(), rtol=0, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("mode", ["box", "oks"])
def test_cuda_decode_equals_cpu(mode: str) -> None:
    c = codec(nms_mode=mode)
    truth = people([5, 0, 3], seed=9, c=c)
    outputs = oso.dense_outputs(truth, SIZE, torch.Generator().manual_seed(10))
    with torch.no_grad():
        found = c.decode({k: v.cuda() for k, v in outputs.items()})
    assert all(p.boxes.device.type == "cuda" for p in found)
    assert_found_exactly([Poses(*(getattr(p, f).cpu() for f in _FIELDS)) for p in found], truth)


# --------------------------------------------------------------------------- errors and the runtime


def test_wrong_outputs_are_named() -> None:
    c = codec(sigmas=(0.05,) * 5)
    good = {"obj_logits": torch.full((1, 4), -5.0), "boxes": torch.zeros(1, 4, 4)}  # nobody above score_thr
    good |= {"keypoints": torch.zeros(1, 4, K, 2), "vis_logits": torch.zeros(1, 4, K)}
    with pytest.raises(KeyError, match="decode needs output 'vis_logits'"):
        c.decode({k: v for k, v in good.items() if k != "vis_logits"})
    with pytest.raises(ValueError, match="needs model output 'boxes'"):
        c.decode_numpy({k: v.numpy() for k, v in good.items() if k != "boxes"})
    with pytest.raises(ValueError, match=r"'vis_logits' must have shape \(1, 4, 17\)"):
        c.decode({**good, "vis_logits": torch.zeros(1, 4, 5)})
    with pytest.raises(ValueError, match="sigmas has 5 values but the model predicts 17 keypoints"):
        c.decode(good)
    codec(sigmas=(0.05,) * 5, nms_mode="box").decode(good)  # box NMS reads no sigmas


def test_bundle_config_decodes_and_needs_no_torch() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # any import of torch now fails
        import numpy as np
        from posecore.codecs import numpy_decoder

        decode = numpy_decoder({"name": "yoloxpose", "nms_mode": "oks", "sigmas": [0.05] * 3}, (64, 96))
        rng = np.random.default_rng(0)
        outputs = {
            "obj_logits": rng.normal(size=(2, 40)).astype(np.float32),
            "boxes": np.sort(rng.uniform(0, 60, (2, 40, 4)), axis=-1).astype(np.float32),
            "keypoints": rng.uniform(0, 60, (2, 40, 3, 2)).astype(np.float32),
            "vis_logits": rng.normal(size=(2, 40, 3)).astype(np.float32),
        }
        found = decode(outputs)
        assert len(found) == 2 and all(0 < len(p) <= 30 and p.keypoints.shape[1:] == (3, 2) for p in found)
        print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert numpy_decoder({"name": "yoloxpose"}, SIZE).__self__ == codec()  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- heatmap refinement


def test_heatmap_refinement_snaps_visible_keypoints_back_to_the_truth() -> None:
    """Regressed keypoints 1.5 px off; heatmaps peak at the true cells of the visible keypoints:
    decoding puts every visible keypoint back on the truth and leaves the others where they were."""
    c = codec(refine="heatmap")
    truth = people([4, 0, 6], seed=11, c=c)
    for gt in truth:  # on the heatmap grid, so that a peak cell is exactly the truth
        gt["keypoints"] = (gt["keypoints"] / 4).round() * 4
    outputs = oso.dense_outputs(truth, SIZE, torch.Generator().manual_seed(12), copies=1)
    exact = outputs["keypoints"].clone()
    outputs["keypoints"] = exact + torch.tensor([1.5, -1.0])
    heat = torch.full((3, K, SIZE[1] // 4, SIZE[0] // 4), -8.0)
    for b, gt in enumerate(truth):
        for kp, vis in zip(gt["keypoints"], gt["visible"], strict=True):
            cells = (kp / 4).long()
            for k in torch.nonzero(vis > 0).squeeze(1).tolist():
                heat[b, k, cells[k, 1].clamp(max=heat.shape[2] - 1), cells[k, 0].clamp(max=heat.shape[3] - 1)] = 8.0
    outputs["heatmaps"] = heat
    found_t = c.decode(outputs)
    found_n = c.decode_numpy({k: v.numpy() for k, v in outputs.items()})
    for poses_t, poses_n, gt in zip(found_t, found_n, truth, strict=True):
        assert len(poses_t) == len(poses_n) == gt["boxes"].shape[0]
        np.testing.assert_allclose(poses_n.keypoints, poses_t.keypoints.numpy(), rtol=0, atol=1e-5)
        shown = gt["visible"] > 0
        torch.testing.assert_close(poses_t.keypoints[shown], gt["keypoints"][shown], rtol=0, atol=1e-4)
        moved = gt["keypoints"][~shown] + torch.tensor([1.5, -1.0])
        torch.testing.assert_close(poses_t.keypoints[~shown], moved, rtol=0, atol=1e-4)
        # keypoint scores: visibility times the heatmap at the final position: sigmoid(6) * sigmoid(8)
        # on a peak; the hidden keypoints (vis logit -6) stay unsnapped, off every peak
        np.testing.assert_allclose(poses_n.keypoint_scores, poses_t.keypoint_scores.numpy(), rtol=0, atol=1e-6)
        on_peak = float(torch.sigmoid(torch.tensor(6.0)) * torch.sigmoid(torch.tensor(8.0)))
        torch.testing.assert_close(
            poses_t.keypoint_scores[shown], torch.full_like(poses_t.keypoint_scores[shown], on_peak)
        )
        assert bool((poses_t.keypoint_scores[~shown] < 1e-3).all())
    # without refinement the same outputs decode to the regressed keypoints
    (plain, *_) = codec().decode(outputs)
    torch.testing.assert_close(plain.keypoints, truth[0]["keypoints"] + torch.tensor([1.5, -1.0]), rtol=0, atol=1e-4)


def test_heatmap_refinement_checks_the_heatmap_shape() -> None:
    c = codec(refine="heatmap")
    good = {"obj_logits": torch.full((1, 4), -5.0), "boxes": torch.zeros(1, 4, 4)}  # nobody above score_thr
    good |= {"keypoints": torch.zeros(1, 4, K, 2), "vis_logits": torch.zeros(1, 4, K)}
    with pytest.raises(KeyError, match="decode needs output 'heatmaps'"):
        c.decode(good)
    with pytest.raises(ValueError, match=r"'heatmaps' must have shape \(1, 17, 24, 16\)"):
        c.decode({**good, "heatmaps": torch.zeros(1, K, 16, 24)})
    found = c.decode_numpy({**{k: v.numpy() for k, v in good.items()}, "heatmaps": np.zeros((1, K, 24, 16))})
    assert len(found[0]) == 0
