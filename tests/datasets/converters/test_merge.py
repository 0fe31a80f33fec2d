"""posecore.datasets.converters.merge: several sources with their own skeletons as one canonical dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import tiny_model as tiny  # tests/_helpers (put on sys.path by tests/conftest.py)

from posecore.datasets.converters import SourceSpec, convert
from posecore.datasets.converters.config import DataParams
from posecore.datasets.converters.merge import MergeSource, keypoint_mapping
from posecore.metainfo import load_meta
from posecore.validation import DataValidationError


def _coco(shared_data: Path) -> dict[str, Any]:
    root = shared_data / "mmpose_samples" / "coco"
    return {"source": "coco", "meta": "coco", "root": str(root), "annotations": {"all": "test_coco.json"}}


def _aic(shared_data: Path, **extra: Any) -> MergeSource:
    root = shared_data / "mmpose_samples" / "aic"
    return MergeSource(
        **{"source": "aic", "meta": "aic", "root": str(root), "annotations": {"all": "test_aic.json"}, **extra}
    )


def _docs(out: Path) -> dict[str, dict[str, Any]]:
    return {s: json.loads((out / "annotations" / f"{s}.json").read_text()) for s in ("train", "val")}


def test_mapping_by_name_explicit_and_unmapped() -> None:
    coco, aic = load_meta("coco"), load_meta("aic")
    mapping = keypoint_mapping(coco, aic, {}, "data.merge[0]")
    for k, name in enumerate(coco.keypoint_names):
        assert mapping[k] == (aic.keypoint_names.index(name) if name in aic.keypoint_names else -1), name
    assert sum(i >= 0 for i in mapping) == 12, "the limbs; COCO's face has no AIC counterpart"
    explicit = keypoint_mapping(coco, aic, {"nose": "head_top"}, "data.merge[0]")
    assert explicit[0] == aic.keypoint_names.index("head_top") and explicit[1:] == mapping[1:]


def test_a_mapping_to_a_joint_that_does_not_exist_names_the_field() -> None:
    coco, aic = load_meta("coco"), load_meta("aic")
    with pytest.raises(
        DataValidationError, match=r"data\.merge\[0\].*keypoint_map\.nose.*'chin'.*not a keypoint of 'aic'"
    ):
        keypoint_mapping(coco, aic, {"nose": "chin"}, "data.merge[0]")
    with pytest.raises(DataValidationError, match=r"keypoint_map.*'tail'.*not a keypoint of the target meta 'coco'"):
        keypoint_mapping(coco, aic, {"tail": "neck"}, "data.merge[0]")


@pytest.mark.real_data
def test_coco_and_aic_merge_into_coco_17(shared_data: Path, tmp_path: Path) -> None:
    spec = DataParams(**_coco(shared_data), val_fraction=0.5, merge=[_aic(shared_data, name="aic", val_fraction=0.5)])
    report = convert(spec, tmp_path / "data")
    docs = _docs(tmp_path / "data")
    assert set(report.sources or {}) == {"coco", "aic"}
    on_disk = json.loads((tmp_path / "data" / "report.json").read_text())
    assert on_disk["sources"] == report.sources
    for split, doc in docs.items():
        for name in ("coco", "aic"):
            mine = [i for i in doc["images"] if i["source"] == name]
            assert len(mine) == report.sources[name][split]["images"], (split, name)
        ids = [i["id"] for i in doc["images"]]
        assert len(set(ids)) == len(ids) and len({a["id"] for a in doc["annotations"]}) == len(doc["annotations"])
        for image in doc["images"]:
            assert (tmp_path / "data" / "images" / image["file_name"]).is_file()
    raw = {
        a["id"]: a for a in json.loads((shared_data / "mmpose_samples/aic/test_aic.json").read_text())["annotations"]
    }
    coco, aic = load_meta("coco"), load_meta("aic")
    merged_aic = [
        a for doc in docs.values() for a in doc["annotations"]
        if any(i["id"] == a["image_id"] and i["source"] == "aic" for i in doc["images"])
    ]  # fmt: skip
    assert merged_aic and len(merged_aic) == sum(report.sources["aic"][s]["annotations"] for s in docs)
    by_xy = {tuple(a["bbox"]): a for a in raw.values()}
    matched = 0
    for ann in merged_aic:
        assert len(ann["keypoints"]) == 3 * 17
        src = by_xy[tuple(ann["bbox"])] if tuple(ann["bbox"]) in by_xy else None
        assert ann["keypoints"][2::3][:5] == [0] * 5, "the face has no AIC source: unlabelled"
        if src is not None:
            matched += 1
            for name in ("right_shoulder", "left_knee"):
                t, s = coco.keypoint_names.index(name), aic.keypoint_names.index(name)
                assert ann["keypoints"][3 * t : 3 * t + 2] == pytest.approx(src["keypoints"][3 * s : 3 * s + 2])
        assert ann["num_keypoints"] == sum(1 for v in ann["keypoints"][2::3] if v > 0)
    assert matched > 0, "the values are checked against their AIC source"
    coco_ids = {a["id"] for a in json.loads((shared_data / "mmpose_samples/coco/test_coco.json").read_text())["images"]}
    assert {i["id"] for d in docs.values() for i in d["images"] if i["source"] == "coco"} <= coco_ids, (
        "primary ids kept"
    )


@pytest.mark.real_data
def test_a_ratio_resamples_the_train_split_only(shared_data: Path, tmp_path: Path) -> None:
    once = convert(DataParams(**_coco(shared_data), merge=[_aic(shared_data, val_fraction=0.34)]), tmp_path / "a")
    twice = convert(
        DataParams(**_coco(shared_data), merge=[_aic(shared_data, val_fraction=0.34, ratio=2.0)]), tmp_path / "b"
    )
    assert once.sources and twice.sources
    assert twice.sources["aic"]["train"]["images"] == 2 * once.sources["aic"]["train"]["images"] > 0
    assert twice.sources["aic"]["train"]["annotations"] == 2 * once.sources["aic"]["train"]["annotations"]
    assert twice.sources["aic"]["val"] == once.sources["aic"]["val"]
    train = _docs(tmp_path / "b")["train"]
    assert len({i["id"] for i in train["images"]}) == len(train["images"]), "a repeated image gets its own id"


@pytest.mark.real_data
def test_duplicate_names_and_bad_sources_write_nothing(shared_data: Path, tmp_path: Path) -> None:
    spec = DataParams(**_coco(shared_data), merge=[_aic(shared_data, name="coco")])
    with pytest.raises(DataValidationError, match="'coco' is used more than once"):
        convert(spec, tmp_path / "data")
    wrong_meta = DataParams(**_coco(shared_data), merge=[_aic(shared_data, meta="mpii")])
    with pytest.raises(DataValidationError, match="test_aic.json"):
        convert(wrong_meta, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_params_yaml_spells_a_merged_source() -> None:
    params = tiny.parse_params(
        {"data": {"merge": [{"name": "aic", "source": "aic", "meta": "aic", "root": "x", "keypoint_map": {"nose": "neck"}, "ratio": 0.5}]}}
    )  # fmt: skip
    (src,) = params.data.merge
    assert isinstance(src, MergeSource) and isinstance(src, SourceSpec)
    assert (src.name, src.keypoint_map, src.ratio) == ("aic", {"nose": "neck"}, 0.5)
    from posecore.config import ConfigError, parse_params

    with pytest.raises(ConfigError, match=r"data\.merge\[0\]\.source: 'nope' is not allowed"):
        parse_params({"data": {"merge": [{"source": "nope"}]}})
