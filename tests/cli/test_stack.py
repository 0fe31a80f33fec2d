"""``posecore stack`` and ``remote``: their errors are reported, not raised (the services
themselves are tested in tests/stack and tests/test_storage.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from posecore.cli import main


def test_a_stack_error_exits_with_its_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from posecore import stack

    def status(config: stack.StackConfig) -> None:
        raise stack.StackError("the state folder is locked; run `posecore stack down`")

    monkeypatch.setattr(stack, "status", status)
    assert main(["stack", "status", "--state-dir", str(tmp_path)]) == stack.StackError.exit_code
    assert capsys.readouterr().err == "error: the state folder is locked; run `posecore stack down`\n"


def test_remote_with_an_endpoint_that_does_not_answer_is_a_user_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from posecore.storage import StorageError

    def s3_client(*args: object, **kwargs: object) -> None:
        raise StorageError("nothing listens at http://127.0.0.1:1; is the stack up? run `posecore stack up`")

    monkeypatch.setattr("posecore.storage.s3_client", s3_client)
    params = tmp_path / "params.yaml"
    params.write_text("{}\n")
    assert main(["remote", "--params", str(params), "--endpoint", "http://127.0.0.1:1", "--repo", str(tmp_path)]) == 2
    assert "posecore stack up" in capsys.readouterr().err
    assert not (tmp_path / ".dvc").exists()


def test_stack_actions_take_the_state_folder_and_the_log_flags(capsys: pytest.CaptureFixture[str]) -> None:
    for action in ("up", "down", "status", "env"):
        with pytest.raises(SystemExit):
            main(["stack", action, "--help"])
        out = capsys.readouterr().out
        assert "--state-dir" in out and "--quiet" in out
