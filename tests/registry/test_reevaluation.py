"""A champion's re-evaluation: compared with its registration record, tagged, failed on a real drop."""

from __future__ import annotations

import pytest

from posecore.registry import Champion
from posecore.registry.reevaluation import ChampionDegraded, Reevaluation, check_drop, compare


def _champion(metric: str = "AP", value: float | None = 0.70, higher: bool = True) -> Champion:
    return Champion("posecore-pose", "4", "champion", "run1", metric, value, "md5:aaa", higher)


def test_a_drop_on_the_same_data_is_worse_by_its_size() -> None:
    result = compare(_champion(), {"AP": 0.65, "PCK": 0.9}, "md5:aaa")
    assert result.same_data and result.value == 0.65
    assert result.change == pytest.approx(-0.05) and result.worse_by == pytest.approx(0.05)


def test_lower_is_better_metrics_count_a_rise_as_worse() -> None:
    result = compare(_champion("EPE", 4.0, higher=False), {"EPE": 4.5}, "md5:aaa")
    assert result.change == pytest.approx(0.5) and result.worse_by == pytest.approx(0.5)


def test_other_data_is_flagged_and_a_missing_record_gives_no_change() -> None:
    assert not compare(_champion(), {"AP": 0.7}, "md5:bbb").same_data
    unknown = compare(_champion(value=None), {"AP": 0.7}, "md5:aaa")
    assert unknown.change is None and unknown.worse_by is None
    with pytest.raises(ValueError, match="metric 'AP' not found in the re-evaluation; metrics there: PCK"):
        compare(_champion(), {"PCK": 0.9}, "md5:aaa")


def test_max_drop_fails_only_a_real_drop_on_the_same_data() -> None:
    dropped = compare(_champion(), {"AP": 0.60}, "md5:aaa")
    with pytest.raises(
        ChampionDegraded, match=r"AP 0.6 on the same val data, worse than at registration \(0.7\) by 0.1"
    ):
        check_drop(dropped, max_drop=0.05)
    check_drop(dropped, max_drop=0.2)
    check_drop(dropped, max_drop=None)
    check_drop(compare(_champion(), {"AP": 0.60}, "md5:other"), max_drop=0.05)  # not comparable: no verdict
    check_drop(compare(_champion(), {"AP": 0.80}, "md5:aaa"), max_drop=0.0)


def test_version_tags_and_table() -> None:
    result: Reevaluation = compare(_champion(), {"AP": 0.72, "PCK": 0.9}, "md5:aaa")
    tags = result.tags("run9")
    assert tags["posecore.reeval.metric"] == "AP" and tags["posecore.reeval.value"] == "0.72"
    assert tags["posecore.reeval.same_data"] == "true" and tags["posecore.reeval.run_id"] == "run9"
    assert float(tags["posecore.reeval.change"]) == pytest.approx(0.02)
    rows = {row["name"]: row["value"] for row in result.table()}
    assert rows["model"] == "posecore-pose@champion (version 4)"
    assert rows["AP now"] == 0.72 and rows["AP at registration"] == 0.70 and rows["PCK"] == 0.9
