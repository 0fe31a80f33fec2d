"""``benchmarks/bench_train.py`` runs end to end with the tiniest settings and reports what it promises."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import RunBenchmark  # tests/benchmarks/conftest.py


@pytest.mark.slow
def test_bench_train_tiny(run_benchmark: RunBenchmark, tmp_path: Path) -> None:
    out = tmp_path / "train.json"
    args = ["--presets", "synthetic-lite0", "--batch", "2", "--steps", "2", "--warmup", "1", "--images", "4"]
    proc = run_benchmark("bench_train.py", *args, "--num-workers", "1", "--json", str(out))
    header = next(line for line in proc.stdout.splitlines() if line.startswith("preset"))
    for column in ("input", "batch", "samples/s", "step ms", "data wait ms", "wait share %"):
        assert column in header
    row = next(line for line in proc.stdout.splitlines() if line.startswith("synthetic-lite0 "))
    assert "96x128" in row

    report = json.loads(out.read_text())
    assert report["benchmark"] == "train"
    assert report["settings"]["batch"] == 2 and report["settings"]["num_workers"] == 1
    (result,) = report["results"]
    assert result["preset"] == "synthetic-lite0" and result["input_size"] == [96, 128]
    assert result["steps"] == 2 and len(result["step_times_ms"]) == 2 and len(result["wait_times_ms"]) == 2
    assert result["samples_per_s"] > 0 and result["step_ms"] > 0
    assert 0 <= result["data_wait_ms"] <= result["step_ms"]
    assert 0 <= result["wait_share"] <= 1
    assert math.isfinite(result["build_ms"]) and result["build_ms"] > 0  # measured inside the batch builder


def test_bench_train_rejects_unknown_preset(repo_root: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / "bench_train.py"), "--presets", "no-such-preset"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 2
    assert "unknown presets ['no-such-preset']" in proc.stderr
