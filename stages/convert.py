"""Stage ``convert``: the configured source dataset -> the canonical COCO keypoint dataset (``data.out``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from posecore.config import Params
from posecore.datasets.converters import ConvertReport, convert
from posecore.datasets.converters.config import DataParams


def run(data: DataParams) -> ConvertReport:
    """Validate and convert ``data.source`` at ``data.root`` into ``data.out`` (replaced atomically)."""
    return convert(data, Path(data.out))


def _body(params: Params) -> None:
    report = run(params.data)
    print(json.dumps(report.to_dict(), indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    from stages._cli import stage_main

    return stage_main(__doc__ or "", _body, argv)


if __name__ == "__main__":
    sys.exit(main())
