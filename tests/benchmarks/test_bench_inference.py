"""``benchmarks/bench_inference.py``'s one-stage section runs end to end with the tiniest settings and reports what it promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_bench_onestage_vs_topdown_tiny(repo_root: Path, tmp_path: Path) -> None:
    args = ["--quick", "--sections", "onestage", "--threads", "1", "--onestage-input", "64",
            "--people", "1,3", "--scene-images", "1"]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / "bench_inference.py"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "one-stage (yoloxpose-lite0, 64x64) vs top-down (rtmpose-t, flip test)" in out
    header = next(line for line in out.splitlines() if line.lstrip().startswith("people"))
    for column in ("one-stage img/s", "top-down, GT boxes", "one-stage det + top-down"):
        assert column in header
    rows = {int(line.split()[0]): line.split() for line in out.splitlines() if re.match(r"\s+[13]\s+\d", line)}
    assert set(rows) == {1, 3}
    assert all(float(v) > 0 for row in rows.values() for v in row[2:])
    assert re.search(r"time at 3 people / at 1: one-stage [\d.]+  top-down GT boxes [\d.]+  one-stage det", out)
