"""Every notebook runs top to bottom in fast mode (tiny data, one epoch) and uses only the
public API of the toolkit."""

import ast
import os
from pathlib import Path

import nbformat
import pytest
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.util import run_sync

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


@pytest.fixture(scope="session")
def kernel(data_dir):
    """One Jupyter kernel a test process, its notebooks run in turn (a kernel start and its
    TensorFlow import cost more CPU than most notebooks' fast mode)."""
    manager = AsyncKernelManager(kernel_name="python3")
    environment = {"KERAS_RESIDUAL_FAST": "1", "KERAS_RESIDUAL_DATA": str(data_dir)}
    run_sync(manager.start_kernel)(env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **environment})
    client = manager.client()
    client.start_channels()
    run_sync(client.wait_for_ready)(timeout=120)
    yield manager, client
    client.stop_channels()
    run_sync(manager.shutdown_kernel)(now=True)


# What a fresh kernel would give the next notebook: no names, Keras's defaults, its folder.
FRESH = (
    "get_ipython().reset()\nimport os, keras\nos.chdir({folder!r})\n"
    "keras.config.set_dtype_policy('float32')\nkeras.backend.clear_session()"
)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_fast_mode(path, kernel, tmp_path):
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.insert(0, nbformat.v4.new_code_cell(FRESH.format(folder=str(tmp_path))))
    client = NotebookClient(notebook, timeout=600, km=kernel[0])
    client.kc = kernel[1]
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    outputs = [o for c in notebook.cells[1:] if c.cell_type == "code" for o in c.outputs]
    assert outputs and not [o for o in outputs if o.output_type == "error"]
