"""@persist_cache across real processes: restarts, hash seeds, clear/invalidate seen
live, one execution for three processes, a SIGKILLed leader."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from persistdict._memo import persist_cache

# A module-level function in a child process: ``python -c`` runs it as __main__.
CHILD = """
import json, os, sys, time
from persistdict._memo import persist_cache

store, log = sys.argv[1], sys.argv[2]

@persist_cache(store, lock_timeout=float(os.environ.get("LOCK_TIMEOUT", "30")))
def work(items, options, delay=0.0):
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\\n")
    time.sleep(delay)
    return sorted(items), sorted(options.items())

args = json.loads(sys.argv[3])
result = work(set(args["items"]), dict(args["options"]), delay=args.get("delay", 0.0))
info = work.cache_info()
print(json.dumps({"result": result, "hits": info.hits, "misses": info.misses}))
"""


def run_child(
    run_py: Any, store: Path, log: Path, args: dict[str, Any], **env: str
) -> Any:
    proc = run_py(CHILD, str(store), str(log), json.dumps(args), env=env or None)
    return json.loads(proc.stdout)


def executions(log: Path) -> int:
    return len(log.read_text().split()) if log.exists() else 0


def test_hits_after_restart_under_three_hash_seeds(run_py: Any, tmp_path: Path) -> None:
    store, log = tmp_path / "db", tmp_path / "log"
    args = {"items": ["pear", "apple", "fig", "kiwi"], "options": [["b", 1], ["a", 2]]}
    first = run_child(run_py, store, log, args, PYTHONHASHSEED="1")
    assert (first["hits"], first["misses"]) == (0, 1)
    for seed in ("2", "3", "random"):
        again = run_child(run_py, store, log, args, PYTHONHASHSEED=seed)
        assert (again["hits"], again["misses"]) == (1, 0), seed
        assert again["result"] == first["result"]
    # The dict in another insertion order is the same call too.
    reordered = {**args, "options": [["a", 2], ["b", 1]]}
    assert run_child(run_py, store, log, reordered)["hits"] == 1
    assert executions(log) == 1


def test_main_class_instances_hash_by_value_across_processes(
    run_py: Any, tmp_path: Path
) -> None:
    code = """
import sys
from persistdict._memo import persist_cache

class Point:
    def __init__(self, x, tags):
        self.x, self.tags = x, tags

@persist_cache(sys.argv[1])
def norm(p):
    return p.x * 2

print(norm(Point(3, {"a", "b", "c"})), norm.cache_info().hits)
"""
    outputs = [
        run_py(code, str(tmp_path / "db"), env={"PYTHONHASHSEED": seed}).stdout.split()
        for seed in ("1", "2")
    ]
    assert outputs == [["6", "0"], ["6", "1"]]


def test_clear_and_invalidate_seen_by_a_live_process(
    run_py: Any, tmp_path: Path
) -> None:
    store = tmp_path / "db"
    calls = []

    @persist_cache(store)
    def shared(x: int) -> int:
        calls.append(x)
        return x

    # The subprocess defines a function of the same module and name: same entries.
    other = f"""
import sys
from persistdict._memo import persist_cache

def shared(x):
    return x

shared.__module__ = {shared.__module__!r}
shared.__qualname__ = {shared.__qualname__!r}
f = persist_cache(sys.argv[1])(shared)
action = sys.argv[2]
if action == "invalidate":
    print(f.cache_invalidate(1))
else:
    f.cache_clear()
    print(f.cache_info().currsize)
"""
    shared(1)
    shared(2)
    assert shared(1) == 1  # now in this process's memory layer
    assert run_py(other, str(store), "invalidate").stdout.strip() == "True"
    assert not shared.cache_contains(1)
    assert shared(1) == 1
    assert calls == [1, 2, 1]
    assert run_py(other, str(store), "clear").stdout.strip() == "0"
    assert shared.cache_info().currsize == 0
    shared(2)
    assert calls == [1, 2, 1, 2]


def test_three_processes_one_execution(popen_py: Any, tmp_path: Path) -> None:
    store, log = tmp_path / "db", tmp_path / "log"
    args = json.dumps({"items": ["a"], "options": [], "delay": 1.0})
    procs = [popen_py(CHILD, str(store), str(log), args) for _ in range(3)]
    outputs = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert executions(log) == 1
    assert sorted(o["misses"] for o in outputs) == [0, 0, 1]
    assert all(o["result"] == outputs[0]["result"] for o in outputs)


def test_sigkilled_leader_does_not_block_the_others(
    popen_py: Any, tmp_path: Path
) -> None:
    store, log = tmp_path / "db", tmp_path / "log"
    slow = json.dumps({"items": ["k"], "options": [], "delay": 120.0})
    leader = popen_py(CHILD, str(store), str(log), slow)
    deadline = time.monotonic() + 30
    while executions(log) == 0:  # wait until the leader is inside the function
        assert leader.poll() is None, leader.communicate()
        assert time.monotonic() < deadline, "the leader never started"
        time.sleep(0.05)
    fast = json.dumps({"items": ["k"], "options": [], "delay": 0.0})
    waiters = [popen_py(CHILD, str(store), str(log), fast) for _ in range(2)]
    time.sleep(0.5)  # let them queue on the leader's lock (not needed to pass)
    os.kill(leader.pid, signal.SIGKILL)
    leader.communicate(timeout=10)
    # Bounded: far less than the leader's 120 s and the waiters' 30 s timeout.
    outputs = []
    for waiter in waiters:
        try:
            out, err = waiter.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            waiter.kill()
            raise
        assert waiter.returncode == 0, err
        outputs.append(json.loads(out))
    assert executions(log) == 2  # the killed leader's, and one waiter's
    assert sorted(o["misses"] for o in outputs) == [0, 1]
