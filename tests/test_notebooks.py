"""Every notebook in notebooks/ executes top to bottom, at the small settings it ships with.

The repository keeps the notebooks without outputs; this test also checks that.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.shared_paths import shared_data_root, shared_models_root

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    expected = {"quickstart.ipynb", "method_tour.ipynb", "analysis.ipynb"}
    assert expected <= {path.name for path in NOTEBOOKS}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_executes(path: Path, monkeypatch) -> None:
    notebook = nbformat.read(path, as_version=4)
    stored = [cell for cell in notebook.cells if cell.cell_type == "code" and cell.outputs]
    assert not stored, f"{path.name} is committed with outputs; clear them"
    monkeypatch.setenv("LIT_ROBUST_DATA", str(shared_data_root()))
    monkeypatch.setenv("LIT_ROBUST_MODELS", str(shared_models_root()))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    errors = [output for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.outputs if output.output_type == "error"]
    assert not errors
