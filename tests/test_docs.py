"""The README's code blocks and the examples run, so they never rot."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"^```python\n(.*?)^```", README, flags=re.S | re.M)
PRELUDE = (
    "import tempfile, os\na_path = dbp = os.path.join(tempfile.mkdtemp(), 'store')\n"
)


def test_readme_has_python_blocks() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index: int, run_py: Any, tmp_path: Path) -> None:
    run_py(
        PRELUDE + BLOCKS[index],
        env={"PERSISTDICT_CACHE_DIR": str(tmp_path / "cache")},
        timeout=120,
    )


def test_readme_commands_are_what_ci_runs() -> None:
    commands = re.search(r"^```console\n(.*?)^```", README, flags=re.S | re.M)
    assert commands is not None
    main_job, test_command = commands.group(1).strip().splitlines()
    assert "examples/memoize_expensive.py" in main_job
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines()
    assert shlex.split(test_command)[-2:] == ["-m", "pytest"]


def test_main_example_is_instant_the_second_time(run_py: Any, tmp_path: Path) -> None:
    env = {"PERSISTDICT_CACHE_DIR": str(tmp_path / "cache")}
    script = (ROOT / "examples" / "memoize_expensive.py").read_text()
    first = run_py(script, env=env, timeout=120).stdout
    second = run_py(script, env=env, timeout=120).stdout
    assert "misses=4" in first
    assert "misses=0" in second
    assert first.splitlines()[:5] == second.splitlines()[:5]


@pytest.mark.parametrize(
    "example",
    sorted(
        p.name
        for p in (ROOT / "examples").glob("*.py")
        if p.name != "memoize_expensive.py"
    ),
)
def test_example_runs(example: str, tmp_path: Path) -> None:
    import subprocess

    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / example)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "PERSISTDICT_CACHE_DIR": str(tmp_path / "cache"),
            "PYTHONPATH": str(ROOT / "src"),
        },
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
