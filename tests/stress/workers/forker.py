"""fork with an open store while other threads are in transactions; multiprocessing.

Usage: forker.py PATH FORKS

Prints a JSON summary on the last line.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import sys
import threading
import time

from persistdict import PersistDict

INHERITED: PersistDict | None = None


def child(d: PersistDict, index: int) -> int:
    """What a forked child does with the store it inherited; its exit code."""
    if d["seed"] != list(range(100)):
        return 3
    d[f"child:{index}"] = os.getpid()
    if d[f"child:{index}"] != os.getpid():
        return 4
    with PersistDict(d.path) as again:  # a second handle in the child
        again.update({f"child:{index}:{j}": j for j in range(50)})
        if sum(1 for _ in again.items()) < 100:
            return 5
    return 0


def mp_task(args: tuple[PersistDict, int]) -> tuple[int, int]:
    d, i = args
    d[f"mp:{os.getpid()}:{i}"] = i
    return i, d[f"mp:{os.getpid()}:{i}"]


def mp_inherited(i: int) -> None:
    assert INHERITED is not None
    INHERITED[f"inherited:{i}"] = os.getpid()


def main() -> None:
    global INHERITED
    path, forks = sys.argv[1], int(sys.argv[2])
    d = PersistDict(path)
    d["seed"] = list(range(100))
    stop = threading.Event()
    in_update = threading.Event()
    counts = {"busy_updates": 0, "iterations": 0}

    def busy_writer() -> None:
        i = 0
        while not stop.is_set():
            in_update.set()
            d.update({f"busy:{j}": (i, j) for j in range(300)})
            in_update.clear()
            d.get("seed")
            i += 1
        counts["busy_updates"] = i

    def busy_reader() -> None:
        while not stop.is_set():
            for _ in d.items():
                pass
            counts["iterations"] += 1

    threads = [
        threading.Thread(target=busy_writer),
        threading.Thread(target=busy_reader),
    ]
    for t in threads:
        t.start()
    rng = random.Random(6)
    results = {"forks": 0, "during_update": 0, "ok": 0, "failed": 0, "hung": 0}
    pids = []
    for index in range(forks):
        time.sleep(rng.uniform(0.0, 0.05))
        if in_update.is_set():
            results["during_update"] += 1
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = child(d, index)
            finally:
                os._exit(code)
        results["forks"] += 1
        pids.append(pid)
    for pid in pids:
        deadline = time.monotonic() + 60
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(status)
                results["ok" if code == 0 else "failed"] += 1
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                results["hung"] += 1
                break
            time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join()
    seen_children = sum(1 for i in range(forks) if f"child:{i}" in d)
    seen_batches = sum(1 for i in range(forks) if d.get(f"child:{i}:49") == 49)

    # multiprocessing: a pickled handle in pools of both start methods, and an
    # inherited store in fork Processes.
    mp = {}
    for method in ("fork", "spawn"):
        ctx = multiprocessing.get_context(method)
        with ctx.Pool(2) as pool:
            got = pool.map(mp_task, [(d, i) for i in range(8)])
        mp[method] = sum(1 for i, v in got if i == v)
    INHERITED = d
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=mp_inherited, args=(i,)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    mp["fork_process_exitcodes_zero"] = sum(1 for p in procs if p.exitcode == 0)
    mp["inherited_seen"] = sum(1 for i in range(4) if f"inherited:{i}" in d)
    mp["pool_entries_seen"] = sum(1 for k in d if str(k).startswith("mp:"))
    d.close()
    sys.stdout.write(
        json.dumps(
            {
                **results,
                **counts,
                "children_seen": seen_children,
                "child_batches_seen": seen_batches,
                "mp": mp,
            }
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
