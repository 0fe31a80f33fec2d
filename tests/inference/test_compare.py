"""posecore.inference.compare: a top-down bundle run on a dataset's val images, whole-image box and ground-truth boxes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import posecore.inference.compare as compare_module
from posecore.evaluation.topdown import EvalConfig
from posecore.inference.compare import PROTOCOLS, compare_topdown
from posecore.inference.pipeline import PosePrediction, instance_scores
from posecore.metainfo import load_meta

TinyBundle = Any  # conftest.TinyBundle
CFG = EvalConfig(batch_size=2)
N_VAL = 3


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A canonical synthetic dataset folder with a 3-image val split."""
    from posecore.datasets.converters import SourceSpec, convert
    from posecore.datasets.synthetic import SynthParams, generate

    root = tmp_path_factory.mktemp("compare")
    synth, data = root / "synthetic", root / "data"
    generate(SynthParams(out=str(synth), n_train=2, n_val=N_VAL, width=96, height=96, workers=1), synth)
    convert(SourceSpec(source="synthetic", meta="coco", root=str(synth)), data)
    return data


def _annotations(data: Path) -> list[dict[str, Any]]:
    return json.loads((data / "annotations" / "val.json").read_text())["annotations"]


def test_runs_the_bundle_both_ways(coco_bundle: TinyBundle, dataset: Path) -> None:
    out = compare_topdown(coco_bundle.path, dataset, load_meta(dataset / "meta.yaml"), CFG)
    assert tuple(out) == PROTOCOLS == ("whole_image", "gt_boxes")
    for metrics in out.values():
        assert {"AP", "AP_.5", "AR", "AR_M"} <= set(metrics)
        assert all(-1.0 <= v <= 1.0 for v in metrics.values())


def test_scores_what_the_runtime_answers(coco_bundle: TinyBundle, dataset: Path, monkeypatch) -> None:  # noqa: ANN001
    """An oracle in place of the network: the ground truth for a ground-truth box, nothing useful for
    the whole image; so the ceiling is 1 and the whole-image run far below it."""
    meta = load_meta(dataset / "meta.yaml")
    by_box = [
        (np.asarray(a["bbox"], np.float64), np.asarray(a["keypoints"], np.float64).reshape(-1, 3))
        for a in _annotations(dataset)
    ]
    seen = []

    def oracle(model, image, dets, batch_size=32):  # noqa: ANN001, ANN202
        seen.append(len(dets))
        kps, scores = [], []
        for x1, y1, x2, y2 in dets.boxes:
            found = [kp for box, kp in by_box if np.allclose(box, (x1, y1, x2 - x1, y2 - y1), atol=1.5)]
            kp = found[0] if found else np.zeros((meta.num_keypoints, 3))
            kps.append(kp[:, :2])
            scores.append(np.where(kp[:, 2] > 0, 1.0, 0.5))
        kp_a, sc_a = np.asarray(kps, np.float64), np.asarray(scores, np.float64)
        return PosePrediction(dets.boxes, dets.scores, kp_a, sc_a, instance_scores(dets.scores, sc_a))

    monkeypatch.setattr(compare_module, "predict_poses", oracle)
    out = compare_topdown(coco_bundle.path, dataset, meta, CFG)
    people = sum(1 for a in _annotations(dataset) if not a.get("iscrowd") and a["num_keypoints"] > 0)
    assert sum(seen) == N_VAL + people, "one whole-image box per image, then one box per labelled person"
    assert out["gt_boxes"]["AP"] == pytest.approx(1.0)
    assert out["whole_image"]["AP"] < 0.5


def test_refuses_other_bundles(coco_bundle: TinyBundle, dataset: Path, tmp_path: Path) -> None:
    meta = load_meta(dataset / "meta.yaml")
    onestage = tmp_path / "onestage"
    shutil.copytree(coco_bundle.path, onestage)
    doc = json.loads((onestage / "bundle.json").read_text())
    (onestage / "bundle.json").write_text(json.dumps({**doc, "task": "onestage"}))
    with pytest.raises(ValueError, match="'onestage' model; the comparison runs a top-down bundle"):
        compare_topdown(onestage, dataset, meta, CFG)
    with pytest.raises(ValueError, match="predicts 17 keypoints of meta 'coco', but the evaluated data has 14"):
        compare_topdown(coco_bundle.path, dataset, load_meta("crowdpose"), CFG)
