"""Where a benchmark's measurement goes: ``<output>.json`` and ``<output>.md`` side by side."""

from __future__ import annotations

import json
from pathlib import Path


def write_result_files(output: Path, result: dict, markdown: str) -> None:
    """Write ``result`` as ``<output>.json`` and its report ``markdown`` as ``<output>.md``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    output.with_suffix(".md").write_text(markdown)
