"""The walkthrough notebook (notebooks/capc_walkthrough.ipynb) runs from top to bottom: one query
through steps 1a-4 with the real providers, then a small learning experiment. Its own asserts
(labels equal to the plurality vote with the noise off, shares adding up, accountings within the
budget) fail this test when the code it shows changes behaviour."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "capc_walkthrough.ipynb"


def test_notebook_is_stored_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_notebook_executes() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # the kernel inherits this process's environment (PYTHONPATH included), so it imports this capc
    client = nbclient.NotebookClient(nb, timeout=240, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError naming the failing cell
    out = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "answered: True, label" in out and "accuracy before" in out
