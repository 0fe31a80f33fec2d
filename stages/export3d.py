"""Stage ``export3d``: the trained lifter -> ``lift.bundle`` (ONNX + bundle.json), checked against PyTorch.

:func:`posecore.export.lift_export.export_lifter` on ``lift.train.checkpoint_dir``'s ``best.pt``:
ONNX with dynamic batch and frame axes, bundle.json (the codec, receptive field, joints, flip
test), and a parity check of ONNX Runtime against PyTorch on held-out sequences of ``lift.data``
(within ``lift.parity_atol_mm``, else nothing is written). The bundle's provenance records the
MLflow run, the git commit and the evaluate3d metrics; ``lift.export_metrics`` gets the export
report (a DVC metric).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from posecore.config import Params
from posecore.datasets.pose3d.format import load_sequences
from posecore.experiment import read_run_id_file
from posecore.experiment.lineage import git_commit
from posecore.export.lift_export import export_lifter
from posecore.export.trained import RUN_ID_FILE
from posecore.io import atomic_write_json
from stages._cli import stage_main
from stages.evaluate3d import METRICS

REPO = Path(__file__).resolve().parents[1]


def run(params: Params) -> dict[str, Any]:
    lift = params.lift
    train_dir = Path(lift.train.checkpoint_dir)
    metrics = json.loads((Path(lift.out) / METRICS).read_text())
    run_file = train_dir / RUN_ID_FILE
    provenance = {
        "mlflow_run_id": read_run_id_file(run_file)["run_id"] if run_file.is_file() else None,
        **git_commit(REPO),
        "metrics": metrics,
        "eval_data": metrics.get("eval_data"),
    }
    report = export_lifter(
        train_dir,
        lift.bundle,
        load_sequences(Path(lift.data) / "val"),
        flip_test=lift.flip_test,
        opset=params.export.opset,
        dynamo=params.export.dynamo,
        atol_mm=lift.parity_atol_mm,
        provenance=provenance,
    )
    atomic_write_json(lift.export_metrics, report, indent=2)
    return report


def _body(params: Params) -> None:
    print(json.dumps(run(params), indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(__doc__ or "", _body, argv)


if __name__ == "__main__":
    sys.exit(main())
