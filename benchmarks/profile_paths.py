"""Profile persistdict's hot paths with cProfile and print where the time goes.

    python benchmarks/profile_paths.py                 # every path
    python benchmarks/profile_paths.py get_cold set_nodur --top 20
    python benchmarks/profile_paths.py --out benchmarks/results/profile-HEAD.txt

Each path runs the same loop as the matching benchmark table, under cProfile, and
prints the functions with the most own time (tottime) and the most cumulative time.
cProfile inflates the cost of small Python functions; read the profile for *where*
the time goes and the benchmark tables for *how much*.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import child_env, header

SMALL = {"id": 1, "name": "x" * 60, "ok": True, "tags": ["a", "b"]}
TEXT = "Summarize the following paragraph in one sentence, keep names: " + "x" * 16


def _pd(path: Path, **options: Any) -> Any:
    from persistdict import PersistDict

    return PersistDict(path, **options)


def _filled(path: Path, n: int, **options: Any) -> Any:
    d = _pd(path, **options)
    d.update({f"k{i:07d}": SMALL for i in range(n)})
    return d


def path_set_durable(tmp: Path) -> Callable[[], None]:
    d = _pd(tmp / "s")
    keys = [f"s{i:06d}" for i in range(300)]
    return lambda: [d.__setitem__(k, SMALL) for k in keys] and None


def path_set_nodur(tmp: Path) -> Callable[[], None]:
    d = _pd(tmp / "sn", durable=False)
    keys = [f"s{i:06d}" for i in range(20_000)]
    return lambda: [d.__setitem__(k, SMALL) for k in keys] and None


def path_get_cold(tmp: Path) -> Callable[[], None]:
    d = _filled(tmp / "gc", 10_000, cache_size=0)
    keys = [f"k{i:07d}" for i in range(10_000)]
    random.Random(1).shuffle(keys)
    return lambda: [d[k] for k in keys * 2] and None


def path_get_layer(tmp: Path) -> Callable[[], None]:
    d = _filled(tmp / "gl", 10_000)
    keys = [f"k{i:07d}" for i in range(10_000)]
    random.Random(1).shuffle(keys)
    return lambda: [d[k] for k in keys * 2] and None


def path_get_warm(tmp: Path) -> Callable[[], None]:
    d = _filled(tmp / "gw", 1000)
    keys = [f"k{i % 100:07d}" for i in range(50_000)]
    return lambda: [d[k] for k in keys] and None


def path_contains_missing(tmp: Path) -> Callable[[], None]:
    d = _filled(tmp / "cm", 1000)
    keys = [f"m{i:07d}" for i in range(50_000)]
    return lambda: [k in d for k in keys] and None


def path_iterate(tmp: Path) -> Callable[[], None]:
    d = _filled(tmp / "it", 10_000)
    return lambda: [list(d) for _ in range(30)] and None


def path_len(tmp: Path) -> Callable[[], None]:
    d = _filled(tmp / "ln", 10_000)
    return lambda: [len(d) for _ in range(50_000)] and None


def path_memo_warm(tmp: Path) -> Callable[[], None]:
    from persistdict import persist_cache

    @persist_cache(tmp / "mw")
    def f(x: int, text: str) -> str:
        return f"{text}:{x}"

    for i in range(100):
        f(i, TEXT)
    return lambda: [f(i % 100, TEXT) for i in range(50_000)] and None


def path_memo_disk(tmp: Path) -> Callable[[], None]:
    from persistdict import persist_cache

    @persist_cache(tmp / "md", maxsize=0)
    def f(x: int, text: str) -> str:
        return f"{text}:{x}"

    for i in range(2000):
        f(i, TEXT)
    return lambda: [f(i % 2000, TEXT) for i in range(20_000)] and None


def path_memo_miss(tmp: Path) -> Callable[[], None]:
    from persistdict import persist_cache

    @persist_cache(tmp / "mm")
    def f(x: int, text: str) -> str:
        return f"{text}:{x}"

    return lambda: [f(i, TEXT) for i in range(300)] and None


PATHS: dict[str, Callable[[Path], Callable[[], None]]] = {
    name.removeprefix("path_"): fn
    for name, fn in sorted(globals().items())
    if name.startswith("path_")
}

FRESH_CHILD = """
import cProfile, pstats, sys
prof = cProfile.Profile()
prof.enable()
from persistdict import PersistDict
d = PersistDict({path!r})
for i in range(100):
    d[f"k{{i * 37:07d}}"]
prof.disable()
pstats.Stats(prof, stream=sys.stdout).sort_stats("cumulative").print_stats({top})
"""


def fresh_open(tmp: Path, top: int) -> str:
    path = tmp / "fresh"
    d = _filled(path, 20_000)
    d.close()
    out = subprocess.run(
        [sys.executable, "-c", FRESH_CHILD.format(path=str(path), top=top)],
        capture_output=True,
        text=True,
        check=False,
        env=child_env(),
    )
    return out.stdout + out.stderr[-2000:]


def import_times(top: int) -> str:
    """``python -X importtime -c "import persistdict"``: the slowest imports."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import persistdict"],
        capture_output=True,
        text=True,
        check=False,
        env=child_env(),
    ).stderr
    rows = []
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), int(parts[0].split(":")[1]), parts[2].rstrip()))
    rows.sort(reverse=True)
    lines = ["cumulative us   self us  module"]
    lines += [f"{cum:>13}  {own:>8}  {name}" for cum, own, name in rows[:top]]
    return "\n".join(lines) + "\n"


def write_parts(tmp: Path) -> str:
    """Where an overwrite's time goes, durable and not: PersistDict's own steps
    (preparing the row, the write transaction with its commit, the memory
    layer's update), timed apart with perf_counter around the same internal
    calls ``__setitem__`` makes, next to the same put done in raw py-lmdb in the
    same environment. Medians of interleaved operations. Python work right
    after an fsync runs with cold caches: it costs several times what the same
    code costs in a loop without fsync."""
    lines = [
        "medians, us per overwrite: prepare = d._row(); transaction = env.write()"
        " incl. commit; layer = layer.wrote(); raw put = the same row put with"
        " py-lmdb in PersistDict's environment"
    ]
    for durable, n in ((True, 600), (False, 20_000)):
        d = _filled(tmp / f"parts-{durable}", 3000, durable=durable)
        medians = "  ".join(
            f"{name} {us:.1f}" for name, us in _overwrite_parts(d, n).items()
        )
        lines.append(f"durable={durable}: {medians}")
        d.close()
    return "\n".join(lines) + "\n"


def _overwrite_parts(d: Any, n: int) -> dict[str, float]:
    import pickle
    import statistics
    import time

    env = d._live()
    keys = [f"k{i:07d}" for i in range(3000)]
    rng = random.Random(1)
    clock = time.perf_counter
    parts: dict[str, list[float]] = {
        k: [] for k in ("prepare", "transaction", "layer", "total", "raw put")
    }
    for _ in range(n):
        key = rng.choice(keys)
        t0 = clock()
        rows = [d._row(key, SMALL)]
        t1 = clock()
        now = time.time()

        def fn(txn: Any, rows: list[Any] = rows, now: float = now) -> list[bytes]:
            return [
                d._put(env, txn, encoded, k, payload, now, note)
                for encoded, k, payload, _value, note in rows
            ]

        ids, txn_id = env.write(fn)
        t2 = clock()
        changes = {ids[0]: (d._codec_key, SMALL, rows[0][2])}
        env.layer.wrote(
            txn_id, changes, lambda v, p, now=now: d._layer_entry(v, p, now)
        )
        t3 = clock()
        for name, took in (
            ("prepare", t1 - t0),
            ("transaction", t2 - t1),
            ("layer", t3 - t2),
            ("total", t3 - t0),
        ):
            parts[name].append(took)
        key = rng.choice(keys)
        t0 = clock()
        with env.env.begin(None, None, True) as txn:  # (options by position)
            txn.put(
                b"\x01" + key.encode(),
                b"\x00" * 44 + pickle.dumps(SMALL, protocol=5),
                True,
                True,
                False,
                env.values,
            )
        parts["raw put"].append(clock() - t0)
    return {name: statistics.median(v) * 1e6 for name, v in parts.items()}


def profile(fn: Callable[[], None], top: int) -> str:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("tottime").print_stats(top)
    buf.write("--- by cumulative time\n")
    stats.sort_stats("cumulative").print_stats(top)
    # drop the long absolute directory prefixes so the lines stay readable
    return buf.getvalue().replace(str(Path(sys.prefix)), "<venv>")


def main(argv: list[str] | None = None) -> int:
    names = [*PATHS, "fresh_open", "imports", "write_parts"]
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("paths", nargs="*", help="any of: " + ", ".join(names))
    parser.add_argument("--top", type=int, default=18)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    chosen = args.paths or names
    unknown = [p for p in chosen if p not in names]
    if unknown:
        parser.error(f"unknown path(s) {unknown}; choose from {names}")
    chunks = [header(sys.argv, Path(tempfile.gettempdir())), ""]
    with tempfile.TemporaryDirectory(prefix="persistdict-prof-") as tmp_s:
        tmp = Path(tmp_s)
        for name in chosen:
            if name == "fresh_open":
                text = fresh_open(tmp, args.top)
            elif name == "imports":
                text = import_times(args.top)
            elif name == "write_parts":
                text = write_parts(tmp)
            else:
                try:
                    fn = PATHS[name](tmp)
                except ImportError as exc:
                    text = f"skipped: {exc}\n"
                else:
                    text = profile(fn, args.top)
            chunk = f"######## {name}\n{text}"
            print(chunk, flush=True)
            chunks.append(chunk)
    if args.out:
        args.out.write_text("\n".join(chunks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
