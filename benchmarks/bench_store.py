"""PersistDict against raw py-lmdb, diskcache, sqlitedict and shelve.

Run alone with ``python benchmarks/bench_store.py [--quick]``, or everything with
``python benchmarks/run.py``.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import stores
from harness import (
    Entry,
    Ops,
    Report,
    Stepper,
    Unavailable,
    run_interleaved,
    run_python,
    run_section,
    run_standalone,
    timed,
)
from stores import SPECS, Spec, Store, baseline_for, spec

SMALL = {"id": 1, "name": "x" * 60, "ok": True, "tags": ["a", "b"]}  # 118 B pickled
BIG = os.urandom(100_000)  # 100 KB, incompressible


@dataclass(frozen=True)
class Sizes:
    rounds: int
    durable_ops: int  # operations per round when each costs an fsync
    fast_ops: int  # operations per round otherwise
    big_durable_ops: int
    big_fast_ops: int
    read_keys: int  # entries in the store used by the read workloads
    big_keys: int
    fresh_keys: int  # entries in the store a fresh process opens
    fresh_runs: int
    scale: tuple[int, int]


FULL = Sizes(7, 150, 2000, 30, 200, 10_000, 300, 20_000, 7, (1_000, 100_000))
QUICK = Sizes(3, 30, 500, 10, 50, 10_000, 200, 5_000, 3, (1_000, 20_000))

# Systems of the read workloads: reads cost the same whatever the sync setting.
# The memory layer matters, so PersistDict appears with cache_size=0 (every read goes
# to LMDB) and with its default layer (128 entries, fewer than the keys read).
# Every step the design requires of a set, done by hand (stores.open_required),
# at each sync setting: the floor of the set and overwrite tables.
FLOOR_SYSTEMS = ("every required step", "every required step nosync")

READ_SYSTEMS: list[tuple[str, str, dict[str, Any]]] = [
    ("lmdb-raw", "lmdb-raw", {}),
    ("persistdict cache_size=0", "persistdict", {"cache_size": 0}),
    ("persistdict", "persistdict", {}),
    ("diskcache.Cache", "diskcache.Cache", {}),
    ("diskcache.Index", "diskcache.Index", {}),
    ("sqlitedict", "sqlitedict", {}),
    ("shelve", "shelve", {}),
]


def _open(spec_name: str, path: Path, options: dict[str, Any]) -> Store:
    if options:
        return stores.open_persistdict(path, **options)
    return stores.spec(spec_name).open(path)


def _loop(op: Callable[[str], object], keys: Sequence[str]) -> Callable[[], None]:
    def run() -> None:
        for k in keys:
            op(k)

    return run


class Opened:
    """Opens each system once in its own directory; remembers what was skipped."""

    def __init__(self, tmp: Path, tag: str) -> None:
        self.tmp = tmp
        self.tag = tag
        self.stores: dict[str, Store] = {}
        self.skipped: dict[str, str] = {}

    def open(self, label: str, spec_name: str, options: dict[str, Any]) -> Store | None:
        if label in self.skipped:
            return None
        if label not in self.stores:
            path = self.tmp / f"{self.tag}-{label.replace(' ', '_')}"
            try:
                self.stores[label] = _open(spec_name, path, options)
            except Unavailable as exc:
                self.skipped[label] = str(exc)
                return None
        return self.stores[label]

    def close(self) -> None:
        for s in self.stores.values():
            s.close()
        self.stores.clear()


class Cycle:
    """Hands out the next ``n`` keys of a list, wrapping around, round after round.

    Reading a list longer than the memory layer in turn means every read misses
    the layer, however many reads a round makes.
    """

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self.pos = 0

    def take(self, n: int) -> list[str]:
        out = [self.keys[(self.pos + i) % len(self.keys)] for i in range(n)]
        self.pos = (self.pos + n) % len(self.keys)
        return out


def _reads(
    op: Callable[[str], object], cycle: Cycle, ops: Ops
) -> Callable[[int], float]:
    def run(r: int) -> float:
        keys = cycle.take(ops.n)
        return timed(_loop(op, keys)) / len(keys)

    return run


# ---------------------------------------------------------------- writes


def write_sections(report: Report, sizes: Sizes, tmp: Path) -> None:
    for kind, value, dur_n, fast_n in (
        ("small (118 B)", SMALL, sizes.durable_ops, sizes.fast_ops),
        ("100 KB", BIG, sizes.big_durable_ops, sizes.big_fast_ops),
    ):
        opened = Opened(tmp, f"w{len(kind)}")
        # Every step of a set done by hand, beside the systems of the set and
        # overwrite tables: their floor, measured in the same rounds.
        floors = [spec(name) for name in FLOOR_SYSTEMS]
        durable = [s for s in SPECS + floors if s.durable]
        fast = [s for s in SPECS + floors if not s.durable]
        for s in SPECS + floors:
            opened.open(s.name, s.name, {})
        skipped_d = {k: v for k, v in opened.skipped.items() if spec(k).durable}
        skipped_f = {k: v for k, v in opened.skipped.items() if not spec(k).durable}
        live_d = [s for s in durable if s.name in opened.stores]
        live_f = [s for s in fast if s.name in opened.stores]

        # Durable writes: one operation of each system in turn (see run_interleaved)
        # "set" stores new keys, "overwrite" keys already stored.
        for op in ("set", "overwrite", "delete"):
            steppers = [
                _stepper(op, s, opened.stores[s.name], value, baseline_for(s))
                for s in live_d
                if op != "delete" or s not in floors
            ]
            report.add(
                run_interleaved(
                    f"{op} {kind}",
                    f"{op}, {kind} values, durable (fsync per commit): single"
                    " operations of each system in turn, vs raw py-lmdb sync=True"
                    + (" (keys already stored)" if op == "overwrite" else ""),
                    steppers,
                    sizes.rounds,
                    dur_n,
                    skipped_d,
                )
            )
        # Writes without fsync: CPU-bound, timed in batches
        set_entries: list[Entry] = []
        over_entries: list[Entry] = []
        del_entries: list[Entry] = []
        for s in live_f:
            store = opened.stores[s.name]
            for entries, existing in ((set_entries, False), (over_entries, True)):
                ops = Ops(fast_n)
                entries.append(
                    Entry(
                        s.name,
                        _set_round(store, value, ops, existing),
                        baseline_for(s),
                        s.sync_note,
                        ops=ops,
                    )
                )
            if s in floors:
                continue  # sets only
            ops = Ops(fast_n)
            del_entries.append(
                Entry(
                    s.name, _delete_round(store, value, ops), baseline_for(s), ops=ops
                )
            )
        for op, entries in (
            ("set", set_entries),
            ("overwrite", over_entries),
            ("delete", del_entries),
        ):
            report.add(
                run_section(
                    f"{op} {kind} nosync",
                    f"{op}, {kind} values, no fsync per commit: vs raw py-lmdb"
                    " sync=False",
                    entries,
                    sizes.rounds,
                    skipped_f,
                )
            )
        opened.close()


def _stepper(op: str, s: Spec, store: Store, value: Any, baseline: str) -> Stepper:
    keys: list[str] = []
    clock = time.perf_counter

    def prepare(r: int, n: int) -> None:
        keys[:] = [f"{op}{r}-{i:06d}" for i in range(n)]
        if op in ("delete", "overwrite"):
            store.fill(dict.fromkeys(keys, value))

    if op in ("set", "overwrite"):
        set_ = store.set

        def step(i: int) -> float:
            k = keys[i]
            t0 = clock()
            set_(k, value)
            return clock() - t0

    else:
        delete = store.delete

        def step(i: int) -> float:
            k = keys[i]
            t0 = clock()
            delete(k)
            return clock() - t0

    note = s.sync_note if op != "delete" else ""
    return Stepper(s.name, prepare, step, baseline, note)


def _set_round(
    store: Store, value: Any, ops: Ops, existing: bool
) -> Callable[[int], float]:
    """Timed sets of new keys, or (``existing``) of keys stored untimed first."""

    def run(r: int) -> float:
        keys = [f"{'over' if existing else 'set'}{r}-{i:06d}" for i in range(ops.n)]
        if existing:
            store.fill(dict.fromkeys(keys, value))
        set_ = store.set
        return timed(lambda: [set_(k, value) for k in keys]) / len(keys)

    return run


def _delete_round(store: Store, value: Any, ops: Ops) -> Callable[[int], float]:
    def run(r: int) -> float:
        keys = [f"del{r}-{i:06d}" for i in range(ops.n)]
        store.fill(dict.fromkeys(keys, value))
        return timed(_loop(store.delete, keys)) / len(keys)

    return run


# ---------------------------------------------------------------- reads


def read_sections(report: Report, sizes: Sizes, tmp: Path) -> None:
    rng = random.Random(42)
    n_keys = sizes.read_keys
    all_keys = [f"k{i:07d}" for i in range(n_keys)]
    shuffled = all_keys[:]
    rng.shuffle(shuffled)
    hot = all_keys[:100]
    n = sizes.fast_ops

    opened = Opened(tmp, "r")
    for label, spec_name, options in READ_SYSTEMS:
        store = opened.open(label, spec_name, options)
        if store is not None:
            store.fill(dict.fromkeys(all_keys, SMALL))
    live = [
        (label, opened.stores[label])
        for label, _, _ in READ_SYSTEMS
        if label in opened.stores
    ]

    def entries(make: Callable[[Store, Ops], Callable[[int], float]]) -> list[Entry]:
        out = []
        for label, s in live:
            ops = Ops(n)
            out.append(Entry(label, make(s, ops), "lmdb-raw", ops=ops))
        return out

    def cold(s: Store, ops: Ops) -> Callable[[int], float]:
        return _reads(s.get, Cycle(shuffled), ops)

    def warm(s: Store, ops: Ops) -> Callable[[int], float]:
        cycle = Cycle(hot)

        def run(r: int) -> float:
            for k in hot:  # load the memory layer, untimed
                s.get(k)
            keys = cycle.take(ops.n)
            return timed(_loop(s.get, keys)) / len(keys)

        return run

    def missing(s: Store, ops: Ops) -> Callable[[int], float]:
        return _reads(s.contains, Cycle([f"missing{i:06d}" for i in range(n)]), ops)

    def length(s: Store, ops: Ops) -> Callable[[int], float]:
        return lambda r: timed(lambda: [s.length() for _ in range(ops.n)]) / ops.n

    sections = [
        (
            "get cold small",
            f"get beyond the memory layer: random keys of {n_keys}, small values",
            entries(cold),
        ),
        (
            "get warm small",
            "get warm: 100 hot keys read over and over"
            " (memory layer hits where there is one)",
            entries(warm),
        ),
        ("contains missing", "`key in d` for a missing key", entries(missing)),
        (
            "iterate",
            f"iterate all {n_keys} keys (list(d)); time per full iteration",
            [
                Entry(label, lambda r, s=s: timed(s.keys), "lmdb-raw")
                for label, s in live
            ],
        ),
        ("len", "len(d)", entries(length)),
    ]
    for key, title, section_entries in sections:
        report.add(
            run_section(key, title, section_entries, sizes.rounds, opened.skipped)
        )
    opened.close()

    # 100 KB values, read in turn: more keys than the default memory layer holds
    opened = Opened(tmp, "rb")
    big_keys = [f"b{i:05d}" for i in range(sizes.big_keys)]
    for label, spec_name, options in READ_SYSTEMS:
        store = opened.open(label, spec_name, options)
        if store is not None:
            store.fill(dict.fromkeys(big_keys, BIG))
    big_entries = []
    for label, s in opened.stores.items():
        ops = Ops(len(big_keys))
        big_entries.append(
            Entry(label, _reads(s.get, Cycle(big_keys), ops), "lmdb-raw", ops=ops)
        )
    report.add(
        run_section(
            "get cold 100 KB",
            f"get beyond the memory layer: {len(big_keys)} keys in turn, 100 KB values",
            big_entries,
            sizes.rounds,
            opened.skipped,
        )
    )
    opened.close()


# ---------------------------------------------------------------- fresh process


def fresh_section(report: Report, sizes: Sizes, tmp: Path) -> None:
    n = sizes.fresh_keys
    all_keys = [f"k{i:07d}" for i in range(n)]
    rng = random.Random(7)
    read = rng.sample(all_keys, 100)
    entries: list[Entry] = []
    skipped: dict[str, str] = {}
    for s in SPECS:
        if s.name in ("persistdict-nodur", "lmdb-raw-nosync"):
            continue  # reads: the same as their durable twins
        path = tmp / f"fresh-{s.name}"
        try:
            store = s.open(path)
        except Unavailable as exc:
            skipped[s.name] = str(exc)
            continue
        store.fill(dict.fromkeys(all_keys, SMALL))
        store.close()
        code = stores.fresh_snippet(s, path, read)
        entries.append(
            Entry(s.name, lambda r, code=code: float(run_python(code)), "lmdb-raw")
        )
    report.add(
        run_section(
            "fresh process",
            f"fresh process: import + open a {n}-entry store + 100 gets "
            "(timed inside the child, interpreter start excluded)",
            entries,
            sizes.fresh_runs,
            skipped,
        )
    )


# ---------------------------------------------------------------- scale


def scale_section(report: Report, sizes: Sizes, tmp: Path) -> None:
    small_n, big_n = sizes.scale
    rng = random.Random(3)
    systems: list[tuple[str, str, dict[str, Any]]] = [
        ("lmdb-raw", "lmdb-raw", {}),
        ("persistdict cache_size=0", "persistdict", {"cache_size": 0}),
        ("lmdb-raw-nosync", "lmdb-raw-nosync", {}),
        ("persistdict-nodur", "persistdict", {"durable": False}),
    ]
    opened = Opened(tmp, "scale")
    by_size: dict[tuple[str, int], tuple[Store, list[str]]] = {}
    skipped: dict[str, str] = {}
    for size in (small_n, big_n):
        keys = [f"k{i:07d}" for i in range(size)]
        for label, spec_name, options in systems:
            store = opened.open(f"{label}@{size}", spec_name, options)
            if store is None:
                skipped[label] = opened.skipped[f"{label}@{size}"]
                continue
            store.fill(dict.fromkeys(keys, SMALL))
            by_size[(label, size)] = (store, keys)
    high = sizes.fast_ops

    def entries(
        labels: list[str],
        make: Callable[[Store, list[str], Ops], Callable[[int], float]],
    ) -> list[Entry]:
        out = []
        for label in labels:
            for size in (small_n, big_n):
                if (label, size) in by_size:
                    store, keys = by_size[(label, size)]
                    ops = Ops(high)
                    out.append(
                        Entry(
                            f"{label}@{size // 1000}k",
                            make(store, keys, ops),
                            f"{label}@{small_n // 1000}k",
                            ops=ops,
                        )
                    )
        return out

    def get_make(store: Store, keys: list[str], ops: Ops) -> Callable[[int], float]:
        sample = keys[:]
        rng.shuffle(sample)
        return _reads(store.get, Cycle(sample), ops)

    def set_make(store: Store, keys: list[str], ops: Ops) -> Callable[[int], float]:
        def run(r: int) -> float:
            new = [f"n{r}-{rng.randrange(10**9):09d}" for _ in range(ops.n)]
            set_ = store.set
            return timed(lambda: [set_(k, SMALL) for k in new]) / len(new)

        return run

    def contains_make(
        store: Store, keys: list[str], ops: Ops
    ) -> Callable[[int], float]:
        miss = Cycle([f"m{i:07d}" for i in range(high)])
        return _reads(store.contains, miss, ops)

    for key, title, labels, make in (
        (
            "scale get",
            "scale: get beyond the memory layer, random keys",
            ["lmdb-raw", "persistdict cache_size=0"],
            get_make,
        ),
        (
            "scale set",
            "scale: set new random keys (non-durable: the tree, not the fsync)",
            ["lmdb-raw-nosync", "persistdict-nodur"],
            set_make,
        ),
        (
            "scale contains",
            "scale: `in` for a missing key",
            ["lmdb-raw", "persistdict cache_size=0"],
            contains_make,
        ),
    ):
        section = run_section(
            key,
            f"{title}: {small_n} vs {big_n} entries (ratio to the same system at"
            f" {small_n // 1000}k)",
            entries(labels, make),
            sizes.rounds,
            skipped,
        )
        report.add(section)
    opened.close()


# ---------------------------------------------------------------- targets


def targets(report: Report, sizes: Sizes) -> None:
    sec = report.sections
    floors = {
        "set": "floor: 2 rows (the entry, its insertion-order entry), and every"
        " step the design requires, by hand: floor_schema.py",
        "overwrite": "floor: 1 row (the entry), and every step the design"
        " requires (the look for the row it replaces too), by hand: floor_schema.py",
    }
    settings = (  # (table suffix, label, system, baseline, floor system, note)
        ("", "durable", "persistdict", "lmdb-raw", FLOOR_SYSTEMS[0], ""),
        (
            " nosync",
            "durable=False",
            "persistdict-nodur",
            "lmdb-raw-nosync",
            FLOOR_SYSTEMS[1],
            "the same target at the other sync setting; ",
        ),
    )
    for kind in ("small (118 B)", "100 KB"):
        for op in ("set", "overwrite"):
            for suffix, label, system, baseline, floor, note in settings:
                s = sec.get(f"{op} {kind}{suffix}")
                if s is not None:
                    by_hand = s.ratio(floor)
                    report.target(
                        f"{label} {op} {kind} vs {baseline}",
                        s.ratio(system),
                        1.1,
                        detail=note
                        + floors[op]
                        + "; by hand in this run: "
                        + ("n/a" if by_hand is None else f"{by_hand:.2f}x"),
                    )
    for key in ("get cold small", "get cold 100 KB"):
        s = sec.get(key)
        if s is not None:
            for system in ("persistdict cache_size=0", "persistdict"):
                report.target(
                    f"{key} ({system}) vs lmdb-raw",
                    s.ratio(system),
                    1.5,
                    detail="floor: every step the design requires (gate token,"
                    " transaction, access time, checksum), by hand: floor_schema.py",
                )
    s = sec.get("fresh process")
    if s is not None:
        report.target(
            "fresh process import+open+100 gets vs lmdb-raw",
            s.ratio("persistdict"),
            1.5,
        )
    s = sec.get("iterate")
    if s is not None:
        report.target(
            f"iterate {sizes.read_keys} keys vs lmdb-raw", s.ratio("persistdict"), 2
        )
    small_n, big_n = sizes.scale
    for key, label, raw in (
        ("scale get", "persistdict cache_size=0", "lmdb-raw"),
        ("scale set", "persistdict-nodur", "lmdb-raw-nosync"),
        ("scale contains", "persistdict cache_size=0", "lmdb-raw"),
    ):
        s = sec.get(key)
        if s is None:
            continue
        raw_ratio = s.ratio(f"{raw}@{big_n // 1000}k")
        report.target(
            f"{key}: per-op at {big_n // 1000}k vs {small_n // 1000}k",
            s.ratio(f"{label}@{big_n // 1000}k"),
            1.3,
            detail="raw py-lmdb itself: "
            + ("n/a" if raw_ratio is None else f"{raw_ratio:.2f}x"),
        )


def run(report: Report, quick: bool, tmp: Path) -> None:
    sizes = QUICK if quick else FULL
    write_sections(report, sizes, tmp)
    read_sections(report, sizes, tmp)
    fresh_section(report, sizes, tmp)
    scale_section(report, sizes, tmp)
    targets(report, sizes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--tmp", default=None, help="scratch directory (default: system temp)"
    )
    args = parser.parse_args(argv)
    return run_standalone([run], args.quick, args.tmp)


if __name__ == "__main__":
    raise SystemExit(main())
