"""``posecore infer``: user errors (runs on real bundles are in tests/inference/test_infer_command.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from posecore.cli import main


def test_a_missing_model_folder_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "a.jpg"
    image.write_bytes(b"")
    assert main(["infer", "--model", str(tmp_path / "no_model"), "--input", str(image), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no_model" in err


def test_det_and_detector_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["infer", "--model", "m", "--input", "i", "--out", "o", "--det", "d.json", "--detector", "d.onnx"])
    assert exc.value.code == 2
