"""Shared fixtures: the real data in ../shared (skipped with a reason where absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FRAMEMATRIX_SHARED", ROOT.parent / "shared"))


def shared_path(*parts: str) -> Path:
    """Path under ../shared, or skip the test with the reason it is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found: {path} (see ../shared/DATA.md)")
    return path


@pytest.fixture
def astronaut_dir() -> Path:
    return shared_path("data", "astronaut")
