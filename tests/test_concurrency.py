"""Threads, processes, fork and kill -9 on one store, with real subprocesses."""

from __future__ import annotations

import multiprocessing
import os
import platform
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import persistdict._env
from persistdict import PersistDict
from persistdict._env import Env

WRITER = """
import sys, threading
from persistdict import PersistDict
path, proc, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
d = PersistDict(path)
def work(thread):
    for i in range(n):
        d[f"p{proc}-t{thread}-{i}"] = (proc, thread, i)
        d["shared"] = (proc, thread, i)
threads = [threading.Thread(target=work, args=(t,)) for t in range(2)]
for t in threads: t.start()
for t in threads: t.join()
d.update({f"batch-{proc}-{i}": i for i in range(50)})
print("done")
"""


def in_threads(fn: Any, n: int) -> list[BaseException]:
    """Run ``fn(i)`` in ``n`` threads at once; the exceptions they raised."""
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            fn(i)
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_four_processes_two_threads_lose_nothing(
    store_path: Path, popen_py: Any
) -> None:
    PersistDict(store_path).close()
    n = 60
    procs = [popen_py(WRITER, str(store_path), str(p), str(n)) for p in range(4)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.strip() == "done"
    with PersistDict(store_path) as d:
        for p in range(4):
            for t in range(2):
                for i in range(n):
                    assert d[f"p{p}-t{t}-{i}"] == (p, t, i)
            for i in range(50):
                assert d[f"batch-{p}-{i}"] == i
        assert len(d) == 4 * 2 * n + 4 * 50 + 1
        assert d["shared"][2] == n - 1


def test_another_process_sees_every_change_on_the_next_read(
    store_path: Path, run_py: Any
) -> None:
    d = PersistDict(store_path)  # memory layer on (cache_size=128)
    d["k"] = "mine"
    d["other"] = [1]
    assert d["k"] == "mine"
    assert d["other"] == [1]

    def other(code: str) -> None:
        run_py(
            "import sys\nfrom persistdict import PersistDict\n"
            "d = PersistDict(sys.argv[1])\n" + code,
            str(store_path),
        )

    other("d['k'] = 'theirs'")
    assert d["k"] == "theirs"
    other("d.update({'k': 'updated', 'new': 1})")
    assert d["k"] == "updated"
    assert d.get("new") == 1
    other("del d['k']")
    assert "k" not in d
    assert d.get("k") is None
    with pytest.raises(KeyError):
        d["k"]
    other("d.clear()")
    assert d.get("other") is None
    assert len(d) == 0
    assert d == {}
    other("d['late'] = 'x'")
    assert d.setdefault("late", "y") == "x"
    d.close()


KILLED_WRITER = """
import sys
from persistdict import PersistDict
d = PersistDict(sys.argv[1], map_size=1 << 20)
i = 0
while True:
    if i % 7 == 0:
        d.update({f"u{i}-{j}": [i, j] * 20 for j in range(30)})
    d[f"k{i}"] = [i] * (i % 50)
    print(i, flush=True)
    i += 1
"""


@pytest.mark.parametrize("acks", [5, 40, 150])
def test_kill_9_mid_loop_keeps_every_acknowledged_write(
    store_path: Path, popen_py: Any, acks: int
) -> None:
    proc = popen_py(KILLED_WRITER, str(store_path))
    assert proc.stdout is not None
    acknowledged = -1
    for line in proc.stdout:
        acknowledged = int(line)
        if acknowledged >= acks:
            break
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with PersistDict(store_path) as d:
        for i in range(acknowledged + 1):
            assert d[f"k{i}"] == [i] * (i % 50)
            if i % 7 == 0:
                assert all(d[f"u{i}-{j}"] == [i, j] * 20 for j in range(30))
        # Whatever the last, unacknowledged write did, it is whole or absent.
        for key, value in d.items():
            assert isinstance(value, list)
            assert key.startswith(("k", "u"))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_child_and_parent_see_each_other(store_path: Path) -> None:
    d = PersistDict(store_path)
    d["parent-before"] = 1
    assert d["parent-before"] == 1
    stop = threading.Event()

    def busy() -> None:  # a thread inside transactions while we fork
        i = 0
        while not stop.is_set():
            d[f"busy{i % 10}"] = i
            d.get("parent-before")
            i += 1

    worker = threading.Thread(target=busy)
    worker.start()
    try:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                ok = d["parent-before"] == 1
                d["child"] = os.getpid()
                os.write(write_fd, b"w")
                deadline = time.monotonic() + 20
                while d.get("parent-after") is None and time.monotonic() < deadline:
                    time.sleep(0.01)
                ok = ok and d.get("parent-after") == 2
                d.close()
                code = 0 if ok else 3
            finally:
                os._exit(code)
        assert os.read(read_fd, 1) == b"w"
        assert d["child"] == pid
        d["parent-after"] = 2
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        stop.set()
        worker.join()
    assert d["parent-before"] == 1
    d.close()


def _mp_worker(d: PersistDict, n: int) -> int:
    d[f"mp-{os.getpid()}"] = n
    return len(d)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing_with_a_pickled_handle(store_path: Path, method: str) -> None:
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} here")
    d = PersistDict(store_path)
    d["seed"] = 0
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(2) as pool:
        # A worker that died would make starmap wait forever: bound the wait.
        sizes = pool.starmap_async(_mp_worker, [(d, i) for i in range(4)]).get(60)
    assert all(size >= 2 for size in sizes)
    assert sorted(v for k, v in d.items() if k.startswith("mp-")) != []
    assert len(d) >= 3
    d.close()


GROWER = """
import sys
from persistdict import PersistDict
d = PersistDict(sys.argv[1], map_size=1 << 20, durable=False)
blob = b"x" * (2 << 20)
for i in range(100):
    d[i] = blob
d.close()
print("ok")
"""


def test_200_mb_through_a_small_initial_map(store_path: Path, run_py: Any) -> None:
    reader = PersistDict(store_path, map_size=1 << 20)  # opened before it grows
    reader["first"] = 1
    assert run_py(GROWER, str(store_path), timeout=300).stdout.strip() == "ok"
    assert reader[99] == b"x" * (2 << 20)  # adopts the size another process grew to
    reader["after"] = 2
    assert len(reader) == 102
    reader.close()


ATIME_READER = """
import sys, time
from persistdict import PersistDict
d = PersistDict(sys.argv[1])
d["k"]
time.sleep(float(sys.argv[2]))
print("read")
"""


def test_atime_of_a_read_is_seen_by_another_process(
    store_path: Path, popen_py: Any
) -> None:
    d = PersistDict(store_path)
    d["k"] = "v"
    written = d.metadata("k").atime
    time.sleep(1.1)
    # A reader that stays alive: its atime reaches the file within about a second.
    proc = popen_py(ATIME_READER, str(store_path), "3")
    deadline = time.monotonic() + 10
    while d.metadata("k").atime == written and time.monotonic() < deadline:
        time.sleep(0.1)
    assert d.metadata("k").atime > written
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    d.close()


ATIMES_OF = """
import sys
from persistdict import PersistDict
with PersistDict(sys.argv[1], readonly=True) as d:
    print(min(d.metadata(k).atime.timestamp() for k in d))
"""


def test_a_busy_reader_writes_its_access_times_itself(
    store_path: Path, run_py: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # py-lmdb releases the GIL around each get and put: a background thread that
    # wrote a large batch while this thread reads would take the GIL from it at
    # every put. So a large batch is handed to the next read, and written by the
    # reading thread. (A long grace: no other thread may take it in time.)
    monkeypatch.setattr(persistdict._env, "IDLE_FLUSH_GRACE", 60.0)
    writers: list[int] = []
    flush = Env._flush_pending

    def recorded(env: Env, limit: int | None = None) -> None:
        writers.append(threading.get_ident())
        flush(env, limit)

    monkeypatch.setattr(Env, "_flush_pending", recorded)
    keys = [f"k{i}" for i in range(2 * persistdict._env.INLINE_FLUSH_MIN)]
    d = PersistDict(store_path, cache_size=0)
    d.update(dict.fromkeys(keys, 0))
    started = time.time()
    deadline = time.monotonic() + 30
    while not writers and time.monotonic() < deadline:
        for k in keys:
            d[k]
    assert writers == [threading.get_ident()]
    # Another process sees every key's read.
    assert float(run_py(ATIMES_OF, str(store_path)).stdout) >= started
    d.close()


def test_a_read_writes_at_most_a_bounded_part_of_a_large_batch(
    store_path: Path, run_py: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A read that writes the batch of access times pays for it: at most
    # INLINE_FLUSH_MAX of them (the first recorded), the next read the next.
    monkeypatch.setattr(persistdict._env, "IDLE_FLUSH_GRACE", 60.0)
    monkeypatch.setattr(persistdict._env, "INLINE_FLUSH_MIN", 4)
    monkeypatch.setattr(persistdict._env, "INLINE_FLUSH_MAX", 10)
    keys = [f"k{i:02d}" for i in range(25)]
    d = PersistDict(store_path, cache_size=0)
    d.update(dict.fromkeys(keys, 0))
    started = time.time()
    for k in keys:
        d[k]
    env = d._live()
    deadline = time.monotonic() + 30
    while not env._flush_wanted and time.monotonic() < deadline:
        time.sleep(0.01)  # the access-time thread asks after about a second
    assert env._flush_wanted
    d["k00"]  # writes k00..k09
    assert (len(env._pending), env._flush_wanted) == (15, True)
    d["k00"]  # a first read again (k00 was written): then k10..k19
    assert (len(env._pending), env._flush_wanted) == (6, True)
    d["k01"]  # the last 5 and k00, and k01 itself
    assert (len(env._pending), env._flush_wanted) == (0, False)
    # Another process sees every read.
    assert float(run_py(ATIMES_OF, str(store_path)).stdout) >= started
    d.close()


def test_threads_reading_while_their_access_times_are_written(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches written by reading threads, often: a thread may still record a
    # read into the batch another thread is writing (py-lmdb lets go of the
    # GIL at each put). No read may fail for it, and the reads are recorded.
    monkeypatch.setattr(persistdict._env, "ATIME_FLUSH_SECONDS", 0.01)
    monkeypatch.setattr(persistdict._env, "IDLE_FLUSH_GRACE", 1.0)
    monkeypatch.setattr(persistdict._env, "INLINE_FLUSH_MIN", 8)
    keys = [f"k{i}" for i in range(3000)]
    with PersistDict(store_path, cache_size=0) as d:
        d.update(dict.fromkeys(keys, 0))
        deadline = time.monotonic() + 1.5

        def read(offset: int) -> None:
            while time.monotonic() < deadline:
                for k in keys[offset::2]:
                    assert d[k] == 0

        assert in_threads(read, 2) == []
        assert d.metadata("k0").atime > d.metadata("k0").ctime


def test_a_read_records_its_time_to_within_the_clock_tick(store_path: Path) -> None:
    # Reads record the clock the access-time thread advances every CLOCK_TICK
    # (not time.time() each): a recorded time is never later than the read, a
    # tick or so earlier at most, and reads further apart than a tick record
    # later times.
    tick = persistdict._env.CLOCK_TICK
    with PersistDict(store_path, cache_size=0) as d:
        d.update({f"k{i}": i for i in range(8)})
        time.sleep(0.05)  # the reads below come after the writes' times
        recorded = []
        for i in range(8):
            before = time.time()
            assert d[f"k{i}"] == i
            after = time.time()
            atime = d.metadata(f"k{i}").atime.timestamp()
            assert before - tick - 0.2 <= atime <= after
            recorded.append(atime)
            time.sleep(2.5 * tick)
        assert recorded == sorted(recorded)
        assert len(set(recorded)) == len(recorded)


def test_a_short_lived_reader_records_atime_at_exit(
    store_path: Path, run_py: Any
) -> None:
    with PersistDict(store_path) as d:
        d["k"] = "v"
        written = d.metadata("k").atime
    time.sleep(0.05)
    run_py(ATIME_READER, str(store_path), "0")
    with PersistDict(store_path) as d:
        assert d.metadata("k").atime > written


def test_regular_reads_keep_an_entry_alive(store_path: Path) -> None:
    days = 2.5 / 86400  # 2.5 seconds
    d = PersistDict(store_path, expiration_days=days)
    d["read"] = 1
    d["unread"] = 2
    for _ in range(8):
        time.sleep(0.5)
        assert d["read"] == 1
    # 4 s later: the unread entry is invisible at once, the read one is there.
    assert "unread" not in d
    assert d.get("unread") is None
    assert list(d) == ["read"]
    assert len(d) == 1
    assert d.expire() == 1
    d.close()
    other = PersistDict(store_path)  # without expiration: the sweep removed it
    assert other == {"read": 1}
    other.close()


def test_values_in_the_memory_layer_expire_on_time(store_path: Path) -> None:
    # The memory layer serves an expiring store too, while an entry it holds is
    # younger than the expiration; an older one is checked in the store.
    d = PersistDict(store_path, expiration_days=1.5 / 86400)  # 1.5 seconds
    d["k"] = [1]
    assert d["k"] == d["k"] == [1]  # admitted to the layer at its second read
    time.sleep(2.0)
    with pytest.raises(KeyError):
        d["k"]  # not read for 2 s: gone, though the layer held it
    d.close()


def test_a_read_only_handle_serves_no_expired_entry_from_the_layer(
    store_path: Path,
) -> None:
    # A read-only handle records no access: what it puts in the layer says
    # nothing of when the entry was last used.
    days = 3 / 86400  # 3 seconds
    with PersistDict(store_path, days) as d:
        d["k"] = [1, 2, 3]
    written = time.monotonic()
    time.sleep(1.0)
    r = PersistDict(store_path, days, readonly=True)
    assert r.get("k") == r.get("k") == [1, 2, 3]  # into the layer
    time.sleep(max(0.0, 3.6 - (time.monotonic() - written)))
    assert "k" not in r
    assert r.get("k") is None
    r.close()


def test_reads_in_another_process_keep_a_layer_entry_alive(
    store_path: Path, run_py: Any
) -> None:
    d = PersistDict(store_path, expiration_days=3 / 86400)  # 3 seconds
    d["kept"] = [2]
    started = time.monotonic()
    assert d["kept"] == d["kept"] == [2]  # in the layer
    time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    run_py(
        "import sys\nfrom persistdict import PersistDict\n"
        "assert PersistDict(sys.argv[1], expiration_days=3 / 86400)['kept'] == [2]",
        str(store_path),
    )
    time.sleep(max(0.0, 3.3 - (time.monotonic() - started)))
    # Older than the expiration here, so checked in the store: the other
    # process read it at most 2.3 s ago.
    assert d["kept"] == [2]
    d.close()


def test_expired_entries_are_swept_at_open(store_path: Path) -> None:
    with PersistDict(store_path) as d:
        d.update({i: i for i in range(50)})
    time.sleep(1.2)
    with PersistDict(store_path, expiration_days=1 / 86400) as d:
        assert len(d) == 0
    with PersistDict(store_path) as d:
        assert len(d) == 0  # removed for good, not only hidden


def test_threads_share_one_store(store_path: Path) -> None:
    store = PersistDict(store_path, durable=False)

    def work(t: int) -> None:
        for i in range(200):
            store[(t, i)] = i
            assert store[(t, i)] == i
            if i % 50 == 0:
                list(store.items())

    assert in_threads(work, 8) == []
    assert len(store) == 1600
    store.close()


def test_frozenset_keys_match_under_any_hash_seed(
    store_path: Path, run_py: Any
) -> None:
    code = """
import sys
from persistdict import PersistDict
d = PersistDict(sys.argv[1])
key = (frozenset({"alpha", "beta", "gamma", "delta"}), frozenset({("x", 1), ("y", 2)}))
print(d.get(key, "missing"))
d[key] = sys.argv[2]
"""
    seen = []
    for seed in ("1", "2", "3"):
        out = run_py(code, str(store_path), seed, env={"PYTHONHASHSEED": seed}).stdout
        seen.append(out.strip())
    assert seen == ["missing", "1", "2"]


@pytest.mark.skipif(sys.platform != "linux", reason="fork semantics checked on Linux")
def test_child_inherits_no_pending_work(store_path: Path) -> None:
    d = PersistDict(store_path)
    d["a"] = 1
    d["a"]  # pending atime in the parent
    pid = os.fork()
    if pid == 0:
        try:
            d.close()  # closing an inherited, unused handle must not hurt
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert d["a"] == 1
    d["b"] = 2
    d.close()


def test_memory_layer_survives_access_time_flushes_of_others(
    store_path: Path, run_py: Any
) -> None:
    d = PersistDict(store_path)
    d["k"] = [1, 2]
    assert d["k"] == [1, 2]
    assert d["k"] == [1, 2]  # admitted to the layer at its second read
    env = d._live()
    assert env.counter.offset is not None  # reads need no transaction
    layer_sizes = lambda: sum(len(c) for c in env.layer._caches.values())  # noqa: E731
    assert layer_sizes() == 1
    # Another process only reads: its access time reaches the store at exit.
    run_py(
        "import sys\nfrom persistdict import PersistDict\n"
        "print(PersistDict(sys.argv[1])['k'])",
        str(store_path),
    )
    assert d["k"] == [1, 2]
    assert layer_sizes() == 1  # an access-time flush is not a change of data
    run_py(
        "import sys\nfrom persistdict import PersistDict\n"
        "PersistDict(sys.argv[1])['k'] = 'changed'",
        str(store_path),
    )
    assert d["k"] == "changed"  # a change of data is seen at once
    d.close()


def test_a_write_that_changes_nothing_keeps_the_layer_coherent(
    store_path: Path, run_py: Any
) -> None:
    # LMDB does not commit a write transaction that changed nothing, and the
    # next commit (here another process's) takes its id.
    d = PersistDict(store_path, expiration_days=30)
    d["k"] = [1, 2]
    assert d["k"] == d["k"] == [1, 2]  # in the layer from its second read
    env = d._live()
    assert d._delete_many(["missing"]) == 0
    assert d.expire() == 0
    assert env.counter.offset is not None  # warm reads still need no transaction
    run_py(
        "import sys\nfrom persistdict import PersistDict\n"
        "PersistDict(sys.argv[1])['k'] = 'changed'",
        str(store_path),
    )
    assert d["k"] == "changed"
    d.close()


@pytest.mark.skipif(
    platform.machine() not in ("x86_64", "aarch64"),
    reason="elsewhere the lock file's counter is learnt from two commits",
)
def test_a_process_that_only_reads_serves_warm_reads_without_transactions(
    store_path: Path, run_py: Any
) -> None:
    with PersistDict(store_path) as d:
        d["k"] = "v"
    out = run_py(
        """
import sys
from persistdict import PersistDict
d = PersistDict(sys.argv[1])
for _ in range(3):
    d["k"]
print(d._live().counter.offset is not None)
""",
        str(store_path),
    ).stdout
    assert out.strip() == "True"


def test_values_of_main_classes_load_in_another_program(
    store_path: Path, run_py: Any
) -> None:
    run_py(
        """
import sys
from dataclasses import dataclass
from persistdict import PersistDict

@dataclass
class Point:
    x: int
    def norm(self):
        return abs(self.x)

with PersistDict(sys.argv[1]) as d:
    d["p"] = Point(-3)
    d["f"] = lambda v: v * 2
""",
        str(store_path),
    )
    # This process has no Point class in its __main__: the value carries it.
    with PersistDict(store_path) as d:
        assert d["p"].norm() == 3
        assert d["f"](21) == 42


def test_exit_during_an_access_time_flush_is_prompt_and_keeps_the_reads(
    store_path: Path, run_py: Any
) -> None:
    # The background thread writes access times one second after a read; with
    # 100,000 of them, the program below exits while it does. The interpreter
    # stops daemon threads for good at exit: the exit handler lets the flush
    # finish first, and closing at exit waits for nothing.
    run_py(
        """
import sys, time
from persistdict import PersistDict
d = PersistDict(sys.argv[1])
keys = [f"k{i}" for i in range(100_000)]
d.update(dict.fromkeys(keys, 1))
started = time.time()
for k in keys:
    d[k]
time.sleep(max(0.0, 1.05 - (time.time() - started)))
""",
        str(store_path),
        timeout=60,
    )
    with PersistDict(store_path) as d:
        for i in range(0, 100_000, 997):
            meta = d.metadata(f"k{i}")
            assert meta.atime > meta.ctime  # the read was recorded


def test_insertion_order_follows_commits_of_two_processes(store_path: Path) -> None:
    # Two processes add keys in turn: the store's order is the order of their
    # commits, whatever each process remembers of the places it gave.
    import subprocess

    d = PersistDict(store_path)
    d["p-start"] = 0
    src = str(Path(__file__).resolve().parents[1] / "src")
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from persistdict import PersistDict\n"
            "d = PersistDict(sys.argv[1])\n"
            "for line in sys.stdin:\n"
            "    d.update(dict.fromkeys(line.split(), 1))\n"
            "    print('ok', flush=True)\n",
            str(store_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": src},
    )
    assert child.stdin is not None
    assert child.stdout is not None
    expected = ["p-start"]
    for i in range(20):
        keys = [f"c{i}"] if i % 3 else [f"c{i}a", f"c{i}b"]  # one key, or two
        child.stdin.write(" ".join(keys) + "\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "ok"
        expected += keys
        d[f"p{i}"] = i
        expected.append(f"p{i}")
    child.stdin.close()
    assert child.wait(timeout=30) == 0
    child.stdout.close()
    assert list(d) == expected
    assert list(reversed(d)) == expected[::-1]
    d.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_threads_of_a_forked_child_start_at_once(store_path: Path, run_py: Any) -> None:
    # The child's first use reopens the store; its other threads wait for that
    # at the gate instead of using the inherited environment while it closes.
    out = run_py(
        """
import os, sys, threading
from persistdict import PersistDict
d = PersistDict(sys.argv[1])
d.update({f"k{i}": i for i in range(100)})
for _ in range(3):
    for i in range(100):
        d[f"k{i}"]
failed = 0
for trial in range(20):
    pid = os.fork()
    if pid == 0:
        errors = []
        def reader(n):
            try:
                for j in range(50):
                    assert d[f"k{(j + n) % 100}"] == (j + n) % 100
                if n == 0:
                    d[f"child{trial}"] = trial
            except BaseException as exc:
                errors.append(repr(exc))
        threads = [threading.Thread(target=reader, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        os._exit(1 if errors else 0)
    _, status = os.waitpid(pid, 0)
    failed += status != 0
print(failed, sum(1 for k in d if k.startswith("child")))
""",
        str(store_path),
        timeout=120,
    ).stdout.split()
    assert out == ["0", "20"]


READ_INSIDE_A_WRITE = """
import sys, time
import persistdict._env as E
E.ATIME_FLUSH_SECONDS = 0.01
E.INLINE_FLUSH_MIN = 1
E.IDLE_FLUSH_GRACE = 60.0  # the batch waits for a read to write it
from persistdict import PersistDict
d = PersistDict(sys.argv[1], cache_size=0)
d["other"] = 1
calls = []
class Key:
    # Pickled twice to find its entry, then twice again inside the write
    # transaction (its original, kept for keys()): there, it reads the store.
    def __reduce__(self):
        calls.append(1)
        if len(calls) > 2:
            assert d["other"] == 1
        return (Key, ())
    def __eq__(self, other):
        return type(other) is Key
    def __hash__(self):
        return 1
d["other"]
deadline = time.monotonic() + 10
while not d._env._flush_wanted and time.monotonic() < deadline:
    time.sleep(0.005)
assert d._env._flush_wanted
d[Key()] = 2
print(len(calls) > 2, d._env._flush_wanted)
"""


def test_a_read_inside_a_write_of_the_same_thread_does_not_write_access_times(
    store_path: Path, run_py: Any
) -> None:
    # User code that runs inside a write transaction (here a key's __reduce__)
    # and reads the same store: that read must not try to write the pending
    # access times in this thread (LMDB's write lock is not recursive; py-lmdb
    # refuses, and the batch was lost): the batch stays for later.
    out = run_py(READ_INSIDE_A_WRITE, str(store_path), timeout=30).stdout
    assert out.split() == ["True", "True"]
