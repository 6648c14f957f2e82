"""Garbage, truncated and empty data files, a dead writer's lock file, a full disk.

Each store is opened in a separate process, so a SIGBUS or SIGSEGV would show
as a killed worker (the ``finish`` helper fails the test) instead of killing
pytest.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from persistdict import PersistDict, PersistDictError

PAGE = 4096


def _make_store(path: Path, entries: int = 2000) -> dict[str, bytes]:
    rng = random.Random(1)
    contents = {
        f"key:{i}": rng.randbytes(rng.randint(10, 3000)) for i in range(entries)
    }
    with PersistDict(path) as d:
        d.update(contents)
    return contents


def test_garbage_truncated_and_empty_data_files(tmp_path: Path, stress: Any) -> None:
    original = tmp_path / "original"
    contents = _make_store(original)
    size = (original / "data.mdb").stat().st_size
    cases: dict[str, Path] = {}
    rng = random.Random(2)
    for garbage in (1, 100, PAGE, 3 * PAGE, 100_000):
        store = tmp_path / f"garbage-{garbage}"
        store.mkdir(mode=0o700)
        (store / "data.mdb").write_bytes(rng.randbytes(garbage))
        cases[f"garbage data.mdb {garbage} B"] = store
    cuts = [
        1,
        100,
        PAGE - 1,
        PAGE,
        PAGE + 1,
        2 * PAGE,
        3 * PAGE,
        size // 2,
        size - PAGE,
        size - 1,
    ]
    for cut in cuts:
        store = tmp_path / f"cut-{cut}"
        shutil.copytree(original, store)
        os.truncate(store / "data.mdb", cut)
        cases[f"truncated to {cut} of {size} B"] = store
    for page in (0, 1):  # both meta pages zeroed
        store = tmp_path / f"zeroed-meta-{page}"
        shutil.copytree(original, store)
        with (store / "data.mdb").open("r+b") as fh:
            fh.seek(page * PAGE)
            fh.write(b"\x00" * PAGE)
        cases[f"meta page {page} zeroed"] = store
    empty = tmp_path / "empty"
    shutil.copytree(original, empty)
    (empty / "data.mdb").write_bytes(b"")
    cases["zero-length data.mdb"] = empty
    bad_lock = tmp_path / "garbage-lock"
    shutil.copytree(original, bad_lock)
    (bad_lock / "lock.mdb").write_bytes(rng.randbytes(8192))
    cases["lock.mdb of garbage"] = bad_lock

    by_path = stress.run("open_damaged", *cases.values(), timeout=120)
    outcomes = {name: by_path[str(store)] for name, store in cases.items()}
    stress.report(
        "damaged data files",
        cases=len(outcomes),
        crashed=0,
        outcomes={
            name: out[0] if out[0] != "opened" else f"opened({out[1]})"
            for name, out in outcomes.items()
        },
    )
    for name, (outcome, detail) in outcomes.items():
        if name.startswith(("garbage ", "truncated")):
            assert outcome == "StoreCorruptedError", (name, detail)
            assert str(cases[name]) in str(detail), detail  # says which store
        elif name.startswith("meta page"):
            # LMDB keeps two meta pages: with one of them gone the other may
            # still describe a whole store. Either it opens whole or is refused.
            assert (outcome, detail) in (("opened", len(contents)),) or (
                outcome == "StoreCorruptedError"
            ), (name, outcome, detail)
    # An empty data file is what LMDB itself leaves before its first commit: it
    # opens as an empty store (nothing was intact there to keep).
    assert outcomes["zero-length data.mdb"] == ["opened", 0]
    # lock.mdb holds no data: garbage there is rebuilt, every entry is intact.
    assert outcomes["lock.mdb of garbage"] == ["opened", len(contents)]
    with PersistDict(bad_lock) as d:
        assert dict(d.items()) == contents
    # The damaged copies never touched the original.
    with PersistDict(original) as d:
        assert dict(d.items()) == contents


def test_flipped_bytes_in_a_value_are_caught_and_the_rest_is_intact(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store"
    marker = b"FIND-ME-" * 8
    with PersistDict(path) as d:
        d.update({f"other:{i}": i for i in range(100)})
        d["victim"] = marker
    raw = bytearray((path / "data.mdb").read_bytes())
    at = raw.find(marker)
    assert at > 0
    while at >= 0:  # copy-on-write leaves older copies on free pages: edit all
        raw[at + 3] ^= 0x01
        at = raw.find(marker, at + 1)
    (path / "data.mdb").write_bytes(bytes(raw))
    with PersistDict(path) as d:
        with pytest.raises(PersistDictError, match="checksum"):
            d["victim"]
        assert all(d[f"other:{i}"] == i for i in range(100))


def test_lock_file_of_a_writer_killed_inside_a_write_transaction(
    tmp_path: Path, stress: Any, workers: list[Any]
) -> None:
    path = tmp_path / "store"
    contents = _make_store(path, 300)
    # A process that has the store open while the other one dies holding the
    # write mutex (LMDB's robust mutex must recover), ...
    alive = stress.start("waiting_writer", path)
    workers.append(alive)
    assert alive.stdout.readline().strip() == "ready"
    holder = stress.start("dead_lock_holder", path)
    workers.append(holder)
    assert holder.stdout.readline().strip() == "holding"
    holder.send_signal(signal.SIGKILL)
    holder.communicate(timeout=30)
    alive.stdin.write("go\n")
    alive.stdin.flush()
    after = json.loads(stress.finish(alive, 60).splitlines()[-1])
    # ... and a process that opens it afresh once nobody has it open.
    fresh = stress.run("open_damaged", path)[str(path)]
    with PersistDict(path) as d:
        intact = all(d[k] == v for k, v in contents.items())
        half = "half-written" in d
    stress.report(
        "lock file of a writer killed in a write transaction",
        live_process_wrote_after=after["ok"],
        fresh_open=fresh,
        intact=intact,
        half_written_visible=half,
    )
    assert after == {"before": 300, "ok": True, "len": 401}
    assert fresh == ["opened", 401]
    assert intact
    assert not half


def test_full_disk_rlimit_fsize(tmp_path: Path, stress: Any) -> None:
    path = tmp_path / "store"
    result = stress.run("fill_disk", path, 2_000_000, timeout=120)
    _judge_full_disk("RLIMIT_FSIZE 2 MB over the file", path, result, stress)


def test_full_disk_tiny_tmpfs(tmp_path: Path, stress: Any) -> None:
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        path = mount / "store"
        result = stress.run("fill_disk", path, 0, timeout=120)
        _judge_full_disk("tmpfs of 4 MiB", path, result, stress)
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def _judge_full_disk(
    name: str, path: Path, result: dict[str, Any], stress: Any
) -> None:
    kept = {k: bytes.fromhex(v) for k, v in result.pop("kept").items()}
    with PersistDict(path) as d:  # a fresh open after the failure
        reopened_intact = all(d[k] == v for k, v in kept.items())
        entries = len(d)
    stress.report(
        f"full disk ({name})",
        acknowledged=result["written"],
        lost=result["lost_acked"],
        error=result["error"],
        intact_after_error=result["intact_after_error"],
        recovered=result["recovered"],
        reopened_intact=reopened_intact,
        entries_after=entries,
    )
    assert result["error"], "the disk never filled up"
    assert result["lost_acked"] == 0
    assert result["intact_after_error"]
    assert result["recovered"] == "ok"
    assert reopened_intact


def test_full_disk_error_is_a_persistdict_error_naming_the_store(
    tmp_path: Path, stress: Any
) -> None:
    path = tmp_path / "store"
    result = stress.run("fill_disk", path, 1_000_000, timeout=120)
    kind, message = result["error"]
    assert kind.startswith("persistdict.")
    assert str(path) in message
