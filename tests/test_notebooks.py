"""The notebooks in notebooks/: the three the docs show, committed without outputs.

Building the documentation executes each of them top to bottom on the real data, at the small
settings they ship with, and fails on any cell that raises
(``tests/docs/test_docs_build.py::test_every_notebook_executes_and_its_page_shows_the_outputs``).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    expected = {"quickstart.ipynb", "method_tour.ipynb", "analysis.ipynb"}
    assert expected <= {path.name for path in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    stored = [cell for cell in notebook.cells if cell.cell_type == "code" and cell.outputs]
    assert not stored, f"{path.name} is committed with outputs; clear them"
