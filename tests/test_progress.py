"""Progress through logging: lines off a terminal, a bar on one, silence with --quiet, and the
same lines from a real stage run with stderr going to a file."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from posecore import progress as progress_module
from posecore.progress import (
    LOGGER_NAMES,
    Progress,
    format_duration,
    interval_s,
    setup_logging,
    track,
    verbosity_level,
)

REPO = Path(__file__).resolve().parents[1]
LOGGER = "posecore.progress"


class Clock:
    """Stands in for ``time.monotonic`` so intervals are exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(progress_module, "time", fake)
    return fake


@pytest.fixture(autouse=True)
def _restore_loggers() -> Iterator[None]:
    """setup_logging changes process-wide loggers: put them back after each test."""
    saved = {name: (logging.getLogger(name).level, list(logging.getLogger(name).handlers)) for name in LOGGER_NAMES}
    yield
    for name, (level, handlers) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.handlers[:] = handlers


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def test_off_a_terminal_a_line_every_interval_with_counts_rate_eta_and_status(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    with Progress("train", total=100, unit="step", interval=30, terminal=False) as bar:
        bar.set_prefix("epoch 1/4")
        for _ in range(10):  # 10 steps in 20 s: no line yet
            clock.now += 2
            bar.update(1, loss=0.5)
        assert _lines(caplog) == []
        for _ in range(10):  # 30 s passed at the 15th step
            clock.now += 2
            bar.update(1, loss=0.25, lr=1e-3)
        lines = _lines(caplog)
        assert lines == ["train: epoch 1/4 | 15/100 step (15.0%) | 0.5 step/s | ETA 2m50s | loss=0.25 lr=0.001"]
        clock.now += 60
        bar.update(5)
        assert len(_lines(caplog)) == 2  # at most one line per update, however long it took
    done = _lines(caplog)[-1]
    assert done.startswith("train: epoch 1/4 | 25/100 step (25.0%)") and done.endswith("| done in 1m40s")


def test_unknown_total_shows_counts_and_rate_without_eta(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    with Progress("infer", unit="frame", interval=0, terminal=False, prefix="video") as bar:
        clock.now += 4
        bar.update(2)
    assert _lines(caplog)[0] == "infer: video | 2 frame | 0.5 frame/s"


def test_a_failed_step_logs_no_done_line(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    with pytest.raises(RuntimeError), Progress("encode", total=3, interval=30, terminal=False) as bar:
        bar.update(1)
        raise RuntimeError("boom")
    assert _lines(caplog) == []


def test_on_a_terminal_a_bar_and_no_periodic_lines(
    clock: Clock, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    with Progress("convert", total=4, unit="img", interval=0, terminal=True, prefix="write train") as bar:
        for _ in range(4):
            clock.now += 1
            bar.update(1, kept=3)
        assert _lines(caplog) == []
    err = capsys.readouterr().err
    assert err.startswith("\rconvert write train:") and "/4 [" in err  # tqdm redraws at most every 0.1 s
    assert [line.endswith("| done in 4s") for line in _lines(caplog)] == [True]


def test_quiet_silences_lines_and_bar(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(verbosity_level(quiet=True))
    caplog.set_level(logging.WARNING, logger=LOGGER)
    for terminal in (False, True):
        with Progress("train", total=2, interval=0, terminal=terminal) as bar:
            bar.update(2)
    assert _lines(caplog) == []
    assert capsys.readouterr().err == ""


def test_disabled_reports_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    with Progress("train", total=2, interval=0, terminal=False, enabled=False) as bar:
        bar.update(2)
    assert bar.n == 2 and _lines(caplog) == []


def test_track_counts_an_iterable(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    assert list(track(range(3), "check", unit="img", interval=0, terminal=False)) == [0, 1, 2]
    lines = _lines(caplog)
    assert [line.split(" | ")[0] for line in lines] == [
        "check: 1/3 img (33.3%)",
        "check: 2/3 img (66.7%)",
        "check: 3/3 img (100.0%)",
        "check: 3/3 img (100.0%)",
    ]
    assert "ETA" in lines[1] and "ETA" not in lines[2]  # nothing left to wait for


def test_setup_logging_is_idempotent_and_leaves_other_handlers_alone() -> None:
    other = logging.NullHandler()
    logging.getLogger("posecore").addHandler(other)
    stream = io.StringIO()
    setup_logging(logging.INFO, stream)
    setup_logging(logging.DEBUG, stream)
    for name in LOGGER_NAMES:
        logger = logging.getLogger(name)
        ours = [h for h in logger.handlers if getattr(h, "_posecore_handler", False)]
        assert len(ours) == 1 and logger.level == logging.DEBUG
    assert other in logging.getLogger("posecore").handlers
    logging.getLogger("stages.x").info("one line")
    assert re.fullmatch(r"\d\d:\d\d:\d\d INFO stages\.x: one line\n", stream.getvalue())


def test_the_handler_follows_sys_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    setup_logging()
    later = io.StringIO()
    monkeypatch.setattr(sys, "stderr", later)  # as pytest's capture or Prefect do after set-up
    logging.getLogger("posecore.x").warning("to the current stderr")
    assert later.getvalue().endswith("WARNING posecore.x: to the current stderr\n")


def test_log_lines_are_written_above_an_open_bar(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging()
    with Progress("train", total=2, terminal=True) as bar:
        bar.update(1)
        logging.getLogger("posecore.engine").info("epoch 1/2 done")
    assert "epoch 1/2 done\n" in capsys.readouterr().err


def test_verbosity_levels() -> None:
    assert verbosity_level() == logging.INFO
    assert verbosity_level(quiet=True) == logging.WARNING
    assert verbosity_level(verbose=True) == logging.DEBUG
    with pytest.raises(ValueError, match="exclude each other"):
        verbosity_level(True, True)


def test_interval_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSECORE_PROGRESS_S", raising=False)
    assert interval_s() == 30.0  # a 9-minute dvc repro shows a line at least every minute
    monkeypatch.setenv("POSECORE_PROGRESS_S", "2.5")
    assert interval_s() == 2.5
    for bad in ("soon", "nan"):
        monkeypatch.setenv("POSECORE_PROGRESS_S", bad)
        with pytest.raises(ValueError, match="POSECORE_PROGRESS_S"):
            interval_s()


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.4, "0s"), (59.6, "1m00s"), (75.2, "1m15s"), (3700, "1h01m"), (float("inf"), "?")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def _run_stage(stage: str, params: Path, log: Path, *flags: str) -> dict:
    env = {**os.environ, "POSECORE_PROGRESS_S": "0"}
    with log.open("w") as stderr:  # not a terminal: progress lines, no bar
        proc = subprocess.run(
            [sys.executable, "-m", f"stages.{stage}", "--params", str(params), *flags],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=REPO,
            env=env,
            check=False,
        )
    assert proc.returncode == 0, log.read_text()
    return json.loads(proc.stdout)  # stdout stays the stage's JSON summary


def test_a_stage_with_stderr_in_a_file_logs_progress_lines(tmp_path: Path) -> None:
    synthetic, converted = tmp_path / "synthetic", tmp_path / "converted"
    raw = {
        "synth": {"out": str(synthetic), "n_train": 3, "n_val": 2, "width": 64, "height": 64, "workers": 1},
        "data": {"source": "synthetic", "root": str(synthetic), "out": str(converted)},
    }
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    _run_stage("synth", params, tmp_path / "synth.log")
    report = _run_stage("convert", params, tmp_path / "convert.log")
    assert report["counts"]["train"]["images"] == 3
    lines = (tmp_path / "convert.log").read_text().splitlines()
    progress = [line for line in lines if " INFO posecore.progress: convert: " in line]
    assert any("check train | 1/3 img (33.3%) | " in line and "img/s | ETA" in line for line in progress), lines
    assert any("write val | 2/2 img (100.0%)" in line and "done in" in line for line in progress), lines
    assert not any("\r" in line for line in lines)  # no bar drawn into the file

    quiet = _run_stage("convert", params, tmp_path / "quiet.log", "--quiet")
    assert quiet == report
    assert (tmp_path / "quiet.log").read_text() == ""
