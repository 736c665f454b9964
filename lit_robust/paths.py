"""Where relative paths point: the directory the process started in, whatever it is later.

A relative data root (``LIT_ROBUST_DATA=../shared/data`` or ``root: data``) must name the same
folder wherever a DataModule is built in the process, also after code (a test, a notebook, a
launcher) has changed the working directory. The start directory is recorded once, when
``lit_robust`` is first imported, and every relative data path is resolved against it.
"""

from __future__ import annotations

import os
from pathlib import Path

STARTUP_DIRECTORY = Path.cwd()
"""The working directory when ``lit_robust`` was first imported."""

DATA_ENVIRONMENT_VARIABLE = "LIT_ROBUST_DATA"


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as an absolute path; a relative one is taken relative to the start directory."""
    resolved = Path(path).expanduser()
    if not resolved.is_absolute():
        resolved = STARTUP_DIRECTORY / resolved
    return Path(os.path.normpath(resolved))


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The absolute data root: ``root``, else ``$LIT_ROBUST_DATA``, else ``./data``.

    Relative values are resolved against :data:`STARTUP_DIRECTORY`.
    """
    return resolve_path(root or os.environ.get(DATA_ENVIRONMENT_VARIABLE) or "data")
