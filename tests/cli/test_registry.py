"""``posecore registry`` and ``pull``: what the user sees when the store or the model is wrong
(runs against a real MLflow store are in tests/test_registry_promotion.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from posecore.cli import main


@pytest.fixture
def open_client_raises(monkeypatch: pytest.MonkeyPatch):
    def with_error(exc: BaseException) -> None:
        def open_client(uri: str | None = None) -> None:
            raise exc

        monkeypatch.setattr("posecore.registry.open_client", open_client)

    return with_error


@pytest.mark.parametrize("argv", [["registry", "list"], ["pull", "posecore-pose@champion", "--out", "bundle"]])
def test_a_registry_error_is_reported(open_client_raises, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from posecore.registry import RegistryError

    open_client_raises(RegistryError("no model store at sqlite:///x.db"))
    assert main(argv) == 2
    assert capsys.readouterr().err == "error: no model store at sqlite:///x.db\n"


@pytest.mark.parametrize("argv", [["registry", "show", "m"], ["pull", "m/3", "--out", "bundle"]])
def test_an_mlflow_error_is_reported(open_client_raises, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow.exceptions import MlflowException

    open_client_raises(MlflowException("RESOURCE_DOES_NOT_EXIST: Registered Model with name=m not found"))
    assert main(argv) == 2
    assert "Registered Model with name=m not found" in capsys.readouterr().err


def test_a_missing_store_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["registry", "show", "nobody", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]) == 2
    assert capsys.readouterr().err.startswith(f"error: no MLflow store at {tmp_path / 'mlflow.db'}")
    assert not (tmp_path / "mlflow.db").exists()
