"""Stage ``evaluate3d``: the trained lifter, and the per-frame baseline beside it, scored on the held-out sequences.

Both lifters (``lift.train.checkpoint_dir`` and ``lift.baseline_dir``) lift every frame of the
``val`` sequences of ``lift.data`` (whole sequences, edge-padded; with ``lift.flip_test`` averaged
with the mirrored input) and are scored by MPJPE, P-MPJPE, N-MPJPE (mm), PCK3D and AUC3D
(:mod:`posecore.evaluation.pose3d`). ``lift.out`` gets:

- ``metrics.json``: the lifter's numbers, the baseline's as ``baseline/<metric>``, the frame and
  sequence counts and the fingerprint of the evaluation data (a DVC metric; the registry compares
  only models scored on the same data);
- ``per_joint.csv`` and ``per_action.csv``: each metric per joint and per action, both lifters.

The numbers go into the lifter's MLflow run as ``eval/<metric>`` (and ``eval/baseline/<metric>``).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from posecore.config import Params
from posecore.data.lifting import encode_sequences
from posecore.datasets.pose3d.format import PoseSequence, load_sequences
from posecore.engine.lifting import load_trained_lifter
from posecore.evaluation.lifting import evaluate_sequences
from posecore.evaluation.pose3d import Pose3DReport
from posecore.experiment import open_run_if_recorded
from posecore.export.trained import RUN_ID_FILE
from posecore.io import atomic_write_json, atomic_write_text
from posecore.registry.fingerprint import file_fingerprint
from stages._cli import stage_main

METRICS = "metrics.json"
BASELINE = "baseline"


def _rows(table: dict[str, dict[str, float]], key: str, lifter: str) -> list[dict[str, Any]]:
    return [{"lifter": lifter, key: name, **values} for name, values in table.items()]


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def eval_data_fingerprint(data_dir: Path) -> str:
    """md5 of the val split's arrays (what the numbers were measured on)."""
    return file_fingerprint(data_dir / "val" / "arrays.npz")


def score(
    train_dir: Path, val: Sequence[PoseSequence], flip_test: bool, device: torch.device
) -> tuple[Pose3DReport, dict[str, Any]]:
    """One trained lifter on the ``val`` sequences: its report and its description (``model.json``)."""
    lifter, described = load_trained_lifter(train_dir)
    lifter.to(device)
    data = encode_sequences(lifter.codec, val)
    flips = described["flip_indices"] if flip_test else None
    report, _ = evaluate_sequences(lifter, data, described["keypoints"], flips)
    return report, described


def run(params: Params, device: str | None = None) -> dict[str, Any]:
    """Score both lifters; write ``lift.out`` (module docstring) and return the metrics."""
    lift = params.lift
    out, data_dir = Path(lift.out), Path(lift.data)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    train_dir = Path(lift.train.checkpoint_dir)
    tracker = open_run_if_recorded(train_dir / RUN_ID_FILE, "evaluation results are not logged to MLflow")
    val = load_sequences(data_dir / "val")
    report, described = score(train_dir, val, lift.flip_test, dev)
    base, base_described = score(Path(lift.baseline_dir), val, lift.flip_test, dev)
    metrics: dict[str, Any] = {
        **report.metrics,
        **{f"{BASELINE}/{k}": v for k, v in base.metrics.items()},
        "lifter": described["lifter"]["name"],
        "receptive_field": described["lifter"].get("receptive_field", 1),
        f"{BASELINE}/lifter": base_described["lifter"]["name"],
        "frames": float(sum(len(s) for s in val)),
        "sequences": float(len(val)),
        "eval_data": eval_data_fingerprint(data_dir),
    }
    lifters = ((described["lifter"]["name"], report), (f"{BASELINE}:{base_described['lifter']['name']}", base))
    files = [
        atomic_write_json(out / METRICS, metrics, indent=2),
        atomic_write_text(
            out / "per_joint.csv", _csv([r for n, rep in lifters for r in _rows(rep.per_keypoint, "joint", n)])
        ),
        atomic_write_text(
            out / "per_action.csv", _csv([r for n, rep in lifters for r in _rows(rep.per_action, "action", n)])
        ),
    ]
    if tracker is not None:
        with tracker as run_:
            numbers = {f"eval/{k}": float(v) for k, v in metrics.items() if isinstance(v, float | int)}
            run_.log_metrics(numbers, step=0)
            for path in files:
                run_.log_artifact(path, "eval")
    return metrics


def _body(params: Params) -> None:
    print(json.dumps(run(params), indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(__doc__ or "", _body, argv)


if __name__ == "__main__":
    sys.exit(main())
