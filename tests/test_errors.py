"""One list of the errors that are the user's to fix, and how they are reported."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from posecore.errors import USER_ERRORS, UserError, report_user_error

REPO = Path(__file__).resolve().parents[1]


def _library_user_errors() -> list[type[BaseException]]:
    from posecore import registry, stack
    from posecore.config import ConfigError
    from posecore.experiment.store import TrackingUnavailable
    from posecore.export.bundle import BundleError
    from posecore.storage import StorageError
    from posecore.validation import DataValidationError

    return [
        ConfigError,
        DataValidationError,
        BundleError,
        StorageError,
        stack.StackError,
        registry.RegistryError,
        TrackingUnavailable,
    ]


def test_every_library_user_error_is_caught_by_the_one_list() -> None:
    for error in _library_user_errors():
        assert issubclass(error, USER_ERRORS), error
    for error in (ValueError, FileNotFoundError):
        assert issubclass(error, USER_ERRORS)


def test_runtime_errors_of_the_library_are_user_errors_and_keep_their_base() -> None:
    """``except RuntimeError`` in callers still catches them: UserError is an extra base, not a new one."""
    for error in _library_user_errors():
        assert issubclass(error, UserError | ValueError)
        assert issubclass(error, RuntimeError | ValueError)


def test_bugs_are_not_user_errors() -> None:
    for error in (KeyError, TypeError, AttributeError, RuntimeError, FloatingPointError, PermissionError):
        assert not issubclass(error, USER_ERRORS), error


def test_report_prints_the_message_and_returns_the_exit_code() -> None:
    class Refused(UserError):
        exit_code = 3

    out = io.StringIO()
    assert report_user_error(Refused("the server said no"), out) == 3
    assert out.getvalue() == "error: the server said no\n"
    assert report_user_error(ValueError("bad"), out) == 2


def test_report_writes_to_stderr_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert report_user_error(FileNotFoundError("params.yaml")) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "error: params.yaml\n"


def test_errors_is_a_bottom_module() -> None:
    """Library modules import it; it must import nothing from posecore (nor anything heavy)."""
    code = "import sys, posecore.errors; print(sorted(m for m in sys.modules if m.startswith('posecore.')))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert proc.stdout.strip() == "['posecore.errors']"


def test_a_stage_reports_a_user_error_without_a_traceback(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  no_such_key: 1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "stages.convert", "--params", str(params)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "no_such_key" in proc.stderr
    assert "Traceback" not in proc.stderr
