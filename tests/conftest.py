"""Shared fixtures. Real data lives in ../shared/data; tests that need it skip when it is absent."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Helpers shared by several test folders (tests are not a package: pytest runs with importlib mode).
sys.path.insert(0, str(Path(__file__).with_name("_helpers")))
SHARED_DATA = Path(__import__("os").environ.get("POSECORE_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; skips the test when it is not there (a fresh machine outside CI)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (set POSECORE_SHARED_DATA to point at it)")
    return SHARED_DATA
