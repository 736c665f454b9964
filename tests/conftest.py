"""Shared fixtures: where the real data and the real models are."""

from __future__ import annotations

import os
from pathlib import Path

# Threads sleep instead of spinning while they wait: on a busy 2-core machine spinning
# OpenMP workers slow every test many times over. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.ddp_port import own_master_port  # noqa: E402, F401 (autouse: every test's DDP port)
from tests.shared_paths import shared_data_root, shared_models_root  # noqa: E402


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
