"""Where the real data and the real models are, for every test.

``$LIT_ROBUST_DATA`` and ``$LIT_ROBUST_MODELS`` are resolved the way lit_robust resolves data
roots (relative to the directory pytest started in), so a relative value keeps working in tests
that change the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from lit_robust.paths import DATA_ENVIRONMENT_VARIABLE, data_root, resolve_path

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """``$LIT_ROBUST_DATA``, else ``../shared/data`` beside the repository."""
    if os.environ.get(DATA_ENVIRONMENT_VARIABLE):
        root = data_root()
    else:
        root = REPO.parent / "shared" / "data"
    if not root.is_dir():
        raise FileNotFoundError(
            f"real test data not found at {root}; set LIT_ROBUST_DATA to the shared data folder"
        )
    return root


def shared_models_root() -> Path:
    """``$LIT_ROBUST_MODELS``, else the ``models`` folder beside the data folder."""
    value = os.environ.get("LIT_ROBUST_MODELS")
    root = resolve_path(value) if value else shared_data_root().parent / "models"
    if not root.is_dir():
        raise FileNotFoundError(f"shared models not found at {root}; set LIT_ROBUST_MODELS")
    return root
