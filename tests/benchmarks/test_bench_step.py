"""``benchmarks/bench_step.py`` runs with the tiniest settings and reports both variants and their ratio."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import RunBenchmark  # tests/benchmarks/conftest.py


@pytest.mark.slow
def test_bench_step_tiny(run_benchmark: RunBenchmark, tmp_path: Path) -> None:
    out = tmp_path / "step.json"
    args = ["--presets", "synthetic-lite0,yoloxpose-lite0", "--batch", "2", "--steps", "2", "--warmup", "1"]
    proc = run_benchmark("bench_step.py", *args, "--json", str(out))
    rows = json.loads(out.read_text())["results"]
    assert [r["preset"] for r in rows] == ["synthetic-lite0", "yoloxpose-lite0"]
    for r in rows:
        assert r["plain_s"] > 0 and r["engine_s"] > 0
        assert r["ratio"] == pytest.approx(r["engine_s"] / r["plain_s"])
        line = next(line for line in proc.stdout.splitlines() if line.startswith(r["preset"] + " "))
        assert f"{r['ratio']:.3f}" in line
