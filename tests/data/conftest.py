"""Fixtures of the data tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder named by LIT_ROBUST_DATA (these tests need it and never skip)."""
    value = os.environ.get("LIT_ROBUST_DATA")
    assert value, "set LIT_ROBUST_DATA to the shared data folder (e.g. ../shared/data)"
    root = Path(value)
    assert root.is_dir(), f"LIT_ROBUST_DATA={value} is not a folder"
    return root
