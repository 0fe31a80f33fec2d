"""``posecore``: the parser of every sub-command, global flags, and user errors as exit 2."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from posecore.cli import build_parser, main
from posecore.cli._commands import COMMANDS


def test_top_level_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--quiet" in out and "--verbose" in out
    for name in COMMANDS:
        assert name in out


def test_every_command_group_registers_its_commands() -> None:
    expected = {"convert", "meta", "browse", "stack", "remote", "infer", "presets", "registry", "pull"}
    assert set(COMMANDS.names()) == expected


@pytest.mark.parametrize("name", sorted(COMMANDS.names()))
def test_every_subcommand_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: posecore {name}")
    assert COMMANDS.info(name)["help"] in " ".join(out.split())
    assert "--quiet" in out


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).with_name("posecore")
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "usage: posecore" in proc.stdout


def test_python_m_runs_the_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "posecore.cli", "meta", "coco"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("coco: 17 keypoints")


def test_unknown_subcommand_fails(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def test_parsing_builds_no_heavy_module() -> None:
    code = "import sys; from posecore.cli import build_parser; build_parser(); print(sorted({'torch', 'mlflow', 'boto3', 'prefect'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("argv", "level"),
    [
        (["meta"], logging.INFO),
        (["-q", "meta"], logging.WARNING),
        (["meta", "--quiet"], logging.WARNING),
        (["--verbose", "meta"], logging.DEBUG),
        (["meta", "-v"], logging.DEBUG),
    ],
)
def test_quiet_and_verbose_before_or_after_the_command_set_the_log_level(argv: list[str], level: int) -> None:
    assert main(argv) == 0
    assert logging.getLogger("posecore").level == level


def test_quiet_and_verbose_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["meta", "-q", "-v"])
    assert exc.value.code == 2
    assert main(["-q", "meta", "-v"]) == 2  # one flag on each side: reported, not a traceback
    assert "exclude each other" in capsys.readouterr().err


def test_nested_actions_take_the_flags_too() -> None:
    args = build_parser().parse_args(["stack", "status", "--quiet"])
    assert args.quiet and not args.verbose


@pytest.fixture
def failing_command(monkeypatch: pytest.MonkeyPatch) -> Callable[[BaseException], list[str]]:
    """``posecore meta coco`` with the meta loader raising the given exception."""

    def with_error(exc: BaseException) -> list[str]:
        def load_meta(name: str) -> None:
            raise exc

        monkeypatch.setattr("posecore.metainfo.load_meta", load_meta)
        return ["meta", "coco"]

    return with_error


@pytest.mark.parametrize("exc", [ValueError("bad value"), FileNotFoundError("no such file")])
def test_user_errors_print_a_message_and_exit_2(
    failing_command: Callable[[BaseException], list[str]], exc: BaseException, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(failing_command(exc)) == 2
    err = capsys.readouterr().err
    assert err == f"error: {exc}\n"


def test_library_user_errors_keep_their_exit_code(
    failing_command: Callable[[BaseException], list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    from posecore.storage import StorageError

    argv = failing_command(StorageError("is the stack up? run `posecore stack up`", "unreachable"))
    assert main(argv) == StorageError.exit_code == 2
    assert "posecore stack up" in capsys.readouterr().err


def test_bugs_keep_their_traceback(failing_command: Callable[[BaseException], list[str]]) -> None:
    with pytest.raises(KeyError):
        main(failing_command(KeyError("a bug")))
