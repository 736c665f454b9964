"""Shared fixtures: where the real data and the real models are."""

from __future__ import annotations

import os
from pathlib import Path

# Threads sleep instead of spinning while they wait: on a busy 2-core machine spinning
# OpenMP workers slow every test many times over. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """``$LIT_ROBUST_DATA`` (CI sets it to ../shared/data), else ../shared/data."""
    root = Path(os.environ.get("LIT_ROBUST_DATA", REPO.parent / "shared" / "data"))
    if not root.is_dir():
        raise FileNotFoundError(
            f"real test data not found at {root}; set LIT_ROBUST_DATA to the shared data folder"
        )
    return root


def shared_models_root() -> Path:
    """``$LIT_ROBUST_MODELS``, else the ``models`` folder beside the data folder."""
    root = Path(os.environ.get("LIT_ROBUST_MODELS", shared_data_root().parent / "models"))
    if not root.is_dir():
        raise FileNotFoundError(f"shared models not found at {root}; set LIT_ROBUST_MODELS")
    return root


@pytest.fixture
def data_root() -> Path:
    return shared_data_root()


@pytest.fixture
def models_root() -> Path:
    return shared_models_root()


@pytest.fixture(autouse=True)
def _deterministic_cpu() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
