"""The shared shell of every stage's ``main``: read params.yaml once, run, map user errors to exit 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from posecore.config import ConfigError, Params, load_params
from posecore.datasets.validation import DataValidationError
from posecore.tracking import TrackingUnavailable


def stage_main(description: str, body: Callable[[Params], object], argv: Sequence[str] | None = None) -> int:
    """Parse ``--params``, load it through the typed loader and call ``body``.

    Errors the user must fix (invalid params, invalid data, missing files) are printed
    without a traceback and give exit status 2; anything else is a bug and propagates.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    args = parser.parse_args(argv)
    try:
        body(load_params(args.params))
    except (ConfigError, DataValidationError, FileNotFoundError, ValueError, TrackingUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
