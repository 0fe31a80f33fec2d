"""posecore.registry.fingerprint: one rule for naming the evaluation data."""

from __future__ import annotations

import hashlib
from pathlib import Path

from posecore.registry.fingerprint import eval_data_fingerprint, file_fingerprint, recorded_fingerprint, with_boxes


def test_file_fingerprint_is_the_md5_dvc_records(tmp_path: Path) -> None:
    path = tmp_path / "val.json"
    path.write_bytes(b'{"images": []}' * 100_000)  # several read blocks
    assert file_fingerprint(path) == "md5:" + hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def test_configured_then_recorded_then_the_file(tmp_path: Path) -> None:
    val = tmp_path / "val.json"
    val.write_text("{}")
    assert eval_data_fingerprint(val, configured="md5:set", recorded=[{"eval_data": "md5:rec"}]) == "md5:set"
    assert eval_data_fingerprint(val, recorded=[{"eval_data": ""}, {"data_fingerprint": "md5:rec"}]) == "md5:rec"
    assert eval_data_fingerprint(val, recorded=[{"eval_data": None, "eval_data_fingerprint": 3}]) == file_fingerprint(
        val
    )
    assert eval_data_fingerprint(tmp_path / "missing.json") is None


def test_recorded_keys_in_order() -> None:
    assert recorded_fingerprint([{"data_fingerprint": "b", "eval_data": "a"}]) == "a"
    assert recorded_fingerprint([{}, {"eval_data_fingerprint": "c"}]) == "c"
    assert recorded_fingerprint([]) is None


def test_the_boxes_are_part_of_the_fingerprint() -> None:
    assert with_boxes("md5:aaa", "gt") == "md5:aaa", "ground-truth boxes: what versions registered so far carry"
    assert with_boxes("md5:aaa", "file:md5:bbb") == "md5:aaa+boxes=file:md5:bbb"
    assert with_boxes("md5:aaa", "model:posecore-pose-onestage/3") != with_boxes(
        "md5:aaa", "model:posecore-pose-onestage/4"
    )
    assert with_boxes(None, "file:md5:bbb") is None
