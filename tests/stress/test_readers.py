"""Long-lived readers, and the reader slots of killed processes."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

from persistdict import PersistDict

MIB = 1 << 20


def test_held_iterators_neither_grow_the_file_nor_block_writers(
    tmp_path: Path, stress: Any, workers: list[Any]
) -> None:
    path = tmp_path / "store"
    entries, rounds = 2000, 10
    with PersistDict(path) as d:
        d.update({f"k{i}": (0, b"v" * 2000) for i in range(entries)})
    before = (path / "data.mdb").stat().st_size
    started = time.monotonic()
    d = PersistDict(path)
    mine = iter(d.items())
    first = [next(mine)[0] for _ in range(10)]  # held here, mid-iteration
    other = stress.start("held_iterator", path)  # and in another process
    workers.append(other)
    assert other.stdout.readline().strip() == "holding"
    rewrote = stress.run("rewriter", path, rounds, timeout=120)  # never blocked
    rest = [key for key, _value in mine]
    other.stdin.write("go\n")
    other.stdin.flush()
    theirs = json.loads(stress.finish(other, 60).splitlines()[-1])
    d.close()
    after = (path / "data.mdb").stat().st_size
    stress.report(
        "held iterators while a writer rewrites everything",
        seconds=round(time.monotonic() - started, 1),
        rewritten_values=rewrote["rewritten"],
        rewritten_mib=rewrote["rewritten"] * 2000 // MIB,
        data_mdb_mib_before=round(before / MIB, 1),
        data_mdb_mib_after=round(after / MIB, 1),
        iterated_here=len(first + rest),
        iterated_there=theirs["seen"],
    )
    assert len(first + rest) == len(set(first + rest)) == entries
    assert theirs == {"seen": entries, "distinct": entries}
    # 38 MiB were written over a 4 MiB store: pinned snapshots would keep them all.
    assert after <= 3 * before


def test_reader_slots_of_killed_processes_are_reclaimed(
    tmp_path: Path, stress: Any, workers: list[Any]
) -> None:
    path = tmp_path / "store"
    d = PersistDict(path)
    d["k"] = "v"
    hog = stress.start("slot_hog", path, 0)
    workers.append(hog)
    taken = int(hog.stdout.readline())
    hog.send_signal(signal.SIGKILL)
    hog.communicate(timeout=30)
    # The table is full of a dead pid's slots: this process's next read meets
    # ReadersFullError, runs reader_check, and goes on.
    read_here = d["k"]
    d["k2"] = "v2"
    d.close()
    # And a second round, with nobody holding the store: the next open reclaims.
    hog = stress.start("slot_hog", path, 0)
    workers.append(hog)
    taken_again = int(hog.stdout.readline())
    hog.send_signal(signal.SIGKILL)
    hog.communicate(timeout=30)
    fresh = stress.run("open_damaged", path)[str(path)]
    stress.report(
        "stale reader slots",
        slots_taken_by_killed=[taken, taken_again],
        read_after=read_here,
        fresh_open=fresh,
    )
    assert taken >= 1000
    assert taken_again >= 1000
    assert read_here == "v"
    assert fresh == ["opened", 2]


def test_a_killed_readers_snapshot_does_not_grow_a_long_lived_writers_file(
    tmp_path: Path, stress: Any, workers: list[Any]
) -> None:
    path = tmp_path / "store"
    d = PersistDict(path, durable=False)
    d["big"] = b"0" * MIB
    hog = stress.start("slot_hog", path, 1)  # one reader, killed mid-read
    workers.append(hog)
    assert int(hog.stdout.readline()) == 1
    hog.send_signal(signal.SIGKILL)
    hog.communicate(timeout=30)
    for i in range(150):
        d["big"] = bytes([i % 256]) * MIB
    size = (path / "data.mdb").stat().st_size
    d.close()
    stress.report(
        "overwrites under a killed reader's snapshot",
        overwritten_mib=150,
        data_mdb_mib=round(size / MIB, 1),
    )
    # Without the dead snapshot it stays ~3 MiB; pinned, it is ~150 MiB.
    assert size < 100 * MIB
