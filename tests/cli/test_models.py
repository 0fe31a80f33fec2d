"""``posecore presets``: every preset file listed with its kind and a built parameter count; broken ones shown."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from posecore.cli import main
from posecore.cli.models import KINDS, format_table
from posecore.codecs import codec_class
from posecore.models import estimator

PRESET_FILES = sorted(estimator.PRESET_DIR.glob("*.yaml"), key=lambda f: f.stem)


@pytest.fixture(scope="module")
def listed() -> tuple[int, list[dict[str, Any]]]:
    """``posecore presets --json``, run once: building every preset takes a few seconds."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["presets", "--json"])
    return code, json.loads(out.getvalue())


def test_every_preset_file_is_listed_with_its_codecs_kind_and_parameters(
    listed: tuple[int, list[dict[str, Any]]],
) -> None:
    code, rows = listed
    by_name = {r["preset"]: r for r in rows}
    assert sorted(by_name) == [f.stem for f in PRESET_FILES]
    for file in PRESET_FILES:
        raw = yaml.safe_load(file.read_text())
        row = by_name[file.stem]
        assert row["error"] is None, f"{file.name}: {row['error']}"
        task = codec_class(raw["codec"]["name"]).task
        assert (row["task"], row["kind"]) == (task, KINDS[task]), file.name
        assert row["params"] > 0 and isinstance(row["params"], int)
        assert row["input_size"] == list(raw["input_size"])
        assert (row["codec"], row["backbone"], row["head"]) == (
            raw["codec"]["name"],
            raw["backbone"]["name"],
            raw["head"]["name"],
        )
        assert row["neck"] == (raw.get("neck") or {}).get("name")
        assert (row["family"], row["meta"]) == (raw.get("family", "body"), raw.get("meta", "coco")), file.name
        assert row["recipe"] == (raw.get("recipe") or {}), file.name
    assert code == 0


def test_every_keypoint_family_has_an_rtmpose_preset_and_a_cpu_one(listed: tuple[int, list[dict[str, Any]]]) -> None:
    """MMPose's RTMPose-m recipe per family (input size, SimCC sigmas) and a CPU-sized variant, each built
    for its family's skeleton (e.g. 21 hand keypoints: the hand presets have fewer head parameters)."""
    _, rows = listed
    by_family: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_family.setdefault(row["family"], []).append(row)
    for family in ("hand", "face", "wholebody", "animal"):
        names = {r["preset"] for r in by_family[family]}
        assert {f"rtmpose-m-{family}", f"lite0-{family}"} <= names, family
    sizes = {r["preset"]: r["input_size"] for r in rows}
    assert sizes["rtmpose-m-hand"] == sizes["rtmpose-m-face"] == sizes["rtmpose-m-animal"] == [256, 256]
    assert sizes["rtmpose-m-wholebody"] == [192, 256]
    params = {r["preset"]: r["params"] for r in rows}
    assert params["rtmpose-m-face"] > params["rtmpose-m-hand"], "98 landmarks need more SimCC rows than 21"


def test_both_kinds_read_as_words() -> None:
    assert KINDS == {"topdown": "top-down", "onestage": "one-stage"}


def test_a_broken_preset_keeps_its_row_with_the_error_and_fails_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    small = "synthetic-lite0-heatmap"
    text = (estimator.PRESET_DIR / f"{small}.yaml").read_text()
    (tmp_path / f"{small}.yaml").write_text(text)
    broken = {**yaml.safe_load(text), "input_size": [64, 48], "backbone": {"name": "no_such_backbone"}}
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(broken))
    monkeypatch.setattr(estimator, "PRESET_DIR", tmp_path)
    assert main(["presets"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        *("preset", "kind", "family", "input", "params", "codec", "backbone", "neck", "head", "recipe")
    ]
    assert lines[1].split()[:5] == ["broken", "top-down", "body", "64x48", "-"]
    assert lines[2].startswith("  error: ") and "no_such_backbone" in lines[2]
    assert (
        lines[3].split()[:4] == [small, "top-down", "body", "96x128"] and int(lines[3].split()[4].replace(",", "")) > 0
    )


def test_the_table_aligns_columns_and_right_aligns_parameters() -> None:
    rows = [
        {"preset": "a", "kind": "top-down", "input_size": [192, 256], "params": 1234567, "codec": "simcc"},
        {"preset": "longer-name", "kind": "one-stage", "input_size": [640, 640], "params": 12, "codec": "yoloxpose"},
    ]
    rows = [
        {"family": "body", "backbone": "b", "neck": None, "head": "h", "error": None, "recipe": {}, **r} for r in rows
    ]
    header, first, second = format_table(rows).splitlines()
    assert header.index("kind") == first.index("top-down") == second.index("one-stage") == len("longer-name  ")
    params_end = header.index("params") + len("params")
    assert first.index("1,234,567") + len("1,234,567") == params_end
    assert second.index("12  ") + len("12") == params_end
    assert "-" in second.split() and "error" not in format_table(rows)
