"""CocoKeypointEvaluator: rescoring, NMS, pycocotools stats, results JSON.

The ``test_mmpose_alignment_*`` inputs and expected stats are MMPose 1.x's
``TestCocoMetric.test_topdown_alignment`` (open-mmlab/mmpose,
``tests/test_evaluation/test_metrics/test_coco_metric.py``) on the same
``tests/data/coco/test_coco.json`` that ``../shared/data/mmpose_samples/coco`` holds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from posecore.evaluation.coco import (
    STATS_NAMES,
    CocoKeypointEvaluator,
    InstancePrediction,
    KeypointPredictions,
    rescore,
)
from posecore.metainfo import load_meta, parse_meta


@pytest.fixture(scope="module")
def coco_file(shared_data: Path) -> Path:
    path = shared_data / "mmpose_samples" / "coco" / "test_coco.json"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="module")
def anns(coco_file: Path) -> list[dict]:
    return json.loads(coco_file.read_text())["annotations"]


def _gt_predictions(anns: list[dict], noise: float = 0.0, seed: int = 0) -> KeypointPredictions:
    """Ground truth as predictions: score 1 where v > 0, else 0; the box area for NMS."""
    labelled = [a for a in anns if a["num_keypoints"] > 0 and not a["iscrowd"]]
    kpts = np.array([a["keypoints"] for a in labelled], dtype=np.float64).reshape(len(labelled), -1, 3)
    xy = kpts[..., :2] + np.random.default_rng(seed).normal(0.0, noise, kpts[..., :2].shape) * (noise > 0)
    return KeypointPredictions(
        image_ids=np.array([a["image_id"] for a in labelled]),
        keypoints=xy,
        keypoint_scores=(kpts[..., 2] > 0).astype(np.float64),
        areas=np.array([a["bbox"][2] * a["bbox"][3] for a in labelled]),
        bboxes=np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in labelled)]),
    )


@pytest.mark.real_data
@pytest.mark.parametrize("nms_mode", ["oks_nms", "soft_oks_nms", "none"])
def test_ground_truth_scores_one(coco_file: Path, anns: list[dict], nms_mode: str) -> None:
    evaluator = CocoKeypointEvaluator(coco_file, load_meta("coco"), nms_mode=nms_mode)  # type: ignore[arg-type]
    stats = evaluator.evaluate(_gt_predictions(anns))
    assert list(stats) == list(STATS_NAMES)
    assert stats == {name: 1.0 for name in STATS_NAMES}
    assert "Average Precision" in evaluator.last.log  # pycocotools' summary, kept out of stdout


@pytest.mark.real_data
def test_quiet(coco_file: Path, anns: list[dict], capsys: pytest.CaptureFixture[str]) -> None:
    CocoKeypointEvaluator(coco_file, load_meta("coco")).evaluate(_gt_predictions(anns))
    assert capsys.readouterr().out == ""


@pytest.mark.real_data
def test_noise_lowers_ap_monotonically(coco_file: Path, anns: list[dict]) -> None:
    evaluator = CocoKeypointEvaluator(coco_file, load_meta("coco"))
    aps = [evaluator.evaluate(_gt_predictions(anns, noise=s))["AP"] for s in (0.0, 2.0, 5.0, 12.0)]
    assert aps[0] == 1.0
    assert all(a > b for a, b in zip(aps, aps[1:], strict=False)), aps
    assert aps[-1] < 0.5


def _mmpose_alignment_inputs(anns: list[dict]) -> KeypointPredictions:
    # all 14 annotations; x * 0.98, y * 1.02, score = v * 0.8, box score 0.98, area = (1.25 w) * (1.25 h)
    kpts = np.array([a["keypoints"] for a in anns], dtype=np.float32).reshape(len(anns), -1, 3)
    kpts[..., 0] *= 0.98
    kpts[..., 1] *= 1.02
    kpts[..., 2] *= 0.8
    return KeypointPredictions(
        image_ids=np.array([a["image_id"] for a in anns]),
        keypoints=kpts[..., :2],
        keypoint_scores=kpts[..., 2],
        bbox_scores=np.full(len(anns), 0.98, dtype=np.float32),
        areas=np.array([a["bbox"][2] * 1.25 * a["bbox"][3] * 1.25 for a in anns]),
        instance_ids=np.array([a["id"] for a in anns]),
    )


@pytest.mark.real_data
def test_mmpose_alignment_bbox_keypoint_oks_nms(coco_file: Path, anns: list[dict]) -> None:
    evaluator = CocoKeypointEvaluator(coco_file, load_meta("coco"), score_mode="bbox_keypoint", nms_mode="oks_nms")
    stats = evaluator.evaluate(_mmpose_alignment_inputs(anns))
    expected = {
        "AP": 0.5287458745874587,
        "AP .5": 0.9042904290429042,
        "AP .75": 0.5009900990099009,
        "AP (M)": 0.42475247524752474,
        "AP (L)": 0.6219554455445544,
        "AR": 0.5833333333333333,
        "AR .5": 0.9166666666666666,
        "AR .75": 0.5833333333333334,
        "AR (M)": 0.44000000000000006,
        "AR (L)": 0.6857142857142857,
    }
    assert stats == pytest.approx(expected, abs=1e-9)


@pytest.mark.real_data
def test_mmpose_alignment_soft_oks_nms(coco_file: Path, anns: list[dict]) -> None:
    # two predictions per annotation, ids id and id + 1 (so some collide and are deduplicated)
    parts = []
    for i, a in enumerate(anns):
        k0 = np.array(a["keypoints"], dtype=np.float32).reshape(1, -1, 3)
        area = [a["bbox"][2] * 1.25 * a["bbox"][3] * 1.25]
        for sign, score_scale, box_score, iid in ((1, 1, 1.0, a["id"]), (-1, 2, 1 - 2 * i / 100, a["id"] + 1)):
            k = k0.copy()
            k[..., 0] *= 1 - sign * i / 100
            k[..., 1] *= 1 + sign * i / 100
            k[..., 2] *= 1 - score_scale * i / 100
            parts.append(
                KeypointPredictions(
                    image_ids=[a["image_id"]],
                    keypoints=k[..., :2],
                    keypoint_scores=k[..., 2],
                    bbox_scores=np.array([box_score], dtype=np.float32),
                    areas=area,
                    instance_ids=[iid],
                )
            )
    evaluator = CocoKeypointEvaluator(coco_file, load_meta("coco"), nms_mode="soft_oks_nms", nms_thr=0.9)
    expected = {
        "AP": 0.17073707370737073,
        "AP .5": 0.25055005500550054,
        "AP .75": 0.10671067106710669,
        "AP (M)": 0.0,
        "AP (L)": 0.29315181518151806,
        "AR": 0.2416666666666666,
        "AR .5": 0.3333333333333333,
        "AR .75": 0.16666666666666666,
        "AR (M)": 0.0,
        "AR (L)": 0.41428571428571426,
    }
    assert evaluator.evaluate(parts) == pytest.approx(expected, abs=1e-9)


@pytest.mark.real_data
def test_duplicates_are_suppressed_by_oks_nms(coco_file: Path, anns: list[dict]) -> None:
    gt = _gt_predictions(anns)
    shifted = KeypointPredictions(
        image_ids=gt.image_ids,
        keypoints=gt.keypoints + 0.5,
        keypoint_scores=gt.keypoint_scores * 0.9,
        areas=gt.areas,
        bboxes=gt.bboxes,
    )
    both = KeypointPredictions.concat([gt, shifted])
    with_nms = CocoKeypointEvaluator(coco_file, load_meta("coco"), nms_mode="oks_nms")
    without = CocoKeypointEvaluator(coco_file, load_meta("coco"), nms_mode="none")
    assert len(with_nms.format_results(both)) == len(gt)
    assert len(without.format_results(both)) == 2 * len(gt)
    assert with_nms.evaluate(both)["AP"] == 1.0


def test_rescoring_by_hand() -> None:
    preds = KeypointPredictions(
        image_ids=[1, 1, 2],
        keypoints=np.zeros((3, 4, 2)),
        keypoint_scores=[[0.9, 0.5, 0.1, 0.2], [0.1, 0.1, 0.1, 0.1], [1.0, 1.0, 1.0, 0.6]],
        bbox_scores=[0.8, 0.7, 0.5],
    )
    # only scores > 0.2 count: (0.9 + 0.5) / 2 = 0.7 -> 0.8 * 0.7; none -> 0; (3 + 0.6) / 4 = 0.9 -> 0.45
    np.testing.assert_allclose(rescore(preds, "bbox_keypoint", 0.2), [0.56, 0.0, 0.45])
    np.testing.assert_allclose(rescore(preds, "bbox"), [0.8, 0.7, 0.5])
    np.testing.assert_allclose(rescore(preds, "keypoint"), [0.425, 0.1, 0.9])


@pytest.mark.real_data
def test_results_json_loads_with_pycocotools(coco_file: Path, anns: list[dict], tmp_path: Path) -> None:
    evaluator = CocoKeypointEvaluator(coco_file, load_meta("coco"))
    preds = _gt_predictions(anns, noise=1.0)
    evaluator.evaluate(preds)
    out = evaluator.write_results_json(tmp_path / "eval" / "results.keypoints.json")
    records = json.loads(out.read_text())
    assert len(records) == len(preds)
    first = records[0]
    assert set(first) == {"image_id", "category_id", "keypoints", "score", "bbox"}
    assert first["category_id"] == 1 and len(first["keypoints"]) == 3 * 17
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary left behind
    gt = COCO(str(coco_file))
    dt = gt.loadRes(str(out))
    assert len(dt.getAnnIds()) == len(records)


@pytest.mark.real_data
def test_instance_list_and_empty_input(coco_file: Path, anns: list[dict]) -> None:
    evaluator = CocoKeypointEvaluator(coco_file, load_meta("coco"), nms_mode="none")
    batch = _gt_predictions(anns)
    instances = [
        InstancePrediction(
            image_id=int(batch.image_ids[i]),
            keypoints=batch.keypoints[i],
            keypoint_scores=batch.keypoint_scores[i],
            area=float(batch.areas[i]),
        )
        for i in range(len(batch))
    ]
    assert evaluator.evaluate(instances)["AP"] == 1.0
    assert evaluator.evaluate([])["AP"] == 0.0


@pytest.mark.real_data
def test_errors_say_what_to_fix(coco_file: Path) -> None:
    with pytest.raises(ValueError, match="keypoints but the meta"):
        CocoKeypointEvaluator(coco_file, load_meta("mpii"))
    evaluator = CocoKeypointEvaluator(coco_file, load_meta("coco"))
    unknown = KeypointPredictions(image_ids=[123], keypoints=np.zeros((1, 17, 2)), keypoint_scores=np.ones((1, 17)))
    with pytest.raises(ValueError, match="not in"):
        evaluator.evaluate(unknown)
    with pytest.raises(ValueError, match="nms_mode"):
        CocoKeypointEvaluator(coco_file, load_meta("coco"), nms_mode="nms")  # type: ignore[arg-type]


def _tiny_schema_file(tmp_path: Path, with_area: bool) -> tuple[Path, object]:
    meta = parse_meta(
        {
            "name": "tri",
            "keypoints": [{"name": n, "color": [255, 0, 0]} for n in ("a", "b", "c")],
            "skeleton": [],
            "joint_weights": [1, 1, 1],
            "sigmas": [0.05, 0.05, 0.05],
        }
    )
    anns = [
        {
            "id": 1,
            "image_id": 1,
            "category_id": 1,
            "bbox": [10, 10, 80, 80],
            "keypoints": [20, 20, 2, 50, 50, 2, 80, 80, 1],
            "num_keypoints": 3,
            "iscrowd": 0,
        }
    ]
    if with_area:
        anns[0]["area"] = 6400.0
    doc = {"images": [{"id": 1, "width": 100, "height": 100, "file_name": "a.png"}], "annotations": anns}
    doc["categories"] = [meta.coco_category()]
    path = tmp_path / "val.json"
    path.write_text(json.dumps(doc))
    return path, meta


@pytest.mark.parametrize(("use_area", "with_area"), [(True, True), (False, True), (True, False)])
def test_custom_schema_and_use_area(tmp_path: Path, use_area: bool, with_area: bool) -> None:
    path, meta = _tiny_schema_file(tmp_path, with_area)
    evaluator = CocoKeypointEvaluator(path, meta, use_area=use_area)  # type: ignore[arg-type]
    gt = np.array([[[20, 20], [50, 50], [80, 80]]], dtype=np.float64)
    preds = KeypointPredictions(image_ids=[1], keypoints=gt, keypoint_scores=np.ones((1, 3)))
    assert evaluator.evaluate(preds)["AP"] == pytest.approx(1.0)  # pycocotools: 1 / (1 + eps) for one match
    # a 3 px error: OKS = exp(-9 / (2 * 0.05)^2 / area / 2) with area 6400, or 0.53 * 6400 without use_area
    off = KeypointPredictions(image_ids=[1], keypoints=gt + [3.0, 0.0], keypoint_scores=np.ones((1, 3)))
    area = 6400.0 if (use_area and with_area) else 0.53 * 6400.0
    oks = float(np.exp(-9.0 / 0.01 / area / 2))
    ap = evaluator.evaluate(off)["AP"]
    # AP over thresholds 0.50:0.05:0.95 for a single perfect-rank match: share of thresholds below OKS
    thresholds = np.linspace(0.5, 0.95, 10)
    assert ap == pytest.approx(float(np.mean(thresholds < oks)), abs=1e-9)
    assert 0.0 < ap < 1.0


# --- COCO-WholeBody per part (MMPose's CocoWholeBodyMetric) -----------------------------------------------

WHOLEBODY_EXPECTED = {
    # MMPose 1.3.2's CocoWholeBodyMetric (xtcocotools, part sigmas) on the same displaced ground truth of
    # its sample test_coco_wholebody.json, printed by
    # `$PEER/venv/bin/python benchmarks/_mmpose_wholebody_expectation.py ../shared/data/mmpose_samples/coco`.
    "body": {"AP": 0.9316973125884017, "AP .5": 1.0, "AR": 0.95},
    "foot": {"AP": 0.8514851485148516, "AP .5": 0.8514851485148514, "AR": 1.0},
    "face": {"AP": 0.3647164716471647, "AP .5": 0.8424842484248423, "AP .75": 0.2574257425742574, "AR": 0.45},
    "lefthand": {"AP": 0.3497376880545197, "AP .5": 0.4909990999099909, "AR": 0.78},
    "righthand": {"AP": 0.5496463932107496, "AP .5": 0.6039603960396039, "AR": 0.9},
    "wholebody": {"AP": 0.6936963696369637, "AP .75": 0.7079207920792079, "AR": 0.7749999999999999},
}


@pytest.mark.real_data
def test_wholebody_parts_match_mmpose(shared_data: Path, tmp_path: Path) -> None:
    from posecore.datasets.converters import SourceSpec, convert
    from posecore.datasets.converters.coco_wholebody import PARTS, wholebody_keypoints
    from posecore.evaluation.parts import PARTS_BY_META, evaluate_parts

    root = shared_data / "mmpose_samples" / "coco"
    spec = SourceSpec(
        source="coco_wholebody", meta="coco_wholebody", root=str(root),
        annotations={"all": "test_coco_wholebody.json"}, val_fraction=0.0,
    )  # fmt: skip
    convert(spec, tmp_path / "data")
    raw = json.loads((root / "test_coco_wholebody.json").read_text())["annotations"]
    anns = [a for a in raw if any(v > 0 for key, _ in PARTS for v in a[key][2::3])]
    kps = np.asarray([wholebody_keypoints(a) for a in anns], np.float64).reshape(len(anns), 133, 3)[..., :2]
    i = np.arange(len(anns) * 133).reshape(len(anns), 133)  # the peer script's offsets(n, k)
    moved = kps + np.stack([(i * 7 % 13) - 6.0, (i * 5 % 11) - 5.0], axis=-1) * 0.5
    preds = KeypointPredictions(
        image_ids=np.asarray([a["image_id"] for a in anns]),
        keypoints=moved,
        keypoint_scores=np.ones((len(anns), 133)),
        bbox_scores=np.ones(len(anns)),
        areas=np.asarray([a["bbox"][2] * a["bbox"][3] for a in anns], np.float64),
    )
    meta = load_meta("coco_wholebody")
    evaluator = CocoKeypointEvaluator(tmp_path / "data" / "annotations" / "train.json", meta)
    out = evaluate_parts(evaluator, preds, PARTS_BY_META["coco_wholebody"])
    assert list(out) == ["body", "foot", "face", "lefthand", "righthand", "wholebody"]
    for part, expected in WHOLEBODY_EXPECTED.items():
        for name, value in expected.items():
            assert out[part][name] == pytest.approx(value, abs=1e-9), (part, name)
    assert evaluator.last is not None and evaluator.last.stats["AP"] == out["wholebody"]["AP"]

    from posecore.evaluation.topdown import coco_metrics, metric_names

    reported = metric_names(coco_metrics(evaluator, preds))  # what metrics.json gets
    assert reported["AP"] == out["wholebody"]["AP"] and reported["face/AP"] == out["face"]["AP"]
    assert reported["lefthand/AP_.5"] == out["lefthand"]["AP .5"] and "righthand/AR" in reported
