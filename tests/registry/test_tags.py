"""posecore.registry.tags: reading tags back and finding a metric in a metrics file."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from posecore.registry.tags import (
    TAG_TASK,
    bool_tag,
    find_metric,
    float_tag,
    format_value,
    metric_key,
    read_eval_metrics,
    task_tag,
)


def test_float_tags_are_finite_numbers_or_none() -> None:
    assert float_tag("0.5") == 0.5 and float_tag(format_value(0.1)) == 0.1
    assert [float_tag(t) for t in (None, "", "none", "nan", "inf", "x")] == [None] * 6
    assert format_value(None) == "none"


def test_bool_tags_fall_back_to_the_default_only_when_absent() -> None:
    assert bool_tag(None, True) and not bool_tag(None, False)
    assert bool_tag(" True ", False) and not bool_tag("false", True)


def test_the_task_tag_defaults_to_top_down_on_versions_from_before_it() -> None:
    assert task_tag({TAG_TASK: "onestage"}) == "onestage" and TAG_TASK == "posecore.task"
    assert task_tag({}) == task_tag(None) == task_tag({TAG_TASK: ""}) == "topdown"


def test_metric_key() -> None:
    assert metric_key("AP (M)") == "AP _M_" and metric_key("") == "metric"


def test_find_metric_takes_the_name_or_the_shortest_suffix() -> None:
    assert find_metric({"AP": 0.5, "test/AP": 0.4}, "AP") == 0.5
    assert find_metric({"eval": {"AP": 0.3}, "x.val/AP": 0.2}, "AP") == 0.3
    assert find_metric({"val.AP": 0.6, "flag": True}, "AP") == 0.6
    with pytest.raises(ValueError, match="metric 'AP' not found in here; metrics there: PCK"):
        find_metric({"PCK": 0.9, "ok": True}, "AP", "here")


def test_eval_metrics_come_from_the_file_else_the_bundle(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "metrics.json"
    recorded = {"metrics": {"AP": 0.5}}
    with caplog.at_level(logging.WARNING, "posecore.registry"):
        assert read_eval_metrics(path, recorded) == ({"AP": 0.5}, "bundle.json provenance")
    assert "does not exist; using the metrics recorded in bundle.json" in caplog.text
    with pytest.raises(FileNotFoundError, match="run the evaluate stage first"):
        read_eval_metrics(path, {"metrics": {}})
    path.write_text(json.dumps({"AP": 0.7}))
    assert read_eval_metrics(path, recorded) == ({"AP": 0.7}, str(path))
    path.write_text("[1]")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        read_eval_metrics(path, recorded)
    path.write_text("{")
    with pytest.raises(ValueError, match="is not valid JSON"):
        read_eval_metrics(path, recorded)
