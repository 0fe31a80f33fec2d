"""The sub-command table and its decorator."""

from __future__ import annotations

import argparse

import pytest

from posecore.cli._commands import COMMANDS, add_verbosity, command


def test_help_is_required() -> None:
    with pytest.raises(ValueError, match="needs a one-line help"):
        command("nameless", help="")


def test_a_name_is_registered_once() -> None:
    setup = COMMANDS.get("meta")
    assert command("meta", help=COMMANDS.info("meta")["help"])(setup) is setup  # a reloaded module
    with pytest.raises(ValueError, match="already taken"):
        command("meta", help="another")(lambda p: lambda args: 0)


def test_subparser_flags_do_not_reset_the_top_parsers() -> None:
    top = argparse.ArgumentParser()
    add_verbosity(top, defaults=True)
    sub = top.add_subparsers(dest="cmd")
    add_verbosity(sub.add_parser("x"))
    assert vars(top.parse_args(["-q", "x"])) == {"quiet": True, "verbose": False, "cmd": "x"}
    assert vars(top.parse_args(["x", "-v"])) == {"quiet": False, "verbose": True, "cmd": "x"}
