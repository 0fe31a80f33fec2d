"""Stage ``synth``: the embedded synthetic COCO-17 person-keypoint dataset -> ``synth.out``."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from posecore.config import Params
from posecore.datasets.synthetic import SynthParams, generate
from stages._cli import stage_main


def run(synth: SynthParams) -> dict[str, dict[str, int]]:
    """Generate the dataset into ``synth.out`` (replaced atomically); counts per split."""
    return generate(synth, Path(synth.out))


def _body(params: Params) -> None:
    counts = run(params.synth)
    print(json.dumps({"out": params.synth.out, "counts": counts}, indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(__doc__ or "", _body, argv)


if __name__ == "__main__":
    sys.exit(main())
