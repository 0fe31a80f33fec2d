"""Stage ``encode``: the canonical dataset -> the target-encoding cache (``encode.out``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from posecore.config import Params
from posecore.data.build import build_cache


def run(params: Params) -> dict[str, Any]:
    """Crop every person of ``data.out`` once into ``encode.out`` (train crops; val inputs + targets)."""
    return build_cache(Path(params.data.out), Path(params.encode.out), params.encode, params.model.build_codec())


def _body(params: Params) -> None:
    report = run(params)
    print(json.dumps({"counts": report["counts"], "codec": report["codec"]}, indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    from stages._cli import stage_main

    return stage_main(__doc__ or "", _body, argv)


if __name__ == "__main__":
    sys.exit(main())
