from __future__ import annotations

import subprocess
import sys

import pytest

from posecore.cli import _COMMANDS, main


def test_top_level_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in _COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", sorted(_COMMANDS))
def test_every_subcommand_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: posecore {name}")
    assert _COMMANDS[name][0] in out


def test_console_script_is_installed() -> None:
    exe = __import__("pathlib").Path(sys.executable).with_name("posecore")
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "usage: posecore" in proc.stdout


def test_unknown_subcommand_fails(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
