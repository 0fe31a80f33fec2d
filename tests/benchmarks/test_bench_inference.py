"""``benchmarks/bench_inference.py``'s one-stage section runs end to end with the tiniest settings and reports what it promises."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import RunBenchmark  # tests/benchmarks/conftest.py


@pytest.mark.slow
def test_bench_onestage_vs_topdown_tiny(run_benchmark: RunBenchmark) -> None:
    args = ["--quick", "--sections", "onestage", "--threads", "1", "--onestage-input", "64",
            "--people", "1,3", "--scene-images", "1"]  # fmt: skip
    proc = run_benchmark("bench_inference.py", *args)
    out = proc.stdout
    assert "one-stage (yoloxpose-lite0, 64x64) vs top-down (rtmpose-t, flip test)" in out
    header = next(line for line in out.splitlines() if line.lstrip().startswith("people"))
    for column in ("one-stage img/s", "top-down, GT boxes", "one-stage det + top-down"):
        assert column in header
    rows = {int(line.split()[0]): line.split() for line in out.splitlines() if re.match(r"\s+[13]\s+\d", line)}
    assert set(rows) == {1, 3}
    assert all(float(v) > 0 for row in rows.values() for v in row[2:])
    assert re.search(r"time at 3 people / at 1: one-stage [\d.]+  top-down GT boxes [\d.]+  one-stage det", out)
