"""Prefect settings for the flow tests, set before any test module imports prefect: a private
PREFECT_HOME (never ~/.prefect), no telemetry, a fast runner poll."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("PREFECT_HOME", str(Path(tempfile.gettempdir()) / f"posecore-tests-prefect-{os.getuid()}"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "1")
