"""The ``posecore`` command: one sub-command per step a person runs by hand.

The sub-commands live by group: :mod:`posecore.cli.data` (``convert``, ``meta``, ``browse``),
:mod:`posecore.cli.stack` (``stack``, ``remote``), :mod:`posecore.cli.infer` (``infer``),
:mod:`posecore.cli.models` (``presets``) and :mod:`posecore.cli.registry` (``registry``, ``pull``);
:mod:`posecore.cli._commands` says how to add one. ``-q/--quiet`` and ``-v/--verbose`` (before or
after the sub-command) set the log level.

Errors that are the user's to fix (bad data, bad params, a service that is down:
:data:`posecore.errors.USER_ERRORS`) print their message and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from posecore.cli import data, infer, models, registry, stack  # noqa: F401  (they register their commands)
from posecore.cli._commands import COMMANDS, Runner, add_verbosity
from posecore.errors import USER_ERRORS, report_user_error
from posecore.progress import setup_logging, verbosity_level

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The parser of every sub-command; each parsed namespace carries its runner in ``_runners``."""
    parser = argparse.ArgumentParser(prog="posecore", description="Pose-estimation toolkit and pipeline.")
    add_verbosity(parser, defaults=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    runners: dict[str, Runner] = {}
    for name in COMMANDS.names():
        help_text = COMMANDS.info(name)["help"]
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_verbosity(p)
        runners[name] = COMMANDS.get(name)(p)
    parser.set_defaults(_runners=runners)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``posecore ARGS`` and return its exit status (the console script's entry point)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        setup_logging(verbosity_level(args.quiet, args.verbose))
        return args._runners[args.command](args)
    except USER_ERRORS as exc:
        return report_user_error(exc)


if __name__ == "__main__":
    sys.exit(main())
