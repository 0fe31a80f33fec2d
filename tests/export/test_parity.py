"""posecore.export.parity: ONNX Runtime vs PyTorch on real val inputs, top-down crops and one-stage whole images."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import tiny_model as tiny  # tests/_helpers (put on sys.path by tests/conftest.py)
import torch

from posecore.codecs.base import Poses
from posecore.evaluation.topdown import normalized_inputs
from posecore.export.onnx import export_onnx, ort_session, run_onnx, tile_batch
from posecore.export.parity import SCORE_MARGIN, check_parity, compare_poses


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with tiny.one_thread():
        yield


def _inputs(trained, split, n: int) -> torch.Tensor:  # noqa: ANN001
    real = normalized_inputs(split, np.arange(len(split)), trained.model.mean, trained.model.std)
    return torch.from_numpy(tile_batch(real.numpy(), n))


# --------------------------------------------------------------------------- top-down


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_parity_with_pytorch_on_real_inputs(exported, batch: int) -> None:  # noqa: ANN001
    trained, split, path = exported.trained, exported.split, exported.path
    inputs = _inputs(trained, split, batch)
    session = ort_session(path, threads=1)
    outputs = run_onnx(session, inputs.numpy())
    assert {k: v.shape for k, v in outputs.items()} == {"simcc_x": (batch, 17, 128), "simcc_y": (batch, 17, 128)}
    parity = check_parity(trained.model, session, inputs, (batch,))
    assert parity.max_abs_diff <= 1e-4 and parity.max_kpt_px <= 0.5
    assert parity.failures(1e-4, 0.5) == []
    assert parity.max_box_px == 0.0 and parity.count_mismatches == 0 and parity.pixel_outputs == ()


def test_parity_failures_name_the_tolerance(exported) -> None:  # noqa: ANN001
    trained, split, path = exported.trained, exported.split, exported.path
    parity = check_parity(trained.model, ort_session(path), _inputs(trained, split, 2), (2,))
    failures = parity.failures(atol=-1.0, max_kpt_px=-1.0)
    assert "export.atol" in failures[0] and "export.max_kpt_px" in failures[1]


# --------------------------------------------------------------------------- decoded people


def _poses(boxes: list[list[float]], scores: list[float], k: int = 2) -> Poses:
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    centre = (b[:, None, :2] + b[:, None, 2:]) / 2
    return Poses(b, np.asarray(scores, np.float32), np.repeat(centre, k, axis=1), np.ones((len(b), k), np.float32))


def test_people_are_paired_whatever_their_order() -> None:
    a = _poses([[0, 0, 10, 20], [30, 0, 40, 20]], [0.9, 0.8])
    b = _poses([[30.5, 0, 40.5, 20], [0, 0, 10, 20]], [0.8, 0.9])  # swapped, the second moved by 0.5 px
    kpt, box, mismatches = compare_poses([a], [b], score_thr=0.1)
    assert kpt == pytest.approx(0.5) and box == pytest.approx(0.5) and mismatches == 0


def test_a_person_found_once_counts_unless_its_score_is_at_the_threshold() -> None:
    both = [[0, 0, 10, 20]]
    ref = _poses([*both, [30, 0, 40, 20]], [0.9, 0.5])
    assert compare_poses([ref], [_poses(both, [0.9])], score_thr=0.1) == (0.0, 0.0, 1)
    borderline = _poses([*both, [30, 0, 40, 20]], [0.9, 0.1 + SCORE_MARGIN / 2])
    assert compare_poses([borderline], [_poses(both, [0.9])], score_thr=0.1) == (0.0, 0.0, 0)
    assert compare_poses([borderline], [_poses(both, [0.9])], score_thr=None)[2] == 1
    empty = _poses([], [])
    assert compare_poses([empty, ref], [empty, ref]) == (0.0, 0.0, 0)


# --------------------------------------------------------------------------- one-stage


@pytest.mark.parametrize("batch", [1, 3])
def test_onestage_parity_on_real_val_images(onestage_exported, batch: int) -> None:  # noqa: ANN001
    trained, split = onestage_exported.trained, onestage_exported.split
    model = trained.model
    inputs = _inputs(trained, split, batch)
    session = ort_session(onestage_exported.path, threads=1)
    parity = check_parity(model, session, inputs, (1, batch))
    assert set(parity.per_output) == set(model.codec.output_keys) and parity.pixel_outputs == ("boxes", "keypoints")
    assert parity.count_mismatches == 0
    assert parity.max_kpt_px <= 0.05 and parity.max_box_px <= 0.05
    assert parity.failures(1e-4, 0.5) == []
    found = [len(p) for p in model.predict(inputs)]
    assert min(found) > 0, "the decoded comparison compared people, not empty lists"


def test_onestage_parity_fails_when_the_export_is_another_model(onestage_exported, tmp_path) -> None:  # noqa: ANN001
    model = onestage_exported.trained.model
    other = copy.deepcopy(model)
    with torch.no_grad():
        for conv in (*other.head.kpt_preds, *other.head.obj_preds):
            conv.bias.add_(0.7)
    path = export_onnx(other, tmp_path / "other.onnx", dynamo=False).path
    parity = check_parity(
        model, ort_session(path, threads=1), _inputs(onestage_exported.trained, onestage_exported.split, 2), (2,)
    )
    failures = " ".join(parity.failures(1e-4, 0.5))
    assert "export.atol" in failures and "obj_logits" in failures
    assert "decoded keypoints differ" in failures
