"""The shared shell of every stage's ``main``: read params.yaml once, set up logging, run, map user errors to exit 2."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from posecore.config import Params, load_params
from posecore.errors import USER_ERRORS, report_user_error
from posecore.progress import setup_logging, verbosity_level


def stage_parser(description: str) -> argparse.ArgumentParser:
    """The arguments every stage takes: ``--params`` and ``-q/--quiet`` / ``-v/--verbose``.

    A stage with options of its own adds them to this parser and passes it to :func:`stage_main`.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only (no progress lines)")
    group.add_argument("-v", "--verbose", action="store_true", help="debug messages too")
    return parser


def stage_main(
    description: str,
    body: Callable[[Params], object],
    argv: Sequence[str] | None = None,
    parser: argparse.ArgumentParser | None = None,
) -> int:
    """Parse ``argv`` (with ``parser``, default :func:`stage_parser`), set up logging on stderr,
    load the params through the typed loader and call ``body``.

    Progress and log lines go to stderr, so a stage's stdout stays its result (a JSON summary).
    Errors the user must fix (:data:`posecore.errors.USER_ERRORS`: invalid params, invalid data,
    missing files, a tracking server that is down) are printed without a traceback and give exit
    status 2; anything else is a bug and propagates.
    """
    args = (parser or stage_parser(description)).parse_args(argv)
    setup_logging(verbosity_level(args.quiet, args.verbose))
    try:
        body(load_params(args.params))
    except USER_ERRORS as exc:
        return report_user_error(exc)
    return 0
