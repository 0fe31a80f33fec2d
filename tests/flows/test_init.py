"""flows/__init__.py: the library's and the stages' log lines reach Prefect's run logs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHECK = """
import logging
{first}
{second}
for name in ("posecore", "stages"):
    logger = logging.getLogger(name)
    kinds = [type(h).__name__ for h in logger.handlers]
    assert "APILogHandler" in kinds, (name, kinds)
    assert logger.getEffectiveLevel() == logging.INFO, (name, logger.level)
print("ok")
"""


@pytest.mark.parametrize(
    "order",
    [("import flows", "import prefect.main"), ("import prefect.main", "import flows")],
    ids=["flows-first", "prefect-first (a worker)"],
)
def test_posecore_and_stages_loggers_get_prefects_api_handler(order: tuple[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_LOGGING_EXTRA_LOGGERS"}
    proc = subprocess.run(
        [sys.executable, "-c", CHECK.format(first=order[0], second=order[1])],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
