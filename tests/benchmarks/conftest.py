"""``run_benchmark``: run a script of ``benchmarks/`` in a subprocess from a temporary folder."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

RunBenchmark = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def run_benchmark(repo_root: Path, tmp_path: Path) -> RunBenchmark:
    """``run_benchmark("bench_x.py", *args, timeout=600)`` -> the finished process (stdout, stderr
    as text), run with ``tmp_path`` as its working folder; a non-zero exit fails the test with
    the end of its output."""

    def run(script: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, str(repo_root / "benchmarks" / script), *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
        return proc

    return run
