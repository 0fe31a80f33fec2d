"""posecore.experiment.keys: keys and values as MLflow accepts them."""

from __future__ import annotations

import pytest

from posecore.experiment.keys import MAX_KEY_LENGTH, check_metric_key, param_value, safe_key


def test_safe_key_replaces_what_mlflow_refuses_and_bounds_the_length() -> None:
    assert safe_key("dvc.encode.data/cache.md5") == "dvc.encode.data/cache.md5"
    assert safe_key("a{b}") == "a_b_"
    long = safe_key("x" * 300)
    assert len(long) == MAX_KEY_LENGTH and long.startswith("x" * 10) and "~" in long
    assert safe_key("x" * 300) == long != safe_key("x" * 301)


def test_param_value_writes_sequences_as_json_and_cuts_long_text() -> None:
    assert param_value((170, 200)) == "[170, 200]"
    assert param_value(0.001) == "0.001"
    cut = param_value("y" * 500, limit=100)
    assert len(cut) == 100 and cut.endswith("see params.json]")


def test_bad_metric_names_are_refused_at_the_call() -> None:
    check_metric_key("val/AP_.5")
    with pytest.raises(ValueError, match="not accepted by MLflow"):
        check_metric_key("loss{head}")
