"""posecore.io: atomic writes leave either the old file or the complete new one, with normal modes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from posecore.io import atomic_output_dir, atomic_write_json, atomic_write_text


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_file_has_the_mode_open_would_give(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        out = atomic_write_json(tmp_path / "a.json", {"x": 1})
        with atomic_output_dir(tmp_path / "folder") as tmp:
            (tmp / "f").write_text("y")
    finally:
        os.umask(old)
    assert out.read_text() == '{"x": 1}'
    assert _mode(out) == 0o644
    assert _mode(tmp_path / "folder") == 0o755


def test_failed_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = atomic_write_text(tmp_path / "m.json", "old")
    with pytest.raises(ValueError):
        atomic_write_json(target, {"bad": float("nan")})
    assert target.read_text() == "old"
    with pytest.raises(RuntimeError), atomic_output_dir(tmp_path / "d") as tmp:
        (tmp / "partial").write_text("z")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]
