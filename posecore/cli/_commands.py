"""The table of ``posecore`` sub-commands and the decorator that fills it.

To add a sub-command, write it in the module of its group (``data``, ``stack``, ``infer``,
``models``, ``registry``; a new group is a new module imported in ``posecore/cli/__init__.py``)::

    @command("name", help="one line")
    def _name(p: argparse.ArgumentParser) -> Runner:
        p.add_argument(...)
        return lambda args: run(args)   # returns the exit status

Setting up a parser must stay cheap: import heavy modules (torch, mlflow, boto3) inside the
runner, so that ``posecore --help`` and the commands that do not need them start fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from posecore._registry import Registry

Runner = Callable[[argparse.Namespace], int]
"""Runs a parsed command line and returns the exit status."""
Setup = Callable[[argparse.ArgumentParser], Runner]
"""Adds a command's arguments to its parser and returns its runner."""

COMMANDS: Registry[Runner] = Registry("command")
"""The sub-commands by name; ``COMMANDS.info(name)["help"]`` is the one-line help."""


def command(name: str, help: str) -> Callable[[Setup], Setup]:
    """Register ``setup`` as the sub-command ``name`` with its one-line ``help``."""
    if not help:
        raise ValueError(f"command {name!r} needs a one-line help")
    return COMMANDS.register(name, help=help)


def add_verbosity(parser: argparse.ArgumentParser, defaults: bool = False) -> None:
    """Add ``-q/--quiet`` and ``-v/--verbose``; only the top parser (``defaults=True``) sets their
    defaults, so a sub-command's flag is not overwritten by the top parser's default."""
    group = parser.add_mutually_exclusive_group()
    default = False if defaults else argparse.SUPPRESS
    group.add_argument("-q", "--quiet", action="store_true", default=default, help="warnings and errors only")
    group.add_argument("-v", "--verbose", action="store_true", default=default, help="debug messages too")
