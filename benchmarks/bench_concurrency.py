"""Concurrent writer processes on one store: lost writes and throughput.

Each writer process opens the store once; every round, all writers of a system
get the signal at once and set their own new keys one by one (one operation = one
commit, as a user's loop would), and report which sets returned without error
(acknowledged) and when they started and finished. Rounds rotate over the
systems. At the end the parent reads every acknowledged key back: a key missing
or with a wrong value is a lost write. Throughput is acknowledged writes / (last
finish - first start); the table shows its inverse (time per write) so that
ratios read like the other tables.

Run alone with ``python benchmarks/bench_concurrency.py [--quick]``, or everything
with ``python benchmarks/run.py``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import stores
from harness import (
    Entry,
    Ops,
    Report,
    Unavailable,
    child_env,
    run_section,
    run_standalone,
)

SYSTEMS = [
    "lmdb-raw",
    "persistdict",
    "lmdb-2rows",  # the floor: raw py-lmdb writing PersistDict's two rows
    "lmdb-raw-nosync",
    "persistdict-nodur",
    "lmdb-2rows-nosync",
    "diskcache.Cache",
    "sqlitedict",
    "shelve",
]


@dataclass(frozen=True)
class Sizes:
    rounds: int
    durable_writes: int  # per writer per round, when each write costs an fsync
    fast_writes: int


FULL = Sizes(15, 40, 400)
QUICK = Sizes(4, 20, 200)


def value(wid: int, r: int, i: int) -> dict[str, object]:
    return {"w": wid, "r": r, "i": i, "pad": "x" * 60}


def key(wid: int, r: int, i: int) -> str:
    return f"w{wid}-r{r}-{i:06d}"


def child(system: str, path: str, wid: int) -> None:
    """A writer: opens the store once, then writes a batch per "go R N" line."""
    store = stores.spec(system).open(Path(path))
    print("ready", flush=True)
    for line in sys.stdin:
        if not line.startswith("go "):
            break
        _, r_s, n_s = line.split()
        r, n = int(r_s), int(n_s)
        failed: list[str] = []
        t0 = time.monotonic()
        for i in range(n):
            try:
                store.set(key(wid, r, i), value(wid, r, i))
            except Exception as exc:  # noqa: BLE001 - a peer's failure is counted
                failed.append(f"{i}: {type(exc).__name__}: {exc}")
        t1 = time.monotonic()
        print(json.dumps({"t0": t0, "t1": t1, "failed": failed}), flush=True)
    store.close()


def _spawn(system: str, path: Path, wid: int) -> subprocess.Popen[str]:
    env = child_env()
    script = str(Path(__file__).resolve())
    return subprocess.Popen(
        [sys.executable, script, "--child", system, str(path), str(wid)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


class WriterPool:
    """``writers`` live processes on one store; one round = one batch each.

    The processes stay up between rounds, so rounds are short and the systems
    of a section take turns often: every system sees the same machine.
    """

    def __init__(self, system: str, writers: int, n: int, tmp: Path) -> None:
        self.system = system
        self.n = n
        self.path = tmp / f"conc-{system}-{writers}"
        stores.spec(system).open(self.path).close()  # created before the writers
        self.procs = [_spawn(system, self.path, w) for w in range(writers)]
        for p in self.procs:
            line = p.stdout.readline() if p.stdout else ""
            if line.strip() != "ready":
                _, err = p.communicate(timeout=60)
                raise RuntimeError(f"{system} writer did not start: {err[-2000:]}")
        self.acked: list[tuple[str, dict[str, object]]] = []
        self.errors = 0
        self.first_error = ""
        self.lost: int | None = None

    def __call__(self, r: int) -> float:
        for p in self.procs:
            if p.stdin:
                p.stdin.write(f"go {r} {self.n}\n")
                p.stdin.flush()
        reports = []
        for p in self.procs:
            line = p.stdout.readline() if p.stdout else ""
            if not line:
                _, err = p.communicate(timeout=60)
                raise RuntimeError(f"{self.system} writer failed: {err[-2000:]}")
            reports.append(json.loads(line))
        round_acked = 0
        for wid, rep in enumerate(reports):
            failed_idx = {int(f.split(":", 1)[0]) for f in rep["failed"]}
            self.errors += len(failed_idx)
            if rep["failed"] and not self.first_error:
                self.first_error = rep["failed"][0].split(": ", 1)[1]
            for i in range(self.n):
                if i not in failed_idx:
                    self.acked.append((key(wid, r, i), value(wid, r, i)))
                    round_acked += 1
        span = max(rep["t1"] for rep in reports) - min(rep["t0"] for rep in reports)
        return span / max(round_acked, 1)

    def close(self) -> None:
        """Stop the writers, then read back every acknowledged write."""
        for p in self.procs:
            try:
                p.communicate("quit\n", timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
        lost = 0
        try:
            check = stores.spec(self.system).open(self.path)
            try:
                for k, expected in self.acked:
                    try:
                        if check.get(k) != expected:
                            lost += 1
                    except KeyError:
                        lost += 1
            finally:
                check.close()
        except Exception as exc:  # noqa: BLE001 - a store that no longer reads lost it all
            lost = len(self.acked)
            self.first_error = f"unreadable after the run: {type(exc).__name__}: {exc}"
        self.lost = lost

    def note(self) -> str:
        text = f"acked {len(self.acked)}, lost {self.lost}, errors {self.errors}"
        return text + (f" ({self.first_error[:70]})" if self.first_error else "")


def run(report: Report, quick: bool, tmp: Path) -> None:
    sizes = QUICK if quick else FULL
    for writers in (2, 4):
        entries: list[Entry] = []
        skipped: dict[str, str] = {}
        pools: dict[str, WriterPool] = {}
        try:
            for system in SYSTEMS:
                s = stores.spec(system)
                try:
                    s.open(tmp / f"probe-{system}").close()
                except Unavailable as exc:
                    skipped[system] = str(exc)
                    continue
                n = sizes.durable_writes if s.durable else sizes.fast_writes
                pool = WriterPool(system, writers, n, tmp)
                pools[system] = pool
                total = writers * n  # shown as ops; not calibrated
                entries.append(
                    Entry(
                        system,
                        pool,
                        stores.baseline_for(s),
                        s.sync_note,
                        ops=Ops(total, total),
                    )
                )
            section = run_section(
                f"writers {writers}",
                f"{writers} writer processes, one commit per set: time per acknowledged"
                " write (inverse throughput; vs raw py-lmdb at the same sync setting)",
                entries,
                sizes.rounds,
                skipped,
                warmup=False,
            )
        finally:
            for pool in pools.values():
                pool.close()
        for system, pool in pools.items():
            section.rows[system].note = pool.note()
        report.add(section)
        if writers == 4:
            for system, raw, rows in (
                ("persistdict", "lmdb-raw", "lmdb-2rows"),
                ("persistdict-nodur", "lmdb-raw-nosync", "lmdb-2rows-nosync"),
            ):
                found = pools.get(system)
                ratio = section.ratio(system)  # time per write, paired by round
                floor = section.ratio(rows)
                report.target(
                    f"4 writers ({system}): lost writes",
                    None if found is None else float(found.lost or 0),
                    0,
                    detail=""
                    if found is None
                    else f"of {len(found.acked)} acknowledged",
                    unit="",
                )
                report.target(
                    f"4 writers ({system}): throughput vs {raw}",
                    None if ratio is None else 1 / ratio,
                    0.9,
                    at_least=True,
                    detail="floor: raw py-lmdb writing the same two rows per commit"
                    f" ({rows}): " + ("n/a" if floor is None else f"{1 / floor:.2f}x"),
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tmp", default=None, help="scratch directory")
    parser.add_argument(
        "--child",
        nargs=3,
        metavar=("SYSTEM", "PATH", "WID"),
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args(argv)
    if args.child:
        system, path, wid = args.child
        child(system, path, int(wid))
        return 0
    return run_standalone([run], args.quick, args.tmp)


if __name__ == "__main__":
    raise SystemExit(main())
