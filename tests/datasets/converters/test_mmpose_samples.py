"""Every keypoint family of MMPose's sample folders converts by params alone (``data.source=coco`` with the
family's ``data.meta``), and its ground truth scored as predictions gets its family's perfect score."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from posecore.datasets.converters import SourceSpec, convert
from posecore.evaluation.coco import CocoKeypointEvaluator, KeypointPredictions
from posecore.evaluation.keypoint_metrics import EPEEvaluator, NMEEvaluator, PCKEvaluator
from posecore.metainfo import load_meta
from posecore.visualization.browse import browse

# meta -> (folder under mmpose_samples, annotation file, image folder, family)
SAMPLES: dict[str, tuple[str, str, str, str]] = {
    "onehand10k": ("onehand10k", "test_onehand10k.json", ".", "hand"),
    "freihand": ("freihand", "test_freihand.json", ".", "hand"),
    "wflw": ("wflw", "test_wflw.json", ".", "face"),
    "300w": ("300w", "test_300w.json", ".", "face"),
    "cofw": ("cofw", "test_cofw.json", ".", "face"),
    "ap10k": ("ap10k", "test_ap10k.json", ".", "animal"),
    "halpe": ("halpe", "test_halpe.json", "../coco", "body"),
    "posetrack18": ("posetrack18", "annotations/test_posetrack18_val.json", ".", "body"),
    "crowdpose": ("crowdpose", "test_crowdpose.json", ".", "body"),
    "aic": ("aic", "test_aic.json", ".", "body"),
    "coco": ("coco", "test_coco.json", ".", "body"),
}


def _labelled(doc: dict[str, Any], k: int) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray]:
    anns = [a for a in doc["annotations"] if not a.get("iscrowd") and np.any(np.asarray(a["keypoints"])[2::3] > 0)]
    kp = np.asarray([a["keypoints"] for a in anns], np.float64).reshape(len(anns), k, 3)
    return anns, kp[..., :2], kp[..., 2] > 0


@pytest.mark.real_data
@pytest.mark.parametrize("meta_name", sorted(SAMPLES))
def test_converts_by_params_and_ground_truth_scores_perfectly(
    shared_data: Path, tmp_path: Path, meta_name: str
) -> None:
    folder, ann, images, family = SAMPLES[meta_name]
    root = shared_data / "mmpose_samples" / folder
    spec = SourceSpec(
        source="coco",
        meta=meta_name,
        root=str(root),
        annotations={"all": ann},
        images={"all": images},
        val_fraction=0.5,
    )
    report = convert(spec, tmp_path / "data")
    source = json.loads((root / ann).read_text())
    assert sum(c["images"] for c in report.counts.values()) == len(source["images"])
    meta = load_meta(tmp_path / "data" / "meta.yaml")
    assert meta.name == meta_name

    scored = 0
    for split in report.counts:
        ann_file = tmp_path / "data" / "annotations" / f"{split}.json"
        doc = json.loads(ann_file.read_text())
        anns, kp, mask = _labelled(doc, meta.num_keypoints)
        if not anns:
            continue
        scored += len(anns)
        preds = KeypointPredictions(
            image_ids=np.asarray([a["image_id"] for a in anns]),
            keypoints=kp,
            keypoint_scores=np.ones(mask.shape),
            bbox_scores=np.ones(len(anns)),
            areas=np.asarray([a["area"] for a in anns], np.float64),
        )
        assert CocoKeypointEvaluator(ann_file, meta).evaluate(preds)["AP"] == pytest.approx(1.0), split
        boxes = np.asarray([a["bbox"] for a in anns], np.float64)
        boxes[:, 2:] += boxes[:, :2]
        if family == "hand":
            assert PCKEvaluator(meta, thr=0.2).evaluate(kp, kp, mask, bboxes=boxes).metrics["PCK"] == 1.0
            assert EPEEvaluator(meta).evaluate(kp, kp, mask).metrics["EPE"] == 0.0
        if family == "face":
            assert NMEEvaluator(meta).evaluate(kp, kp, mask).metrics["NME"] == 0.0
            moved = kp + np.asarray([1.0, 0.0])
            assert NMEEvaluator(meta).evaluate(moved, kp, mask).metrics["NME"] > 0.0
        # `posecore browse` draws every family: whole images and person crops
        for mode in ("image", "instance"):
            pngs = browse(tmp_path / "data", tmp_path / "browse" / mode, split=split, n=2, mode=mode)  # type: ignore[arg-type]
            assert pngs and all(p.is_file() for p in pngs), (split, mode)
            drawn = np.asarray(Image.open(pngs[0]))
            assert drawn.ndim == 3 and drawn.std() > 0
    assert scored > 0


@pytest.mark.real_data
def test_a_meta_file_of_ones_own_converts_with_no_code(shared_data: Path, tmp_path: Path) -> None:
    """data.meta may be a YAML file: any COCO-style JSON whose keypoint count matches it converts."""
    from posecore.metainfo import resolve_meta_path

    text = resolve_meta_path("onehand10k").read_text().replace("name: onehand10k", "name: my_hands", 1)
    (tmp_path / "my_hands.yaml").write_text(text)
    root = shared_data / "mmpose_samples" / "onehand10k"
    spec = SourceSpec(
        source="coco", meta=str(tmp_path / "my_hands.yaml"), root=str(root), annotations={"all": "test_onehand10k.json"}
    )
    convert(spec, tmp_path / "data")
    assert load_meta(tmp_path / "data" / "meta.yaml").name == "my_hands"


@pytest.mark.real_data
def test_a_meta_whose_keypoint_count_differs_is_refused_and_nothing_written(shared_data: Path, tmp_path: Path) -> None:
    from posecore.validation import DataValidationError

    root = shared_data / "mmpose_samples" / "onehand10k"
    spec = SourceSpec(source="coco", meta="wflw", root=str(root), annotations={"all": "test_onehand10k.json"})
    with pytest.raises(DataValidationError, match="keypoints"):
        convert(spec, tmp_path / "data")
    assert not (tmp_path / "data").exists()
