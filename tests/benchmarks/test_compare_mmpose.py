"""``benchmarks/compare_mmpose.py``: its ratios, its table, its posecore side on tiny sizes, its exit on a bad peer.

The MMPose side needs MMPose 1.3.2 in a venv of its own (``../shared/peer/README.md``); its test
runs only when ``$POSECORE_MMPOSE_PYTHON`` names that venv's python.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "compare_mmpose.py"


@pytest.fixture(scope="module")
def compare() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("compare_mmpose", SCRIPT)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]  # dataclasses look their module up there
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    yield module
    sys.modules.pop(spec.name, None)  # type: ignore[union-attr]


def test_speedup_is_time_ratio_for_times_and_rate_ratio_for_rates(compare: ModuleType) -> None:
    assert compare.speedup(400.0, 20.0, higher_is_better=False) == pytest.approx(20.0)
    assert compare.speedup(150.0, 1500.0, higher_is_better=True) == pytest.approx(10.0)


def test_row_summary_medians_bests_and_ratios(compare: ModuleType) -> None:
    times = compare.row_summary(compare.Row("enc", "us", [4.0, 2.0, 3.0], [0.5, 0.1, 0.2], scale=1e6))
    assert times["mmpose_median"] == 3.0 and times["mmpose_best"] == 2.0
    assert times["posecore_median"] == 0.2 and times["posecore_best"] == 0.1
    assert times["ratio_median"] == pytest.approx(15.0) and times["ratio_best"] == pytest.approx(20.0)
    rates = compare.row_summary(compare.Row("pipe", "samples/s", [100.0, 120.0], [900.0, 1300.0], True, goal=10.0))
    assert rates["mmpose_best"] == 120.0 and rates["posecore_best"] == 1300.0
    assert rates["ratio_median"] == pytest.approx(1100.0 / 110.0)
    missing = compare.row_summary(compare.Row("x", "s", None, [1.0]))
    assert missing["ratio_median"] is None and missing["ratio_best"] is None


def test_format_table_shows_both_sides_ratio_and_goal(compare: ModuleType) -> None:
    rows = [
        compare.Row("MSRA heatmap encode", "us", [400e-6], [16e-6], goal=20.0, scale=1e6),
        compare.Row("pipeline", "samples/s", [150.0, 100.0], [600.0, 1200.0], higher_is_better=True, goal=10.0),
        compare.Row("COCO eval", "s", None, [2.5]),
    ]
    lines = compare.format_table(rows).splitlines()
    assert lines[0] == "| workload | MMPose 1.3.2 | posecore | ratio | goal |"
    assert lines[2] == "| MSRA heatmap encode | 400 us | 16 us | 25.0x [best 25.0x] | >= 20x (met) |"
    assert lines[3] == "| pipeline | 125 samples/s | 900 samples/s | 7.2x [best 8.0x] | >= 10x (not met) |"
    assert lines[4] == "| COCO eval | - | 2.5 s | - |  |"


def test_missing_peer_python_exits_2_with_a_fix(tmp_path: Path) -> None:
    missing = tmp_path / "no-venv" / "bin" / "python"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--peer-python", str(missing), "--out", str(tmp_path / "out.json")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"--peer-python {missing} does not exist" in proc.stderr
    assert "shared/peer/README.md" in proc.stderr
    assert not (tmp_path / "out.json").exists()


def test_unknown_workload_is_a_usage_error(compare: ModuleType) -> None:
    with pytest.raises(SystemExit) as exc:
        compare.parse_args(["--peer-python", "python", "--workloads", "codecs,models"])
    assert exc.value.code == 2


def test_posecore_codecs_tiny(compare: ModuleType) -> None:
    inputs = compare.codec_inputs(n=4)
    assert inputs["keypoints"].shape == (4, 17, 2) and inputs["heatmaps"].shape == (4, 17, 64, 48)
    assert inputs["simcc_x"].shape == (4, 17, 384) and inputs["simcc_y"].shape == (4, 17, 512)
    times, decoded = compare.posecore_codecs(inputs, repeats=1)
    for name in ("msra", "simcc"):
        for op in ("encode", "decode"):
            for batch in ("batch", "b1"):
                (seconds,) = times[f"{name}_{op}_{batch}"]
                assert 0 < seconds < 1
        assert decoded[f"{name}_keypoints"].shape == (4, 17, 2)
    rows = compare.codec_rows({f"{n}_{op}": [1e-3] for n in ("msra", "simcc") for op in ("encode", "decode")}, times)
    assert len(rows) == 8 and [r.goal for r in rows[:4]] == [20.0, None, 5.0, None]


@pytest.mark.real_data
def test_posecore_cocoeval_ground_truth_scores_one(compare: ModuleType, shared_data: Path, tmp_path: Path) -> None:
    gt = shared_data / "mmpose_samples" / "coco" / "test_coco.json"
    anns = [a for a in json.loads(gt.read_text())["annotations"] if a["num_keypoints"] > 0]
    dets = []
    for a in anns:
        kps = list(a["keypoints"])
        kps[2::3] = [1.0 if v > 0 else 0.0 for v in kps[2::3]]
        dets.append({"image_id": a["image_id"], "category_id": 1, "keypoints": kps, "score": 1.0})
    dt = tmp_path / "dt.json"
    dt.write_text(json.dumps(dets))
    result = compare.posecore_cocoeval(gt, dt, repeats=1)
    assert result["predictions"] == len(anns)
    assert len(result["load_gt_s"]) == 1 and len(result["evaluate_s"]) == 1
    assert result["stats"]["AP"] == pytest.approx(1.0) and result["stats"]["AR"] == pytest.approx(1.0)


@pytest.mark.real_data
def test_posecore_pipeline_tiny(compare: ModuleType, shared_data: Path) -> None:
    if not (shared_data / "coco_mini").is_dir():
        pytest.skip(f"{shared_data / 'coco_mini'} is absent")
    result = compare.posecore_pipeline("coco_mini", repeats=1, batch=4, samples=8)
    assert result["instances"] == 8 and result["batch"] == 4
    for path in ("direct", "cached"):
        (rate,) = result[path]
        assert math.isfinite(rate) and rate > 0


@pytest.mark.slow
def test_against_mmpose_codecs(tmp_path: Path) -> None:
    peer = os.environ.get("POSECORE_MMPOSE_PYTHON")
    if not peer:
        pytest.skip("set POSECORE_MMPOSE_PYTHON to the python of an MMPose 1.3.2 venv (../shared/peer/README.md)")
    out = tmp_path / "compare.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--peer-python", peer, "--workloads", "codecs", "--repeats", "1"]
        + ["--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["mmpose_version"] == "1.3.2"
    assert len(report["rows"]) == 8 and all(r["ratio_median"] > 0 for r in report["rows"])
    assert report["codecs_agreement"]["msra_decode_keypoints_px"] < 1e-3
