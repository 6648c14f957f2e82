"""What a set costs at the LMDB level for a given store layout (the floor of a schema).

    python benchmarks/floor_schema.py [--quick]

PersistDict (store format 4) writes an entry as one row, its metadata and its
value together, in LMDB's main database; a new key also puts its place in the
insertion order, in the main database too (key 0xff + place: the database's last
keys, appended), in the same transaction. This script times, with the same
interleaving as the durable tables of bench_store, raw py-lmdb transactions that
do exactly that much and no Python work besides, next to the one-put transaction
of the baseline, to the layouts of formats 3 (the places in a named database) and
2 (the rows too), and to PersistDict itself (new keys, and overwrites of existing
keys). The gap between a layout's row and the baseline is what no Python
optimisation can win back without changing the layout: a dict keeps its insertion
order, so a new key costs two rows in any layout that can list the keys in that
order without sorting them. It also times reads done by hand on PersistDict's own
files (the floor of ``get`` and of iteration).
"""

from __future__ import annotations

import argparse
import os
import pickle
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import (
    Entry,
    Report,
    Stepper,
    Unavailable,
    run_interleaved,
    run_section,
    run_standalone,
    timed,
)

SMALL = {"id": 1, "name": "x" * 60, "ok": True, "tags": ["a", "b"]}
BIG = os.urandom(100_000)  # as bench_store's 100 KB value
_NO_GLOBALS = (bytes, str, int, float, bool, type(None))  # pickles without __main__
HEADER = b"\x00" * 44  # PersistDict's row header (35 bytes) and record check (9)
_u64 = struct.Struct(">Q")


def layout(
    path: Path, dbs: list[bytes | None], *, sync: bool, value: Any = SMALL
) -> Callable[[str], None]:
    """A setter that puts, in one transaction, the pickle alone in the main
    database (``dbs`` empty: the baseline), or one row per entry of ``dbs`` (None:
    the main database, else a named one): the first a row of the entry's size,
    the second a place in the insertion order (in the main database, keyed
    0xff + place and appended, as format 4 has it). Options by position, as PersistDict
    passes them (py-lmdb parses keyword arguments slowly)."""
    import lmdb

    env = lmdb.open(
        str(path), map_size=1 << 34, sync=sync, max_dbs=8, max_readers=1024, mode=0o700
    )
    with env.begin(write=True) as txn:
        handles = [env.open_db(n, txn=txn) if n else None for n in dbs]
    counter = [0]

    def set_(key: str) -> None:
        encoded = b"\x01" + key.encode()
        payload = pickle.dumps(value, protocol=5)
        with env.begin(None, None, True) as txn:
            if not handles:
                txn.put(encoded, payload)
                return
            counter[0] += 1
            place = _u64.pack(counter[0])
            if len(handles) > 1 and handles[1] is None:
                place = b"\xff" + place
            rows = [(encoded, HEADER + payload), (place, encoded)]
            for db, (k, v) in zip(handles, rows, strict=False):
                # (append: the places are their database's last keys)
                txn.put(k, v, True, True, k is place, db)

    return set_


def required_setter(
    path: Path, *, sync: bool, value: Any = SMALL
) -> Callable[[str], None]:
    """``required_writer``'s setter, storing ``value``."""
    return required_writer(path, sync=sync, value=value)[0]


def required_writer(
    path: Path, *, sync: bool, value: Any = SMALL
) -> tuple[Callable[..., None], Callable[[], None]]:
    """A setter ``set_(key, value=value)`` that does, by hand, every step
    PersistDict's design requires of
    ``d[key] = value`` and nothing else: the pickle and its search for
    ``__main__`` (such a value is written with cloudpickle), the time (the entry's
    creation and write times), the gate token (no resize or fork while a
    transaction is open), a look for the row it replaces (a dict keeps a key's
    first object and its place), the transaction's id (the next insertion place
    follows the last transaction's; the memory layer learns the commit), the
    checksum, the row's header, the row and, for a new key, its place (appended),
    the commit, and the id of the last commit read from the lock file (whether the
    commit directly followed the one the memory layer knew). What PersistDict
    does on top: the checks of a handle's options (closed, read-only, key
    serializer, long keys, expiration, secret, memory layer), the calls."""
    import mmap

    import lmdb
    import xxhash

    env = lmdb.open(
        str(path), map_size=1 << 34, sync=sync, max_dbs=8, max_readers=1024, mode=0o700
    )
    header = struct.Struct("<BQddIHI").pack
    pack_time = struct.Struct("<d").pack
    xxh = xxhash.xxh3_64_digest
    with env.begin(write=True) as txn:
        txn.put(b"\x00", b"")  # a first commit: the lock file holds an id
    with open(path / "lock.mdb", "rb") as lock:
        mapped = mmap.mmap(lock.fileno(), 0, access=mmap.ACCESS_READ)
    read_u64 = struct.Struct("=Q").unpack_from
    tokens: list[None] = []
    seq = [0]

    def set_(key: str, value: Any = value) -> None:
        encoded = b"\x01" + key.encode()
        payload = pickle.dumps(value, protocol=5)
        if type(value) not in _NO_GLOBALS and payload.find(b"__main__") >= 0:
            raise ValueError("__main__")
        now = time.time()
        tokens.append(None)
        txn = env.begin(None, None, True, True)
        try:
            row = txn.get(encoded)
            txn_id = txn.id()
            check = b"\x00" + xxh(payload, len(encoded))
            if row is None:
                seq[0] += 1
                place = b"\xff" + _u64.pack(seq[0])
                txn.put(place, encoded, True, True, True)
                new_row = b"".join(
                    (header(0, seq[0], now, now, 0, 0, 0), check, payload)
                )
            else:
                new_row = b"".join(
                    (row[:17], pack_time(now), row[25:35], check, payload)
                )
            txn.put(encoded, new_row, True, True, False)
            txn.commit()
        except BaseException:
            txn.abort()
            raise
        finally:
            tokens.pop()
        if read_u64(mapped, 48)[0] < txn_id:  # (x86_64's offset of the txnid)
            raise ValueError("not committed")

    return set_, env.close


def persistdict_setter(
    path: Path, *, sync: bool, value: Any = SMALL
) -> tuple[Callable[[str], None], Callable[[list[str]], None]]:
    """A setter of a PersistDict, and a filler (one transaction) of the same."""
    try:
        from persistdict import PersistDict
    except ImportError as exc:
        raise Unavailable(f"persistdict not importable ({exc})") from None
    d: Any = PersistDict(path, durable=sync)
    return (lambda key: d.__setitem__(key, value)), (
        lambda keys: d.update(dict.fromkeys(keys, value))
    )


def stepper(
    name: str, set_: Callable[[str], None], fill: Callable[[list[str]], None] | None
) -> Stepper:
    """Timed sets of new keys, or (with ``fill``, which stores them untimed
    first) of existing ones."""
    keys: list[str] = []
    clock = time.perf_counter

    def prepare(r: int, n: int) -> None:
        keys[:] = [f"{name}{r}-{i:06d}" for i in range(n)]
        if fill is not None:
            fill(keys)

    def step(i: int) -> float:
        k = keys[i]
        t0 = clock()
        set_(k)
        return clock() - t0

    return Stepper(name, prepare, step, "1 put, main db")


def run(report: Report, quick: bool, tmp: Path) -> None:
    rounds, durable_ops, fast_ops = (3, 30, 500) if quick else (7, 150, 3000)
    all_layouts: list[tuple[str, list[bytes | None]]] = [
        ("1 put, main db", []),
        ("1 row, main db (format 3, 4)", [None]),
        ("2 rows, main db (format 4)", [None, None]),
        ("2 rows, main + order (format 3)", [None, b"order"]),
        ("1 row, named db (format 2)", [b"values"]),
        ("2 rows, 2 named dbs (format 2)", [b"values", b"order"]),
    ]
    for sync, ops, value, tag, what in (
        (True, durable_ops, SMALL, "sync", "a small value"),
        (False, fast_ops, SMALL, "nosync", "a small value"),
        (False, fast_ops // 5, BIG, "100 KB nosync", "a 100 KB value"),
    ):
        # (100 KB: the layouts of format 4 only)
        layouts = all_layouts if value is SMALL else all_layouts[:3]
        where = tag.replace(" ", "-")
        steppers = [
            stepper(
                name, layout(tmp / f"l{i}-{where}", dbs, sync=sync, value=value), None
            )
            for i, (name, dbs) in enumerate(layouts)
        ]
        required = required_setter(tmp / f"req-{where}", sync=sync, value=value)
        steppers.append(stepper("every required step, new keys", required, None))
        required = required_setter(tmp / f"req-over-{where}", sync=sync, value=value)
        steppers.append(
            stepper(
                "every required step, overwrites",
                required,
                lambda keys, set_=required: [set_(k) for k in keys],  # type: ignore[misc]
            )
        )
        skipped = {}
        try:
            set_, fill = persistdict_setter(tmp / f"pd-{where}", sync=sync, value=value)
            steppers.append(stepper("persistdict, new keys", set_, None))
            set_, fill = persistdict_setter(
                tmp / f"pd-over-{where}", sync=sync, value=value
            )
            steppers.append(stepper("persistdict, overwrites", set_, fill))
        except Unavailable as exc:
            skipped["persistdict"] = str(exc)
        report.add(
            run_interleaved(
                f"floor set {tag}",
                f"set of {what}, sync={sync}: raw py-lmdb layouts vs"
                " PersistDict, single operations in turn",
                steppers,
                rounds,
                ops,
                skipped,
            )
        )


def loop_floors(report: Report, quick: bool, tmp: Path) -> None:
    """Sets without fsync in a loop, as bench_store times them (a batch of
    operations per round, the systems rotating): raw py-lmdb, every step the
    design requires done by hand (``required_setter``), PersistDict; for new
    and for existing keys, small and 100 KB values, each against raw py-lmdb
    doing the same. The by-hand row is the floor of bench_store's
    ``durable=False`` targets."""
    import lmdb

    rounds = 3 if quick else 15
    for value, kind, n in ((SMALL, "small", 2000), (BIG, "100 KB", 200)):
        if quick:
            n //= 4
        for existing in (False, True):
            what = "existing" if existing else "new"
            where = f"{kind}-{what}".replace(" ", "")
            raw = lmdb.open(
                str(tmp / f"loop-raw-{where}"),
                map_size=1 << 34,
                sync=False,
                max_readers=1024,
                mode=0o700,
            )

            def raw_set(key: str, env: Any = raw, value: Any = value) -> None:
                with env.begin(write=True) as txn:
                    txn.put(key.encode(), pickle.dumps(value, protocol=5))

            path = tmp / f"loop-req-{where}"
            path.mkdir()
            setters = [
                ("lmdb-raw-nosync", raw_set),
                ("every required step", required_setter(path, sync=False, value=value)),
            ]
            try:
                pd_set, _ = persistdict_setter(
                    tmp / f"loop-pd-{where}", sync=False, value=value
                )
                setters.append(("persistdict-nodur", pd_set))
            except Unavailable as exc:
                report.emit(f"persistdict skipped: {exc}\n")

            def entry(
                name: str, set_: Callable[[str], None], n: int = n, old: bool = existing
            ) -> Entry:
                def run_round(r: int) -> float:
                    keys = [f"{name}{r}-{i:06d}" for i in range(n)]
                    if old:
                        for k in keys:  # untimed: the keys to overwrite
                            set_(k)
                    return timed(lambda: [set_(k) for k in keys]) / n

                return Entry(name, run_round, "lmdb-raw-nosync")

            report.add(
                run_section(
                    f"floor loop {where}",
                    f"d[k] = v of {what} keys, {kind} values, without fsync, in a"
                    f" loop of {n} a round: raw py-lmdb, every step the design"
                    " requires by hand, PersistDict",
                    [entry(name, set_) for name, set_ in setters],
                    rounds,
                )
            )
            raw.close()


def required_read(
    lmdb_env: Any, env: Any
) -> tuple[Callable[[str], object], dict[bytes, float]]:
    """Every step a read of PersistDict's design requires, done by hand on its
    files (``lmdb_env``, the environment of an open store ``env``), as a
    function called per read, and the dict it records access times in: the gate
    token (no map resize or fork while a transaction is open), one transaction
    ended by abort(), the access time (the store's clock kept for the key, as
    PersistDict records it), the row's flags and record flag, the checksum, the
    unpickling. What PersistDict does on top: the checks of a handle's options
    (closed, key serializer, long keys, expiration, memory layer, read-only,
    record size). Also used by instructions.py."""
    import xxhash

    pending: dict[bytes, float] = {}
    tokens: list[None] = []  # as PersistDict's gate (Env._tokens)
    begin = lmdb_env.begin
    xxh = xxhash.xxh3_64_digest
    loads = pickle.loads

    def get(k: str) -> object:
        encoded = b"\x01" + k.encode()
        tokens.append(None)
        txn = begin()
        try:
            row = txn.get(encoded)
        finally:
            txn.abort()
            tokens.pop()
        if encoded not in pending:
            pending[encoded] = env.clock
        if row[0] or row[35]:
            raise ValueError("flags")
        payload = row[44:]
        if row[36:44] != xxh(payload, len(encoded)):
            raise ValueError("checksum")
        return loads(payload)

    return get, pending


def read_floors(report: Report, quick: bool, tmp: Path) -> None:
    """Reads of a PersistDict store done by hand in raw py-lmdb (the layout's
    floor for ``get`` and iteration) next to raw py-lmdb and PersistDict."""
    import random

    import lmdb
    import xxhash

    try:
        from persistdict import PersistDict
    except ImportError as exc:
        report.emit(f"read floors skipped: persistdict not importable ({exc})\n")
        return
    rounds, ops = (3, 500) if quick else (7, 2000)
    keys = [f"k{i:07d}" for i in range(10_000)]
    order = keys[:]
    random.Random(5).shuffle(order)
    sample = order[:ops]

    raw = lmdb.open(str(tmp / "raw-read"), map_size=1 << 30, mode=0o700)
    with raw.begin(write=True) as txn:
        for k in keys:
            txn.put(k.encode(), pickle.dumps(SMALL, protocol=5))
    pd_path = tmp / "pd-read"
    d: Any = PersistDict(pd_path, cache_size=0)
    d.update(dict.fromkeys(keys, SMALL))
    # the same files, read by hand (no PersistDict code): the rows and the
    # insertion order (keys 0xff + place, last) are in the main database
    pd_env = d._env.env  # one environment per path and process
    loads = pickle.loads
    xxh = xxhash.xxh3_64_digest

    def raw_gets() -> None:
        for k in sample:
            with raw.begin() as txn:
                loads(txn.get(k.encode()))

    # A row: a 35-byte header (nothing follows it for a str key), then the
    # record: a flag byte, the 8-byte checksum, the pickle.
    def layout_gets() -> None:
        for k in sample:
            encoded = b"\x01" + k.encode()
            with pd_env.begin() as txn:
                row = txn.get(encoded)
            view = memoryview(row)
            if view[36:44] != xxh(view[44:], len(encoded)):
                raise ValueError("checksum")
            loads(view[44:])

    def layout_gets_bytes() -> None:
        for k in sample:
            encoded = b"\x01" + k.encode()
            with pd_env.begin() as txn:
                row = txn.get(encoded)
            payload = row[44:]
            if row[36:44] != xxh(payload, len(encoded)):
                raise ValueError("checksum")
            loads(payload)

    pending: dict[bytes, float] = {}  # as PersistDict records a read's time
    env = d._env  # its clock: the time a read records (advanced by a thread)

    def layout_gets_atime() -> None:
        pending.clear()
        for k in sample:
            encoded = b"\x01" + k.encode()
            with pd_env.begin() as txn:
                row = txn.get(encoded)
            if encoded not in pending:
                pending[encoded] = env.clock
            payload = row[44:]
            if row[36:44] != xxh(payload, len(encoded)):
                raise ValueError("checksum")
            loads(payload)

    # Raw py-lmdb and every required step as functions called per read, as
    # PersistDict's bound __getitem__ is (and as bench_store calls raw
    # py-lmdb): the like-for-like floor.
    def raw_get(k: str) -> object:
        with raw.begin() as txn:
            data = txn.get(k.encode())
        return loads(data)

    required_step, required_pending = required_read(pd_env, env)

    def raw_calls() -> None:
        for k in sample:
            raw_get(k)

    def required_calls() -> None:
        required_pending.clear()
        for k in sample:
            required_step(k)

    def layout_gets_unchecked() -> None:
        for k in sample:
            with pd_env.begin() as txn:
                row = txn.get(b"\x01" + k.encode())
            loads(memoryview(row)[44:])

    def pd_gets() -> None:
        get = d.__getitem__  # (as bench_store: the bound method, called per read)
        for k in sample:
            get(k)

    def raw_iter() -> None:
        with raw.begin() as txn:
            [k.decode() for k in txn.cursor().iternext(values=False)]

    def layout_iter() -> None:
        with pd_env.begin() as txn:
            cursor = txn.cursor()
            cursor.set_range(b"\xff")  # the places, to the end
            [v[1:].decode() for v in cursor.iternext(False, True)]

    def pd_iter() -> None:
        list(d)

    def entry(name: str, fn: Callable[[], None], n: int, base: str) -> Entry:
        return Entry(name, lambda r: timed(fn) / n, base)

    report.add(
        run_section(
            "floor get",
            f"get of {ops} random keys of 10000 (no memory layer): raw py-lmdb, the"
            " PersistDict layout read by hand (the row, its checksum, loads of a"
            " memoryview or of a bytes slice; then also recording the read's time"
            " in a dict, as PersistDict does for access times); then, each a"
            " function called per read and compared with raw py-lmdb so called"
            " (as bench_store calls it): every step the design requires (also"
            " the gate token, begin/abort, the flags: floor_schema.required_read),"
            " and PersistDict(cache_size=0)'s bound __getitem__",
            [
                entry("lmdb-raw", raw_gets, ops, "lmdb-raw"),
                entry("layout by hand", layout_gets, ops, "lmdb-raw"),
                entry("layout, bytes slices", layout_gets_bytes, ops, "lmdb-raw"),
                entry("layout + access time", layout_gets_atime, ops, "lmdb-raw"),
                entry("layout, no checksum", layout_gets_unchecked, ops, "lmdb-raw"),
                entry("lmdb-raw, a call", raw_calls, ops, "lmdb-raw, a call"),
                entry(
                    "every required step, a call",
                    required_calls,
                    ops,
                    "lmdb-raw, a call",
                ),
                entry("persistdict cache_size=0", pd_gets, ops, "lmdb-raw, a call"),
            ],
            rounds,
        )
    )
    report.add(
        run_section(
            "floor iterate",
            "list of all 10000 keys: raw py-lmdb keys, the PersistDict layout by hand"
            " (the places' values are the ids: decode them), PersistDict list(d)",
            [
                entry("lmdb-raw", raw_iter, 1, "lmdb-raw"),
                entry("layout by hand", layout_iter, 1, "lmdb-raw"),
                entry("persistdict", pd_iter, 1, "lmdb-raw"),
            ],
            rounds,
        )
    )
    d.close()
    raw.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tmp", default=None, help="scratch directory")
    args = parser.parse_args(argv)
    return run_standalone([run, loop_floors, read_floors], args.quick, args.tmp)


if __name__ == "__main__":
    raise SystemExit(main())
