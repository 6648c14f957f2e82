"""Concurrent writer processes on one store: lost writes and throughput.

Each writer process opens the store, waits until every writer is ready, then sets
its own keys one by one (one operation = one commit, as a user's loop would) and
reports which sets returned without error (acknowledged) and when it started and
finished. The parent then reads every acknowledged key back: a key missing or with
a wrong value is a lost write. Throughput is acknowledged writes / (last finish -
first start); the table shows its inverse (time per write) so that ratios read like
the other tables.

Run alone with ``python benchmarks/bench_concurrency.py [--quick]``, or everything
with ``python benchmarks/run.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import stores
from harness import (
    BENCH_DIR,
    Entry,
    Ops,
    Report,
    Unavailable,
    configure,
    header,
    run_section,
    scratch_dir,
)

SYSTEMS = [
    "lmdb-raw",
    "persistdict",
    "lmdb-raw-nosync",
    "persistdict-nodur",
    "diskcache.Cache",
    "sqlitedict",
    "shelve",
]


@dataclass(frozen=True)
class Sizes:
    rounds: int
    durable_writes: int  # per writer per round, when each write costs an fsync
    fast_writes: int


FULL = Sizes(5, 100, 1000)
QUICK = Sizes(2, 40, 400)


def value(wid: int, i: int) -> dict[str, object]:
    return {"w": wid, "i": i, "pad": "x" * 60}


def child(system: str, path: str, wid: int, n: int) -> None:
    store = stores.spec(system).open(Path(path))
    print("ready", flush=True)
    sys.stdin.readline()  # "go"
    failed: list[str] = []
    t0 = time.monotonic()
    for i in range(n):
        try:
            store.set(f"w{wid}-{i:06d}", value(wid, i))
        except Exception as exc:  # noqa: BLE001 - any failure of a peer is counted, not fatal
            failed.append(f"{i}: {type(exc).__name__}: {exc}")
    store.close()
    t1 = time.monotonic()
    print(json.dumps({"t0": t0, "t1": t1, "failed": failed}), flush=True)


def _spawn(system: str, path: Path, wid: int, n: int) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(BENCH_DIR), env.get("PYTHONPATH", "")) if p
    )
    return subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            system,
            str(path),
            str(wid),
            str(n),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


class WriterRun:
    """One entry of a section: ``writers`` processes on one fresh store per round."""

    def __init__(self, system: str, writers: int, n: int, tmp: Path) -> None:
        self.system = system
        self.writers = writers
        self.n = n
        self.tmp = tmp
        self.acked = 0
        self.lost = 0
        self.errors = 0
        self.first_error = ""
        self.entry: Entry | None = None

    def __call__(self, r: int) -> float:
        path = self.tmp / f"conc-{self.system}-{self.writers}-{r}"
        stores.spec(self.system).open(path).close()  # created before the writers start
        procs = [_spawn(self.system, path, w, self.n) for w in range(self.writers)]
        for p in procs:
            line = p.stdout.readline() if p.stdout else ""
            if line.strip() != "ready":
                _, err = p.communicate(timeout=60)
                raise RuntimeError(f"{self.system} writer did not start: {err[-2000:]}")
        for p in procs:
            if p.stdin:
                p.stdin.write("go\n")
                p.stdin.flush()
        reports = []
        for p in procs:
            out, err = p.communicate(timeout=300)
            if p.returncode != 0:
                raise RuntimeError(f"{self.system} writer failed: {err[-2000:]}")
            reports.append(json.loads(out.strip().splitlines()[-1]))
        acked_keys: list[tuple[str, dict[str, object]]] = []
        for wid, rep in enumerate(reports):
            failed_idx = {int(f.split(":", 1)[0]) for f in rep["failed"]}
            self.errors += len(failed_idx)
            if rep["failed"] and not self.first_error:
                self.first_error = rep["failed"][0].split(": ", 1)[1]
            acked_keys += [
                (f"w{wid}-{i:06d}", value(wid, i))
                for i in range(self.n)
                if i not in failed_idx
            ]
        self.acked += len(acked_keys)
        lost = 0
        try:
            check = stores.spec(self.system).open(path)
            try:
                for key, expected in acked_keys:
                    try:
                        if check.get(key) != expected:
                            lost += 1
                    except KeyError:
                        lost += 1
            finally:
                check.close()
        except Exception as exc:  # noqa: BLE001 - a store that no longer reads lost it all
            lost = len(acked_keys)
            self.first_error = f"unreadable after the run: {type(exc).__name__}: {exc}"
        self.lost += lost
        if self.entry is not None:
            self.entry.note = (
                f"acked {self.acked}, lost {self.lost}, errors {self.errors}"
                + (f" ({self.first_error[:70]})" if self.first_error else "")
            )
        span = max(rep["t1"] for rep in reports) - min(rep["t0"] for rep in reports)
        return span / max(len(acked_keys), 1)


def run(report: Report, quick: bool, tmp: Path) -> None:
    sizes = QUICK if quick else FULL
    for writers in (2, 4):
        entries: list[Entry] = []
        skipped: dict[str, str] = {}
        runs: dict[str, WriterRun] = {}
        for system in SYSTEMS:
            s = stores.spec(system)
            try:
                s.open(tmp / f"probe-{system}").close()
            except Unavailable as exc:
                skipped[system] = str(exc)
                continue
            n = sizes.durable_writes if s.durable else sizes.fast_writes
            wr = WriterRun(system, writers, n, tmp)
            total = writers * n  # shown as ops; not calibrated
            entry = Entry(
                system, wr, stores.baseline_for(s), s.sync_note, ops=Ops(total, total)
            )
            wr.entry = entry
            runs[system] = wr
            entries.append(entry)
        section = report.add(
            run_section(
                f"writers {writers}",
                f"{writers} writer processes, one commit per set, time per acknowledged"
                " "
                "write (inverse throughput; vs raw py-lmdb at the same sync setting)",
                entries,
                sizes.rounds,
                skipped,
                warmup=False,
            )
        )
        if writers == 4:
            for system, raw in (
                ("persistdict", "lmdb-raw"),
                ("persistdict-nodur", "lmdb-raw-nosync"),
            ):
                wr = runs.get(system)
                mine, base = section.median(system), section.median(raw)
                report.target(
                    f"4 writers ({system}): lost writes",
                    None if wr is None else float(wr.lost),
                    0,
                    detail="" if wr is None else f"of {wr.acked} acknowledged",
                    unit="",
                )
                report.target(
                    f"4 writers ({system}): throughput vs {raw}",
                    None if mine is None or base is None else base / mine,
                    0.9,
                    at_least=True,
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tmp", default=None, help="scratch directory")
    parser.add_argument(
        "--child",
        nargs=4,
        metavar=("SYSTEM", "PATH", "WID", "N"),
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args(argv)
    if args.child:
        system, path, wid, n = args.child
        child(system, path, int(wid), int(n))
        return 0
    configure(args.quick)
    with scratch_dir(args.tmp) as tmp:
        report = Report()
        report.emit(header(sys.argv, tmp))
        report.emit()
        run(report, args.quick, tmp)
        report.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
