"""posecore.evaluation.outputs: scoring a split's predictions and writing the report files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tiny_model as tiny  # tests/_helpers (put on sys.path by tests/conftest.py)

import posecore.evaluation.outputs as outputs_module
from posecore.data.cache import open_cache
from posecore.evaluation.outputs import per_keypoint_oks, write_report
from posecore.evaluation.topdown import SplitPredictions, image_keypoints
from posecore.metainfo import load_meta


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    return tiny.build(tmp_path_factory.mktemp("outputs"))


def test_ground_truth_as_predictions_scores_perfectly(trained, tmp_path: Path) -> None:  # noqa: ANN001
    params = trained.params
    split = open_cache(Path(params.encode.out))["val"]
    gt = image_keypoints(split)
    preds = SplitPredictions(gt.astype(np.float32), np.ones(split.visible.shape, np.float32))
    gt_file = Path(params.data.out) / "annotations" / "val.json"
    outputs = write_report(preds, split, gt_file, load_meta("coco"), params.evaluate, tmp_path / "eval")
    assert outputs.metrics["AP"] == pytest.approx(1.0)
    assert outputs.metrics["AR"] == pytest.approx(1.0)
    assert outputs.metrics["PCK"] == pytest.approx(1.0)
    assert outputs.metrics["EPE"] == pytest.approx(0.0, abs=1e-3)
    oks = per_keypoint_oks(gt, gt, split.visible > 0, split.area, np.asarray(load_meta("coco").sigmas))
    assert np.nanmin(oks) == pytest.approx(1.0)


@pytest.mark.parametrize(("fraction", "expected"), [(0.15, 1.0), (0.25, 0.0)])
def test_torso_pck_is_reported_beside_the_box_one(trained, tmp_path: Path, fraction: float, expected: float) -> None:  # noqa: ANN001
    """tPCK (LSP's strict measure): every keypoint moved by a fraction of its person's torso
    |left_shoulder - right_hip|; within 0.2 of it counts, beyond does not."""
    params = trained.params
    split = open_cache(Path(params.encode.out))["val"]
    meta = load_meta("coco")
    gt = image_keypoints(split).astype(np.float64)
    ls, rh = meta.keypoint_names.index("left_shoulder"), meta.keypoint_names.index("right_hip")
    torso = np.linalg.norm(gt[:, ls] - gt[:, rh], axis=-1)
    keep = (split.visible[:, ls] > 0) & (split.visible[:, rh] > 0) & (torso >= 1)
    preds = gt.copy()
    preds[..., 0] += fraction * torso[:, None]
    gt_file = Path(params.data.out) / "annotations" / "val.json"
    outputs = write_report(
        SplitPredictions(preds.astype(np.float32), np.ones(split.visible.shape, np.float32)),
        split, gt_file, meta, params.evaluate, tmp_path / "eval",
    )  # fmt: skip
    assert keep.all(), "the tiny val people all show both torso joints"
    assert outputs.metrics["tPCK"] == pytest.approx(expected)
    assert outputs.metrics["tPCK_0.2"] == outputs.metrics["tPCK"] and "PCK" in outputs.metrics
    assert "tPCK@0.2" in (tmp_path / "eval" / "per_keypoint.csv").read_text().splitlines()[0]


def test_per_keypoint_oks_by_hand() -> None:
    # one keypoint 2 px off, area 100, sigma 0.1: exp(-4 / (2 * 100 * 0.04)) = exp(-0.5)
    pred, gt = np.array([[[2.0, 0.0], [5.0, 5.0]]]), np.array([[[0.0, 0.0], [0.0, 0.0]]])
    oks = per_keypoint_oks(pred, gt, np.array([[True, False]]), np.array([100.0]), np.array([0.1, 0.1]))
    assert oks[0] == pytest.approx(np.exp(-0.5)) and np.isnan(oks[1])


def test_worst_panels_show_the_worst_instances_where_they_are(trained, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """With fewer panels than instances, each panel gets its own instance's crop, prediction and ground truth."""
    params = trained.params
    split = open_cache(Path(params.encode.out))["val"]
    gt = image_keypoints(split)
    preds = SplitPredictions(gt.astype(np.float32).copy(), np.ones(split.visible.shape, np.float32))
    worst = len(split) - 1
    preds.keypoints[worst] += 7.0  # one instance clearly off, the others perfect
    drawn = {}

    def capture(images, pred_keypoints, gt_keypoints, visible, meta, labels):  # noqa: ANN001, ANN202
        drawn.update(images=images, pred=pred_keypoints, gt=gt_keypoints, labels=labels)
        return np.zeros((8, 8, 3), np.uint8)

    monkeypatch.setattr(outputs_module, "worst_instances_grid", capture)
    gt_file = Path(params.data.out) / "annotations" / "val.json"
    write_report(preds, split, gt_file, load_meta("coco"), params.evaluate, tmp_path / "eval", worst_n=2)
    assert len(drawn["images"]) == 2
    np.testing.assert_array_equal(drawn["images"][0], split.images([worst])[0])
    np.testing.assert_allclose(drawn["gt"][0], split.keypoints[worst])
    shift = drawn["pred"][0] - split.keypoints[worst]
    assert np.all(np.abs(shift) > 0.5), "the prediction is 7 image pixels off, drawn in input pixels"
    assert drawn["labels"][0].startswith(f"img {int(split.image_id[worst])}: 9.9px")
