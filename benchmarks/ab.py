"""Two versions of persistdict in one process, against raw py-lmdb: before/after.

    python benchmarks/ab.py OLD_SRC NEW_SRC [--rounds N] [--quick]

OLD_SRC and NEW_SRC are ``src`` directories (for a commit:
``git archive REV src | tar -x -C /tmp/pd-REV`` gives ``/tmp/pd-REV/src``). Each
``persistdict`` package is copied under a name of its own (``persistdict_a``,
``persistdict_b``; the package imports itself only relatively), so both load in
this process and their loops alternate round after round with raw py-lmdb's, in
an order that rotates: the machine's drift between rounds cancels in the paired
ratios, which is what a change of a few percent needs. Each version has its own
stores (and its own environment, memory layer and access-time thread).

Workloads: gets of random keys of 10,000 (small values) with ``cache_size=0``
and with the default layer; ``d[k] = v`` of new keys and of existing keys with
``durable=False``. Ratios are to raw py-lmdb (one transaction per operation, at
the same sync setting), as in bench_store.
"""

from __future__ import annotations

import argparse
import importlib
import pickle
import random
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import Entry, Ops, Report, run_section, run_standalone, timed

SMALL = {"id": 1, "name": "x" * 60, "ok": True, "tags": ["a", "b"]}  # as bench_store


def load(src: str, name: str, into: Path) -> Any:
    """The persistdict package of ``src``, imported as ``name``."""
    package = Path(src) / "persistdict"
    if not (package / "__init__.py").exists():
        raise SystemExit(f"{src} has no persistdict package: pass a src directory")
    shutil.copytree(package, into / name)
    sys.path.insert(0, str(into))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(into))


def workloads(report: Report, rounds: int, versions: dict[str, Any], tmp: Path) -> None:
    import lmdb

    keys = [f"k{i:07d}" for i in range(10_000)]
    order = keys[:]
    random.Random(5).shuffle(order)

    def reads(get: Callable[[str], object], ops: Ops) -> Callable[[int], float]:
        position = [0]

        def run(r: int) -> float:
            start = position[0]
            batch = [order[(start + i) % len(order)] for i in range(ops.n)]
            position[0] = (start + ops.n) % len(order)
            return timed(lambda: [get(k) for k in batch]) / len(batch)

        return run

    raw = lmdb.open(str(tmp / "raw-read"), map_size=1 << 31, mode=0o700)
    with raw.begin(write=True) as txn:
        for k in keys:
            txn.put(k.encode(), pickle.dumps(SMALL, protocol=5))

    def raw_get(key: str) -> object:
        with raw.begin() as txn:
            data = txn.get(key.encode())
        return pickle.loads(data)

    entries = [Entry("lmdb-raw", reads(raw_get, ops := Ops(2000)), "lmdb-raw", ops=ops)]
    for label, module in versions.items():
        for cache_size in (0, 128):
            d = module.PersistDict(
                tmp / f"{label}-get-{cache_size}", cache_size=cache_size
            )
            d.update(dict.fromkeys(keys, SMALL))
            ops = Ops(2000)
            entries.append(
                Entry(
                    f"{label} cache_size={cache_size}",
                    reads(d.__getitem__, ops),
                    "lmdb-raw",
                    close=d.close,
                    ops=ops,
                )
            )
    report.add(
        run_section(
            "ab get",
            "get of random keys of 10,000, small values (beyond the memory layer)",
            entries,
            rounds,
        )
    )
    raw.close()

    for kind in ("new", "existing"):
        raw_w = lmdb.open(
            str(tmp / f"raw-{kind}"), map_size=1 << 33, sync=False, mode=0o700
        )

        def raw_set(key: str, value: Any, env: Any = raw_w) -> None:
            with env.begin(write=True) as txn:
                txn.put(key.encode(), pickle.dumps(value, protocol=5))

        def writes(
            set_: Callable[[str, Any], None],
            fill: Callable[[list[str]], None],
            ops: Ops,
            kind: str = kind,
        ) -> Callable[[int], float]:
            def run(r: int) -> float:
                batch = [f"{kind}{r}-{i:06d}" for i in range(ops.n)]
                if kind == "existing":
                    fill(batch)  # untimed
                return timed(lambda: [set_(k, SMALL) for k in batch]) / len(batch)

            return run

        def raw_fill(batch: list[str], env: Any = raw_w) -> None:
            with env.begin(write=True) as txn:
                for k in batch:
                    txn.put(k.encode(), pickle.dumps(SMALL, protocol=5))

        ops = Ops(3000)
        entries = [
            Entry(
                "lmdb-raw-nosync",
                writes(raw_set, raw_fill, ops),
                "lmdb-raw-nosync",
                ops=ops,
            )
        ]
        for label, module in versions.items():
            d = module.PersistDict(tmp / f"{label}-{kind}", durable=False)
            ops = Ops(3000)
            entries.append(
                Entry(
                    f"{label} durable=False",
                    writes(
                        d.__setitem__,
                        lambda batch, d=d: d.update(dict.fromkeys(batch, SMALL)),
                        ops,
                    ),
                    "lmdb-raw-nosync",
                    close=d.close,
                    ops=ops,
                )
            )
        report.add(
            run_section(
                f"ab set {kind}",
                f"d[k] = v of {kind} keys, small values, without fsync",
                entries,
                rounds,
            )
        )
        raw_w.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", help="src directory of the version before")
    parser.add_argument("new", help="src directory of the version after")
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tmp", default=None, help="scratch directory")
    args = parser.parse_args(argv)

    def part(report: Report, quick: bool, tmp: Path) -> None:
        modules = tmp / "modules"
        modules.mkdir()
        versions = {
            "a": load(args.old, "persistdict_a", modules),
            "b": load(args.new, "persistdict_b", modules),
        }
        report.emit(f"a = {args.old}\nb = {args.new}\n")
        workloads(report, 7 if quick else args.rounds, versions, tmp)

    return run_standalone([part], args.quick, args.tmp)


if __name__ == "__main__":
    raise SystemExit(main())
