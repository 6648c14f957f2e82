"""Helpers of the torture suite: real processes on real files, figures printed.

Every scenario runs its workers as fresh interpreters (``workers/*.py``), waits
for them with generous timeouts, and checks that none was killed by a signal it
did not send (SIGBUS or SIGSEGV would mean LMDB read a damaged mapping).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")
WORKERS = Path(__file__).resolve().parent / "workers"


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PERSISTDICT_SECRET", None)
    if extra:
        env.update(extra)
    return env


def start_worker(
    name: str, *args: object, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start ``workers/<name>.py`` with ``args`` in a fresh interpreter."""
    return subprocess.Popen(
        [sys.executable, str(WORKERS / f"{name}.py"), *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=worker_env(env),
    )


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    """Wait for ``proc``; fail clearly if it failed or a signal killed it."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"worker {proc.args!r} hung for {timeout}s:\n{out}\n{err}")
    if proc.returncode < 0:
        pytest.fail(
            f"worker {proc.args!r} was killed by "
            f"{signal.Signals(-proc.returncode).name}:\n{out}\n{err}"
        )
    if proc.returncode != 0:
        pytest.fail(f"worker {proc.args!r} failed ({proc.returncode}):\n{out}\n{err}")
    return out


def run_worker(
    name: str, *args: object, env: dict[str, str] | None = None, timeout: float = 120
) -> Any:
    """Run a worker to the end and return the JSON object it printed last."""
    out = finish(start_worker(name, *args, env=env), timeout)
    return json.loads(out.strip().splitlines()[-1])


def report(scenario: str, **figures: object) -> None:
    """Print a scenario's figures (shown with ``pytest -s`` or on failure)."""
    shown = ", ".join(f"{key}={value}" for key, value in figures.items())
    print(f"[stress] {scenario}: {shown}")  # noqa: T201 - the figures are the output


def dir_size(path: Path) -> int:
    return sum(item.stat().st_size for item in path.iterdir() if item.is_file())


class Stress:
    """The helpers above, handed to tests by the ``stress`` fixture."""

    start = staticmethod(start_worker)
    finish = staticmethod(finish)
    run = staticmethod(run_worker)
    report = staticmethod(report)
    dir_size = staticmethod(dir_size)
    env = staticmethod(worker_env)


@pytest.fixture
def stress() -> Stress:
    return Stress()


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[str]]]:
    """A list to register started workers in; any still running are killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
