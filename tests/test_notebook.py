"""@persist_cache in a real Jupyter kernel: restarts, re-run cells, __main__ classes,
top-level await."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

SETUP = """
import asyncio
from persistdict._memo import persist_cache

STORE = {store!r}
LOG = {log!r}
"""

DEFINE = """
class Point:
    def __init__(self, x, y, tags):
        self.x, self.y, self.tags = x, y, tags

@persist_cache(STORE)
def norm2(p):
    with open(LOG, "a") as f:
        f.write("norm2\\n")
    return p.x * p.x + p.y * p.y

@persist_cache(STORE)
async def fetch(n):
    with open(LOG, "a") as f:
        f.write("fetch\\n")
    await asyncio.sleep(0)
    return n * 10
"""

CALL = """
import json
r1 = norm2(Point(3, 4, {"a", "b", "c"}))
r2 = await fetch(7)
print(json.dumps([r1, r2, norm2.cache_info().hits, fetch.cache_info().hits]))
"""


def run_notebook(store: Path, log: Path) -> list[list[int]]:
    """Execute the notebook in a fresh kernel; the JSON lines its CALL cells print."""
    cells = [
        nbformat.v4.new_code_cell(SETUP.format(store=str(store), log=str(log))),
        nbformat.v4.new_code_cell(DEFINE),
        nbformat.v4.new_code_cell(CALL),
        nbformat.v4.new_code_cell(DEFINE),  # the defining cell run again
        nbformat.v4.new_code_cell(CALL),
    ]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    client = NotebookClient(
        notebook, timeout=60, kernel_name="python3", resources={"metadata": {}}
    )
    client.execute()
    lines = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("name") == "stdout":
                lines.extend(json.loads(line) for line in output["text"].splitlines())
    return lines


def test_notebook_hits_across_kernel_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kernel is this interpreter (the test's virtualenv), whatever is on PATH.
    bin_dir = os.path.dirname(sys.executable)
    monkeypatch.setenv("PATH", bin_dir + os.pathsep + os.environ.get("PATH", ""))
    store, log = tmp_path / "db", tmp_path / "log"
    first = run_notebook(store, log)
    # First kernel: computed once, then a hit after the defining cell re-ran.
    assert first == [[25, 70, 0, 0], [25, 70, 1, 1]]
    # A new kernel (a restart): hits straight away, the Point hashed by value.
    # (Re-running the defining cell makes a new wrapper: its counts start at 0.)
    second = run_notebook(store, log)
    assert second == [[25, 70, 1, 1], [25, 70, 1, 1]]
    assert sorted(log.read_text().split()) == ["fetch", "norm2"]
