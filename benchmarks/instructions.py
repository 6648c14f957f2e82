"""Machine instructions per read, counted by valgrind: the same figure every run.

    python benchmarks/instructions.py [--reads N] [--out FILE]

Timings on a shared machine move by several percent from one run to the next,
which hides the change a hot-path edit makes (one bytecode is about 25
instructions, 1% of a read). Cachegrind counts the instructions a process
executes; each system below runs twice in a child interpreter under it, once
with no timed reads and once with N, and the difference divided by N is the
cost of one read, deterministic to within a few tens of instructions
(PYTHONHASHSEED is fixed; the garbage collector is off during the reads, as in
the harness). Instructions are not time (memory stalls are not counted), so
this complements the timed tables rather than replacing them.

Systems, each reading random keys of a 10,000-entry store of small values:

* ``lmdb-raw``: raw py-lmdb, a function per read (as bench_store's store);
* ``floor``: every step a read of PersistDict's design requires, done by hand
  on PersistDict's own files (floor_schema.required_read, a function per read);
* ``persistdict cache_size=0`` and ``persistdict`` (the default layer), read
  through the bound ``__getitem__`` (as bench_store).

Two workloads: ``mix``, N reads cycling over the 10,000 keys after 2,000 untimed
ones (most reads find their key in the batch of access times, as in a process
that rereads its working set within a second), and ``first``, 8,000 reads of
keys not read before (each records an access time, as in bench_store's short
read tables). The access-time thread is held off (no flush during the counts):
a flush is counted apart from reads, once per key and second.

Needs valgrind (``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

SYSTEMS = ("lmdb-raw", "floor", "persistdict cache_size=0", "persistdict")
HERE = Path(__file__).resolve().parent


def child(system: str, workload: str, reads: int) -> None:
    """Build the store, read 2,000 keys untimed, then ``reads`` more."""
    import gc
    import random
    import tempfile

    sys.path.insert(0, str(HERE))
    from stores import open_raw

    small = {"id": 1, "name": "x" * 60, "ok": True, "tags": ["a", "b"]}
    keys = [f"k{i:07d}" for i in range(10_000)]
    order = keys[:]
    random.Random(5).shuffle(order)
    tmp = Path(tempfile.mkdtemp())
    get: object
    if system == "lmdb-raw":
        store = open_raw(tmp, sync=True)
        store.fill(dict.fromkeys(keys, small))
        get = store.get
    else:
        import persistdict._env as env_module
        from persistdict import PersistDict

        env_module.ATIME_FLUSH_SECONDS = 1e9  # no access-time flush while counting
        cache_size = 128 if system == "persistdict" else 0
        d = PersistDict(tmp, cache_size=cache_size)
        d.update(dict.fromkeys(keys, small))
        get = d.__getitem__
        if system == "floor":
            from floor_schema import required_read

            get = required_read(d._env.env, d._env)[0]
    untimed = order[:2000]
    if workload == "first":
        timed = order[2000 : 2000 + reads]
    else:
        timed = [order[(2000 + i) % len(order)] for i in range(reads)]
    for key in untimed:
        get(key)  # type: ignore[operator]
    gc.collect()
    gc.disable()
    for key in timed:
        get(key)  # type: ignore[operator]
    os._exit(0)  # no exit work (the access times left pending) in the count


def count(system: str, workload: str, reads: int) -> int:
    """Instructions the child executes (all of it: start-up, the store, reads)."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    out = subprocess.run(
        [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--child",
            system,
            workload,
            str(reads),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    for line in out.splitlines():
        if "I   refs:" in line or "I refs:" in line:
            return int(line.split(":")[1].strip().replace(",", ""))
    raise RuntimeError(f"no instruction count in valgrind's output:\n{out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=40_000, help="reads of mix")
    parser.add_argument("--out", help="also write the table to this file")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        system, workload, reads = args.child
        child(system, workload, int(reads))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    import persistdict

    lines = [
        f"command: python benchmarks/instructions.py --reads {args.reads}",
        f"python: {sys.version.split()[0]}; persistdict from: "
        f"{Path(persistdict.__file__).parent}",
        "instructions per read (valgrind cachegrind; PYTHONHASHSEED=0);"
        " ratio to lmdb-raw",
        "",
    ]
    for workload, reads in (("mix", args.reads), ("first", 8000)):
        lines.append(f"== {workload}: {reads} reads")
        base = None
        for system in SYSTEMS:
            per_read = count(system, workload, reads) - count(system, workload, 0)
            per_read //= reads
            base = base or per_read
            lines.append(f"   {system:26} {per_read:8,}  {per_read / base:.3f}x")
            print(lines[-1], flush=True)
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
