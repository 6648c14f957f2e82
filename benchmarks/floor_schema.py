"""What a set costs at the LMDB level for a given store layout (the floor of a schema).

    python benchmarks/floor_schema.py [--quick]

PersistDict writes a value, its metadata, its insertion-order entry and a data
generation counter: four puts in four named databases, one transaction. This
script times, with the same interleaving as the durable tables of bench_store,
raw py-lmdb transactions that do exactly that much and no Python work besides,
next to the one-put transaction of the baseline and to PersistDict itself. The gap
between a layout's row and the baseline is what no Python optimisation can win
back without changing the layout.
"""

from __future__ import annotations

import argparse
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
META = b"\x00" * 37  # the size of PersistDict's metadata header
_u64 = struct.Struct(">Q")


def layout(path: Path, dbs: int, *, sync: bool) -> Callable[[str], None]:
    """A setter that puts into ``dbs`` named databases (0: the main database)."""
    import lmdb

    env = lmdb.open(
        str(path), map_size=1 << 34, sync=sync, max_dbs=8, max_readers=1024, mode=0o700
    )
    names = [b"values", b"meta", b"order", b"internal"][:dbs]
    with env.begin(write=True) as txn:
        handles = [env.open_db(n, txn=txn) for n in names]
    counter = [0]

    def set_(key: str) -> None:
        encoded = b"\x01" + key.encode()
        payload = pickle.dumps(SMALL, protocol=5)
        with env.begin(write=True) as txn:
            if not handles:
                txn.put(encoded, payload)
                return
            counter[0] += 1
            seq = _u64.pack(counter[0])
            rows = [(encoded, payload), (encoded, META), (seq, encoded), (b"gen", seq)]
            for db, (k, v) in zip(handles, rows, strict=False):
                txn.put(k, v, db=db)

    return set_


def persistdict_setter(path: Path, *, sync: bool) -> Callable[[str], None]:
    try:
        from persistdict import PersistDict
    except ImportError as exc:
        raise Unavailable(f"persistdict not importable ({exc})") from None
    d: Any = PersistDict(path, durable=sync)
    return lambda key: d.__setitem__(key, SMALL)


def stepper(name: str, set_: Callable[[str], None]) -> Stepper:
    keys: list[str] = []
    clock = time.perf_counter

    def prepare(r: int, n: int) -> None:
        keys[:] = [f"{name}{r}-{i:06d}" for i in range(n)]

    def step(i: int) -> float:
        k = keys[i]
        t0 = clock()
        set_(k)
        return clock() - t0

    return Stepper(name, prepare, step, "1 put, main db")


def run(report: Report, quick: bool, tmp: Path) -> None:
    rounds, durable_ops, fast_ops = (3, 30, 500) if quick else (7, 150, 3000)
    for sync, ops in ((True, durable_ops), (False, fast_ops)):
        tag = "sync" if sync else "nosync"
        steppers = [
            stepper("1 put, main db", layout(tmp / f"l0-{tag}", 0, sync=sync)),
            stepper("1 put, 1 named db", layout(tmp / f"l1-{tag}", 1, sync=sync)),
            stepper("2 puts, 2 named dbs", layout(tmp / f"l2-{tag}", 2, sync=sync)),
            stepper("3 puts, 3 named dbs", layout(tmp / f"l3-{tag}", 3, sync=sync)),
            stepper("4 puts, 4 named dbs", layout(tmp / f"l4-{tag}", 4, sync=sync)),
        ]
        skipped = {}
        try:
            steppers.append(
                stepper("persistdict", persistdict_setter(tmp / f"pd-{tag}", sync=sync))
            )
        except Unavailable as exc:
            skipped["persistdict"] = str(exc)
        report.add(
            run_interleaved(
                f"floor set {tag}",
                f"set of a small value, sync={sync}: raw py-lmdb layouts vs"
                " PersistDict, single operations in turn",
                steppers,
                rounds,
                ops,
                skipped,
            )
        )


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
    # the same files, opened a second time read-only by hand (no PersistDict code)
    pd_env = d._env.env  # one environment per path and process
    values_db = pd_env.open_db(b"values", create=False)
    order_db = pd_env.open_db(b"order", create=False)
    loads = pickle.loads
    xxh = xxhash.xxh3_64_digest

    def raw_gets() -> None:
        for k in sample:
            with raw.begin() as txn:
                loads(txn.get(k.encode()))

    def layout_gets() -> None:
        for k in sample:
            encoded = b"\x01" + k.encode()
            with pd_env.begin() as txn:
                record = txn.get(encoded, db=values_db)
            view = memoryview(record)
            if view[1:9] != xxh(view[9:], len(encoded)):
                raise ValueError("checksum")
            loads(view[9:])

    def layout_gets_bytes() -> None:
        for k in sample:
            encoded = b"\x01" + k.encode()
            with pd_env.begin() as txn:
                record = txn.get(encoded, db=values_db)
            payload = record[9:]
            if record[1:9] != xxh(payload, len(encoded)):
                raise ValueError("checksum")
            loads(payload)

    def layout_gets_unchecked() -> None:
        for k in sample:
            with pd_env.begin() as txn:
                record = txn.get(b"\x01" + k.encode(), db=values_db)
            loads(memoryview(record)[9:])

    def pd_gets() -> None:
        for k in sample:
            d[k]

    def raw_iter() -> None:
        with raw.begin() as txn:
            [k.decode() for k in txn.cursor().iternext(values=False)]

    def layout_iter() -> None:
        with pd_env.begin() as txn:
            cursor = txn.cursor(db=order_db)
            [v[1:].decode() for v in cursor.iternext(keys=False, values=True)]

    def pd_iter() -> None:
        list(d)

    def entry(name: str, fn: Callable[[], None], n: int, base: str) -> Entry:
        return Entry(name, lambda r: timed(fn) / n, base)

    report.add(
        run_section(
            "floor get",
            f"get of {ops} random keys of 10000 (no memory layer): raw py-lmdb, the"
            " PersistDict layout read by hand (values db + checksum + loads of a"
            " memoryview), PersistDict(cache_size=0)",
            [
                entry("lmdb-raw", raw_gets, ops, "lmdb-raw"),
                entry("layout by hand", layout_gets, ops, "lmdb-raw"),
                entry("layout, bytes slices", layout_gets_bytes, ops, "lmdb-raw"),
                entry("layout, no checksum", layout_gets_unchecked, ops, "lmdb-raw"),
                entry("persistdict cache_size=0", pd_gets, ops, "lmdb-raw"),
            ],
            rounds,
        )
    )
    report.add(
        run_section(
            "floor iterate",
            "list of all 10000 keys: raw py-lmdb keys, the PersistDict layout by hand"
            " (order db values are the ids: decode them), PersistDict list(d)",
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
    return run_standalone([run, read_floors], args.quick, args.tmp)


if __name__ == "__main__":
    raise SystemExit(main())
