"""``benchmarks/bench_pipeline.py`` runs end to end on a tiny pipeline and reports what it promises."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from workspace import tiny_lift_flags  # tests/_helpers

if TYPE_CHECKING:
    from conftest import RunBenchmark  # tests/benchmarks/conftest.py

# A tiny, fast model and export: the benchmark's plumbing is under test here, not the numbers.
TINY = [
    "--images", "8", "--val-images", "2", "--batch", "4", "--repeats", "1",
    "--set", "model.preset=synthetic-lite0", "--set", "model.input_size=[64, 64]",
    "--set", "model.backbone={name: mobilenetv3_small}",
    "--set", "export.dynamo=false", "--set", "export.latency_runs=1", "--set", "export.parity_samples=4",
]  # fmt: skip
# The 3D group at its defaults takes ~11 min a run, and the benchmark runs the stages more than once.
TINY += tiny_lift_flags()


@pytest.mark.slow
def test_bench_pipeline_tiny(run_benchmark: RunBenchmark, repo_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "pipeline.json"
    proc = run_benchmark("bench_pipeline.py", *TINY, "--json", str(out), timeout=900)
    for section in ("(a) no-op dvc repro", "(b) Prefect", "(c) MLflow", "Orchestration overhead", "(goal < 5%)"):
        assert section in proc.stdout, proc.stdout
    assert "estimated from the tiny run" in proc.stdout

    report = json.loads(out.read_text())
    stages = list(yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"])
    assert report["stages"] == stages
    first = report["first_repro"]
    assert set(first["in_dvc_s"]) == set(stages) and set(first["process_s"]) == set(stages)
    assert all(0 < first["process_s"][s] <= first["in_dvc_s"][s] for s in stages)
    assert len(report["noop_repro_s"]) == 1
    prefect = report["prefect"]
    assert set(prefect["direct_s"]) == set(stages)
    assert set(prefect["runs"]["stand-in"]["task_s"]) == set(stages)
    if "flows.pipeline" not in prefect["runs"]:
        assert "not available" in prefect["flows_pipeline"] or "failed" in prefect["flows_pipeline"]
    plan = report["plan"]
    assert plan["train_keys"] and plan["val_keys"]  # names taken from what the tiny run logged
    assert len(report["mlflow"]["logging"]["epoch_s"]) == plan["epochs"]
    assert report["default_run"]["source"] == "estimate"
    assert set(report["default_run"]["per_stage_s"]) == set(stages)
    share = report["overhead"]["share"]
    assert math.isfinite(share) and share > 0
