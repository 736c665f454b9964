"""Fixtures of the data tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.shared_paths import shared_data_root


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder (``$LIT_ROBUST_DATA``; these tests need it and never skip)."""
    return shared_data_root()
