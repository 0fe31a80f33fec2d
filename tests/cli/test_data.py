"""``posecore convert``, ``meta``, ``browse``: argument handling and user errors (the commands'
results are tested beside their library code: tests/datasets/converters, tests/visualization)."""

from __future__ import annotations

from pathlib import Path

import pytest

from posecore.cli import main
from posecore.cli.data import _kv


def test_paths_per_split() -> None:
    assert _kv(None) == {}
    assert _kv(["train=a/train.json", "val=a/val.json"]) == {"train": "a/train.json", "val": "a/val.json"}
    assert _kv(["all.json"]) == {"all": "all.json"}


def test_convert_of_a_missing_root_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["convert", "--format", "coco", "--root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith("error: ") for line in err) and not any("Traceback" in line for line in err)
    assert not (tmp_path / "out").exists()


def test_meta_of_an_unknown_schema_is_a_user_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["meta", "no_such_schema"]) == 2
    assert "no_such_schema" in capsys.readouterr().err


def test_browse_of_a_missing_dataset_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["browse", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "png")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
