"""Progress of long steps through :mod:`logging`: a bar on a terminal, a line every few seconds elsewhere.

Every long loop (convert, encode, train, evaluate, export, infer) reports through one
:class:`Progress`. On a terminal it draws a tqdm bar on stderr; when stderr is not a terminal
(a log file, CI, a Prefect worker, ``dvc repro > log``) it logs one INFO line on the
``posecore.progress`` logger every ``interval_s`` seconds (``$POSECORE_PROGRESS_S``, default 30)
and, in both modes, one when the step ends::

    12:01:07 INFO posecore.progress: train: epoch 3/21 | 240/2394 step (10.0%) | 4.21 step/s | ETA 8m32s | loss=0.00127 lr=0.004

Because the lines go through :mod:`logging`, the same lines reach Prefect's run logs (the flows
add the ``posecore`` logger to Prefect's extra loggers) and disappear with ``--quiet``.
:func:`setup_logging` is what every command-line entry point calls (``--quiet``/``--verbose``);
nothing is reported while the ``posecore.progress`` logger is below INFO (a library caller that
never configured logging gets no bar and no lines). While a bar is drawn, the log lines of
:func:`setup_logging`'s handler are written above it instead of through it.

How to report a new loop::

    with Progress("encode", total=len(images), unit="img") as bar:
        for image in images:
            ...
            bar.update(1, shard=i)
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")

LOGGER_NAMES = ("posecore", "stages", "flows")
"""The loggers :func:`setup_logging` configures: the library's and the pipeline's."""

_log = logging.getLogger("posecore.progress")
_DEFAULT_INTERVAL_S = 30.0
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_DATE_FORMAT = "%H:%M:%S"
_HANDLER_MARK = "_posecore_handler"
_open_bars = 0  # tqdm bars drawn now: log lines must go through tqdm.write to keep them intact


def verbosity_level(quiet: bool = False, verbose: bool = False) -> int:
    """The logging level of ``--quiet`` (WARNING), the default (INFO) and ``--verbose`` (DEBUG)."""
    if quiet and verbose:
        raise ValueError("--quiet and --verbose exclude each other; give one")
    return logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO


class _Handler(logging.StreamHandler):
    """A stream handler that writes above a drawn bar, and without a fixed ``stream`` follows
    whatever ``sys.stderr`` is at each record (pytest and Prefect replace it)."""

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self._fixed = stream  # the base class stored sys.stderr when stream is None

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return self._fixed if self._fixed is not None else sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        self._fixed = value

    def emit(self, record: logging.LogRecord) -> None:
        if not _open_bars:
            super().emit(record)
            return
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:
            self.handleError(record)


def setup_logging(level: int = logging.INFO, stream: Any = None) -> None:
    """Send the ``posecore``/``stages``/``flows`` loggers to ``stream`` (default: the current
    ``sys.stderr``) at ``level``.

    Idempotent: calling it again replaces the handler it added before, and leaves other handlers
    (Prefect's, pytest's) alone.
    """
    handler = _Handler(stream)
    handler.setFormatter(logging.Formatter(_FORMAT, _DATE_FORMAT))
    setattr(handler, _HANDLER_MARK, True)
    for name in LOGGER_NAMES:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, _HANDLER_MARK, False)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(level)


def interval_s() -> float:
    """Seconds between progress lines off a terminal (``$POSECORE_PROGRESS_S``, default 30)."""
    raw = os.environ.get("POSECORE_PROGRESS_S", "")
    try:
        value = float(raw) if raw else _DEFAULT_INTERVAL_S
    except ValueError:
        value = math.nan
    if math.isnan(value):
        raise ValueError(f"POSECORE_PROGRESS_S={raw!r} is not a number of seconds")
    return max(value, 0.0)


def format_duration(seconds: float) -> str:
    """``75.2`` -> ``1m15s``; ``3700`` -> ``1h01m``."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class Progress:
    """Counts the work of one step and reports it (see the module docstring).

    ``step`` names the pipeline step in every line; ``total`` may be None (unknown length);
    ``prefix`` (e.g. ``"epoch 3/21"``, ``"write train"``; :meth:`set_prefix` changes it) and
    ``status`` (e.g. ``loss=...``) are shown with each line.
    ``terminal``: None decides from ``sys.stderr.isatty()``; ``enabled=False`` reports nothing
    (another rank of a distributed run).
    """

    def __init__(
        self,
        step: str,
        total: int | None = None,
        *,
        unit: str = "it",
        initial: int = 0,
        prefix: str = "",
        interval: float | None = None,
        terminal: bool | None = None,
        enabled: bool = True,
        logger: logging.Logger | None = None,
    ) -> None:
        self.step = step
        self.total = total
        self.unit = unit
        self.n = initial
        self.prefix = prefix
        self.status: dict[str, Any] = {}
        self._log = logger or _log
        self._interval = interval_s() if interval is None else interval
        self._enabled = enabled and self._log.isEnabledFor(logging.INFO)
        self._terminal = sys.stderr.isatty() if terminal is None else terminal
        self._start = self._last = time.monotonic()
        self._initial = initial
        self._closed = False
        self._bar: Any = None
        if self._enabled and self._terminal:
            global _open_bars
            from tqdm import tqdm

            desc = f"{step} {prefix}".strip()
            self._bar = tqdm(total=total, initial=initial, unit=unit, desc=desc, dynamic_ncols=True, leave=False)
            _open_bars += 1

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(failed=exc is not None)

    def set_prefix(self, prefix: str) -> None:
        """Text in front of the counts, e.g. ``epoch 3/21``."""
        self.prefix = prefix
        if self._bar is not None:
            self._bar.set_description(f"{self.step} {prefix}".strip(), refresh=False)

    def set_status(self, **status: Any) -> None:
        """Values shown after the counts (``loss=0.0013``); they replace earlier values of the same name."""
        self.status.update(status)
        if self._bar is not None:
            self._bar.set_postfix({k: _fmt(v) for k, v in self.status.items()}, refresh=False)

    def update(self, n: int = 1, **status: Any) -> None:
        """``n`` more units done; logs a line when ``interval_s`` has passed since the last one."""
        self.n += n
        if status:
            self.set_status(**status)
        if not self._enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            self._log.info("%s", self.line(now))

    def rate(self, now: float | None = None) -> float:
        """Units per second since the start (0 before any)."""
        elapsed = (now if now is not None else time.monotonic()) - self._start
        done = self.n - self._initial
        return done / elapsed if elapsed > 0 and done > 0 else 0.0

    def line(self, now: float | None = None) -> str:
        """The progress line: step, prefix, counts, rate, ETA, status."""
        now = now if now is not None else time.monotonic()
        rate = self.rate(now)
        parts = [self.prefix] if self.prefix else []
        if self.total:
            parts.append(f"{self.n}/{self.total} {self.unit} ({100.0 * self.n / self.total:.1f}%)")
        else:
            parts.append(f"{self.n} {self.unit}")
        parts.append(f"{rate:.0f} {self.unit}/s" if rate >= 100 else f"{rate:.3g} {self.unit}/s")
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"ETA {format_duration((self.total - self.n) / rate)}")
        if self.status:
            parts.append(" ".join(f"{k}={_fmt(v)}" for k, v in self.status.items()))
        return f"{self.step}: " + " | ".join(parts)

    def close(self, failed: bool = False) -> None:
        """Ends the bar and logs a last line with the elapsed time (not when it failed)."""
        global _open_bars
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
            _open_bars -= 1
        if self._enabled and not failed:
            elapsed = time.monotonic() - self._start
            self._log.info("%s | done in %s", self.line(), format_duration(elapsed))


def track(items: Iterable[T], step: str, total: int | None = None, *, unit: str = "it", **kwargs: Any) -> Iterator[T]:
    """Iterate ``items`` with a :class:`Progress` (``total`` from ``len(items)`` when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(step, total, unit=unit, **kwargs) as bar:
        for item in items:
            yield item
            bar.update(1)
