"""The walkthrough notebook runs top to bottom (synthetic data) and is stored without outputs."""

from __future__ import annotations

import pytest

from helpers import ROOT, child_env

NOTEBOOK = ROOT / "notebooks" / "cifar10_pipeline.ipynb"
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")


def test_notebook_is_saved_with_outputs_cleared():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_notebook_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebook's mkdtemp work folder, removed with the test's
    monkeypatch.setenv("JDK_JAVA_OPTIONS", child_env()["JDK_JAVA_OPTIONS"])  # the kernel's JVM: small data
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and its trace, if any cell fails
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "accuracy" in text and "reloaded model predicts the same: True" in text
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # the image grids and the scenario plot
