"""A JSON file of MRC tables, keyed by a fingerprint of the weights, the data and the settings.

The MRC search costs about ``2·epochs`` passes over the adversarial set per module, so its
table is kept on disk and reused when the same model is searched again with the same data and
settings (e.g. a second fine-tuning run, or an ablation that fine-tunes another module).

The fingerprint covers every tensor of the model's state dict, the clean held-out images and
labels the adversarial set is made from, and the search and attack settings. The adversarial
examples themselves are not part of it (checking the cache must not cost a PGD run), so a hit
returns a table computed from the same images with other random starts of the attack.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lit_robust.methods.rift.criticality import CriticalityRow

CACHE_FORMAT_VERSION = 1


def _update_with_tensor(digest: Any, tensor: Tensor) -> None:
    data = tensor.detach().to("cpu").contiguous()
    digest.update(f"{data.dtype}{tuple(data.shape)}".encode())
    digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")


def fingerprint(
    model: nn.Module, tensors: Sequence[Tensor], settings: Mapping[str, Any]
) -> str:
    """SHA-256 of the model's state dict, some data tensors and JSON-able settings.

    Args:
        model: its ``state_dict`` (names, dtypes, shapes, values) is hashed.
        tensors: further tensors, e.g. the clean held-out images and their labels.
        settings: hyperparameters that change the result (sorted, JSON-encoded).

    Returns:
        The hex digest.
    """
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        _update_with_tensor(digest, tensor)
    for tensor in tensors:
        _update_with_tensor(digest, tensor)
    digest.update(json.dumps(dict(settings), sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"version": CACHE_FORMAT_VERSION, "entries": {}}
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(
            f"the MRC cache {path} is not valid JSON ({error}); delete it or point mrc_cache "
            f"at another file"
        ) from error
    if content.get("version") != CACHE_FORMAT_VERSION or "entries" not in content:
        raise ValueError(
            f"the MRC cache {path} has an unknown format (expected version "
            f"{CACHE_FORMAT_VERSION}); delete it or point mrc_cache at another file"
        )
    return content


def load_table(path: str | os.PathLike, key: str) -> list[CriticalityRow] | None:
    """The table stored under ``key`` in the cache file, or ``None`` (also if no file)."""
    entry = _read(Path(path))["entries"].get(key)
    if entry is None:
        return None
    return [CriticalityRow.from_dict(row) for row in entry["rows"]]


def store_table(
    path: str | os.PathLike,
    key: str,
    rows: Sequence[CriticalityRow],
    settings: Mapping[str, Any],
) -> None:
    """Add (or replace) the table under ``key``; the file is replaced atomically."""
    path = Path(path)
    content = _read(path)
    content["entries"][key] = {
        "settings": dict(settings),
        "rows": [row.to_dict() for row in rows],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(content, file, indent=1, default=str)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
