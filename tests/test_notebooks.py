"""Every notebook runs top to bottom in fast mode (tiny data, one epoch) and uses only the
public API of the toolkit."""

import ast
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import keras_residual
import keras_residual.search

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def _code(notebook) -> str:
    cells = [c.source for c in notebook.cells if c.cell_type == "code"]
    return "\n".join(line for cell in cells for line in cell.splitlines() if line[:1] not in "%!")


def test_there_are_six_notebooks():
    assert [n.name[:2] for n in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_uses_only_the_public_api(path):
    tree = ast.parse(_code(nbformat.read(path, as_version=4)))
    public = {"keras_residual", "keras_residual.search", "keras_residual.layers"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module.startswith("keras_residual"):
            assert node.module in public, node.module
            assert all(not a.name.startswith("_") for a in node.names)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "kr":
                assert node.attr in keras_residual.__all__, f"kr.{node.attr}"
            if node.value.id == "search":
                assert node.attr in keras_residual.search.__all__, f"search.{node.attr}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_fast_mode(path, data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_RESIDUAL_FAST", "1")
    monkeypatch.setenv("KERAS_RESIDUAL_DATA", str(data_dir))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=600, resources={"metadata": {"path": tmp_path}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert outputs and not [o for o in outputs if o.output_type == "error"]
