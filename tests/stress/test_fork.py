"""fork with an open store (other threads inside transactions), multiprocessing."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

FORKS = 20


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_while_threads_are_in_transactions_and_multiprocessing(
    tmp_path: Path, stress: Any
) -> None:
    started = time.monotonic()
    result = stress.run("forker", tmp_path / "store", FORKS, timeout=170)
    stress.report(
        "fork + multiprocessing",
        seconds=round(time.monotonic() - started, 1),
        **{k: v for k, v in result.items() if k != "mp"},
        **result["mp"],
    )
    assert result["forks"] == FORKS
    assert (result["ok"], result["failed"], result["hung"]) == (FORKS, 0, 0)
    assert result["children_seen"] == result["child_batches_seen"] == FORKS
    mp = result["mp"]
    assert mp["fork"] == mp["spawn"] == 8
    assert mp["pool_entries_seen"] == 16
    assert mp["fork_process_exitcodes_zero"] == mp["inherited_seen"] == 4
