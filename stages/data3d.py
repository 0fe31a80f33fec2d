"""Stage ``data3d``: the 3D lifting data -> ``lift.data`` (``train/`` and ``val/`` sequence folders).

``lift.source: synthetic`` generates the embedded synthetic motion (``lift.synth``; no download);
``h36m`` converts MMPose's Human3.6M annotation files (``lift.annotations``: ``{train: FILE.npz,
val: FILE.npz}`` and ``lift.cameras``, relative to ``lift.root``). Either way both splits are
written together or not at all, with ``report.json`` (sequences and frames per split).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from posecore.config import Params
from posecore.datasets.pose3d.h36m import convert_h36m
from posecore.datasets.synthetic.motion3d import SPLITS, write_splits
from posecore.engine.lifting import LiftParams
from posecore.io import atomic_output_dir, atomic_write_json
from stages._cli import stage_main

REPORT = "report.json"


def run(lift: LiftParams) -> dict[str, Any]:
    """Write ``lift.data`` (replaced atomically); returns the report."""
    out = Path(lift.data)
    if lift.source == "synthetic":
        with atomic_output_dir(out) as tmp:
            counts = write_splits(lift.synth, tmp)
            report = {"source": "synthetic", "splits": counts}
            atomic_write_json(tmp / REPORT, report, indent=2)
        return report
    missing = [s for s in SPLITS if s not in lift.annotations]
    if missing or set(lift.annotations) - set(SPLITS):
        raise ValueError(
            f"lift.annotations must name exactly the splits {list(SPLITS)} (an .npz each, under lift.root); "
            f"got {sorted(lift.annotations)}"
        )
    root = Path(lift.root)
    with atomic_output_dir(out) as tmp:
        splits = {
            split: convert_h36m(root / lift.annotations[split], root / lift.cameras, tmp / split) for split in SPLITS
        }
        for info in splits.values():
            info["out_dir"] = str(out / Path(info["out_dir"]).name)
        report = {"source": "h36m", "splits": splits}
        atomic_write_json(tmp / REPORT, report, indent=2)
    return report


def _body(params: Params) -> None:
    print(json.dumps(run(params.lift), indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(__doc__ or "", _body, argv)


if __name__ == "__main__":
    sys.exit(main())
