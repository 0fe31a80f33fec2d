"""Stage ``synth``: params.yaml in, a synthetic COCO dataset at ``synth.out``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from stages.synth import main


def _params(tmp_path: Path, **synth: object) -> Path:
    out = str(tmp_path / "synthetic")
    raw = {
        "synth": {"out": out, "n_train": 3, "n_val": 2, "width": 64, "height": 64, "workers": 1, **synth},
        "data": {"root": out},
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_main_writes_the_dataset_where_params_say(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--params", str(_params(tmp_path))]) == 0
    out = tmp_path / "synthetic"
    report = json.loads(capsys.readouterr().out)
    assert report["out"] == str(out)
    for split, n in (("train", 3), ("val", 2)):
        coco = json.loads((out / "annotations" / f"{split}.json").read_text())
        assert len(coco["images"]) == n == report["counts"][split]["images"]
        assert all((out / "images" / split / img["file_name"]).is_file() for img in coco["images"])


def test_main_rejects_bad_params_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--params", str(_params(tmp_path, min_people=3, max_people=2))]) == 2
    assert "synth.min_people" in capsys.readouterr().err
    assert not (tmp_path / "synthetic").exists()
