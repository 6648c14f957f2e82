"""Shared machinery of the benchmarks: rounds in rotating order, medians, ratios.

Every section runs all of its systems in the same process, round after round, with
the order of systems rotated each round so that no system always runs first (cold
caches) or last (a busier machine). Each round of each system yields one sample, the
time per operation; a section reports the median sample of each system and its ratio
to a baseline system measured in the same run (the median of the ratios of paired
samples, taken at nearly the same moment). Absolute times are printed beside the
ratios only to make the tables readable: these machines are shared and noisy, and
only the ratios are meant to be compared between runs.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "BENCH_DIR",
    "Entry",
    "Ops",
    "Report",
    "Section",
    "Stepper",
    "Unavailable",
    "child_env",
    "configure",
    "fmt_time",
    "run_interleaved",
    "run_python",
    "run_section",
    "scratch_dir",
    "timed",
]

BENCH_DIR = Path(__file__).resolve().parent


class Unavailable(Exception):  # noqa: N818 - reads as `except Unavailable`
    """A system cannot run here (not installed, or an option it lacks)."""


def timed(fn: Callable[[], object]) -> float:
    """Run ``fn`` once with the garbage collector off; return elapsed seconds."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    finally:
        if was_enabled:
            gc.enable()


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.2f} us"


# Time one round of one system should take, in seconds (see ``Ops``).
ROUND_BUDGET = 0.05


def configure(quick: bool) -> None:
    global ROUND_BUDGET
    ROUND_BUDGET = 0.015 if quick else 0.08


@dataclass
class Ops:
    """How many operations a round makes: calibrated by the warm-up round.

    The warm-up rounds run ``low`` operations; every later round runs as many as fit
    in ``ROUND_BUDGET`` at the warm-up's pace, between ``low`` and ``high``. Slow
    systems thus make fewer operations and fast ones more, and a run stays short.
    """

    high: int
    low: int = 20
    n: int = 0

    def __post_init__(self) -> None:
        self.low = min(self.low, self.high)
        self.n = self.low

    def calibrate(self, per_op: float) -> None:
        fit = int(ROUND_BUDGET / per_op) if per_op > 0 else self.high
        self.n = max(self.low, min(self.high, fit))


@dataclass
class Entry:
    """One system in one section.

    ``run(r)`` performs round ``r`` (its own untimed setup, then a timed part) and
    returns the time of ONE operation in seconds. ``baseline`` names the entry of the
    same section it is compared to (itself for the baseline).
    """

    system: str
    run: Callable[[int], float]
    baseline: str
    note: str = ""
    close: Callable[[], None] | None = None
    ops: Ops | None = None


@dataclass
class Row:
    system: str
    baseline: str
    samples: list[float]
    note: str
    ops: int = 1
    rounds: int | None = None  # when samples are single operations

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median (noise indicator)."""
        if len(self.samples) < 3:
            return (max(self.samples) - min(self.samples)) / self.median
        q = statistics.quantiles(self.samples, n=4, method="inclusive")
        return (q[2] - q[0]) / self.median


@dataclass
class Section:
    key: str
    title: str
    rows: dict[str, Row] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def median(self, system: str) -> float | None:
        row = self.rows.get(system)
        return None if row is None else row.median

    def ratio(self, system: str, baseline: str | None = None) -> float | None:
        row = self.rows.get(system)
        if row is None:
            return None
        base = self.rows.get(baseline or row.baseline)
        if base is None:
            return None
        if len(row.samples) == len(base.samples) and base.samples:
            # Paired: sample i of both systems was taken at nearly the same
            # moment (same round, or neighbouring single operations), so the
            # median of the pairwise ratios cancels the machine's drift.
            return statistics.median(
                a / b for a, b in zip(row.samples, base.samples, strict=True)
            )
        return row.median / base.median

    def render(self) -> str:
        lines = [f"== {self.title}  [{self.seconds:.1f} s]"]
        width = max([len(s) for s in (*self.rows, *self.skipped)] + [6])
        lines.append(
            f"   {'system':<{width}}  {'ratio':>8}  {'vs':<{width}}  "
            f"{'median/op':>10}  {'IQR':>5}  rounds x ops"
        )
        for row in self.rows.values():
            ratio = self.ratio(row.system)
            ratio_s = "-" if ratio is None else f"{ratio:.2f}x"
            lines.append(
                f"   {row.system:<{width}}  {ratio_s:>8}  {row.baseline:<{width}}  "
                f"{fmt_time(row.median):>10}  {row.spread:>4.0%}  "
                f"{row.rounds or len(row.samples)} x {row.ops}"
                + (f"  {row.note}" if row.note else "")
            )
        for system, reason in self.skipped.items():
            lines.append(f"   {system:<{width}}  skipped: {reason}")
        lines.extend(f"   note: {n}" for n in self.notes)
        return "\n".join(lines)


def run_section(
    key: str,
    title: str,
    entries: list[Entry],
    rounds: int,
    skipped: dict[str, str] | None = None,
    warmup: bool = True,
) -> Section:
    """Run every entry ``rounds`` times (after two warm-ups), rotating their order."""
    section = Section(key, title, skipped=dict(skipped or {}))
    started = time.perf_counter()
    try:
        if warmup:
            # two warm-up rounds (-2, -1): the first pays one-time costs (opening,
            # imports, first touch of pages), the second calibrates ``Ops``
            for entry in entries:
                entry.run(-2)
                per_op = entry.run(-1)
                if entry.ops is not None:
                    entry.ops.calibrate(per_op)
        samples: dict[str, list[float]] = {e.system: [] for e in entries}
        for r in range(rounds):
            shift = r % len(entries) if entries else 0
            for entry in entries[shift:] + entries[:shift]:
                samples[entry.system].append(entry.run(r))
        for entry in entries:
            section.rows[entry.system] = Row(
                entry.system,
                entry.baseline,
                samples[entry.system],
                entry.note,
                1 if entry.ops is None else entry.ops.n,
            )
    finally:
        for entry in entries:
            if entry.close is not None:
                entry.close()
    section.seconds = time.perf_counter() - started
    return section


@dataclass
class Stepper:
    """One system of an interleaved section (see ``run_interleaved``).

    ``prepare(r, n)`` does the untimed setup of round ``r`` (e.g. writes the keys
    that will be deleted); ``step(i)`` performs operation ``i`` of the round and
    returns its duration in seconds.
    """

    system: str
    prepare: Callable[[int, int], None]
    step: Callable[[int], float]
    baseline: str
    note: str = ""


def run_interleaved(
    key: str,
    title: str,
    steppers: list[Stepper],
    rounds: int,
    ops: int,
    skipped: dict[str, str] | None = None,
) -> Section:
    """Operations of every system taken in turn, one at a time, each timed alone.

    For operations that wait for the disk (an fsync per commit) the disk's speed
    moves with everything else the machine does; alternating single operations
    makes every system see the same disk, and the median of single operations
    ignores the stalls. The order of the systems rotates with every operation.
    """
    section = Section(key, title, skipped=dict(skipped or {}))
    started = time.perf_counter()
    samples: dict[str, list[float]] = {s.system: [] for s in steppers}
    for r in range(-1, rounds):
        for s in steppers:
            s.prepare(r, ops)
        for i in range(ops):
            shift = i % len(steppers) if steppers else 0
            for s in steppers[shift:] + steppers[:shift]:
                t = s.step(i)
                if r >= 0:  # round -1 warms up
                    samples[s.system].append(t)
    for s in steppers:
        section.rows[s.system] = Row(
            s.system, s.baseline, samples[s.system], s.note, ops, rounds
        )
    section.seconds = time.perf_counter() - started
    return section


@dataclass
class Target:
    label: str
    measured: float | None
    limit: float
    at_least: bool = False
    detail: str = ""
    unit: str = "x"
    informative: bool = False  # a bar of our own, not one of the targets

    @property
    def status(self) -> str:
        if self.measured is None:
            return "SKIP"
        if self.informative:
            return "INFO"
        ok = (
            self.measured >= self.limit
            if self.at_least
            else self.measured <= self.limit
        )
        return "PASS" if ok else "FAIL"

    def line(self) -> str:
        op = ">=" if self.at_least else "<="
        measured = "n/a" if self.measured is None else f"{self.measured:.2f}{self.unit}"
        if self.unit == "" and self.measured is not None:
            measured = f"{self.measured:g}"
        limit = f"{self.limit:g}{self.unit}"
        bar = "measured against" if self.informative else "target"
        text = f"{self.status}  {self.label}: {measured} ({bar} {op} {limit})"
        return text + (f"  [{self.detail}]" if self.detail else "")


class Report:
    """Collects sections and targets; prints each section as soon as it is done."""

    def __init__(self, out: Path | None = None) -> None:
        self.sections: dict[str, Section] = {}
        self.targets: list[Target] = []
        self._out = out.open("w") if out is not None else None

    def emit(self, text: str = "") -> None:
        print(text, flush=True)
        if self._out is not None:
            self._out.write(text + "\n")
            self._out.flush()

    def add(self, section: Section) -> Section:
        self.sections[section.key] = section
        self.emit(section.render())
        self.emit()
        return section

    def target(
        self,
        label: str,
        measured: float | None,
        limit: float,
        *,
        at_least: bool = False,
        detail: str = "",
        unit: str = "x",
        informative: bool = False,
    ) -> None:
        self.targets.append(
            Target(label, measured, limit, at_least, detail, unit, informative)
        )

    def finish(self) -> None:
        if self.targets:
            self.emit("== Targets (issue 4)")
            for target in self.targets:
                self.emit("   " + target.line())
            counts = {
                s: sum(t.status == s for t in self.targets)
                for s in ("PASS", "FAIL", "SKIP", "INFO")
            }
            self.emit("   " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        if self._out is not None:
            self._out.close()


@contextmanager
def scratch_dir(base: str | None = None) -> Iterator[Path]:
    """A temporary directory on the same disk the stores would use (not tmpfs)."""
    path = Path(tempfile.mkdtemp(prefix="persistdict-bench-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def child_env() -> dict[str, str]:
    """The environment of child interpreters: benchmarks/ importable, and bytecode
    cached. With ``PYTHONDONTWRITEBYTECODE`` set, a package from a source tree
    (persistdict, editable or exported) would be compiled at every start while
    pip-installed peers load their ``.pyc``: an unfair start-up handicap."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(BENCH_DIR), env.get("PYTHONPATH", "")) if p
    )
    return env


def run_python(code: str, *args: str, timeout: float = 120) -> str:
    """Run ``code`` in a new interpreter (see ``child_env``); return stdout."""
    env = child_env()
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"child failed with exit code {proc.returncode}:\n{proc.stderr[-2000:]}"
        )
    return proc.stdout


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_head() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=BENCH_DIR,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "../src"],
        cwd=BENCH_DIR,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    origin = _persistdict_origin()
    in_tree = origin.startswith(str(BENCH_DIR.parent / "src"))
    if not in_tree and origin != "not importable":
        flag = " (of benchmarks/; persistdict itself from the path below)"
    else:
        flag = " (src/ has uncommitted changes)" if dirty else ""
    return out.stdout.strip() + flag


def _persistdict_origin() -> str:
    """Where ``import persistdict`` finds the package (a working tree, an export)."""
    import importlib.util

    spec = importlib.util.find_spec("persistdict")
    if spec is None or spec.origin is None:
        return "not importable"
    return str(Path(spec.origin).parent)


def _filesystem(path: Path) -> str:
    try:
        out = subprocess.run(
            ["df", "-T", str(path)], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        return out[-1].split()[1]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unknown"


def header(argv: list[str], tmp_base: Path) -> str:
    dists = [
        "persistdict",
        "lmdb",
        "cachetools",
        "cloudpickle",
        "diskcache",
        "joblib",
        "sqlitedict",
    ]
    backends = []
    for name in ("dbm.gnu", "dbm.ndbm", "dbm.dumb"):
        try:
            __import__(name)
            backends.append(name)
        except ImportError:  # this Python was built without that dbm module
            pass
    lines = [
        "command: "
        + (
            f"PYTHONPATH={os.environ['PYTHONPATH']} "
            if "PYTHONPATH" in os.environ
            else ""
        )
        + " ".join(["python", *argv]),
        f"commit: {_git_head()}",
        f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"python: {platform.python_version()} ({platform.machine()}), "
        f"cpus: {os.cpu_count()}, scratch fs: {_filesystem(tmp_base)}",
        "versions: " + ", ".join(f"{d} {_version(d)}" for d in dists),
        f"persistdict from: {_persistdict_origin()}",
        f"shelve backend: {backends[0] if backends else 'none'}",
        "ratios: median of paired ratios to the named baseline, in this same run",
        "child interpreters write and use bytecode caches (.pyc), as installed code",
    ]
    return "\n".join(lines)


def dump_json(report: Report, path: Path) -> None:
    """Machine-readable copy of a report (medians in seconds, ratios)."""
    data = {
        key: {
            name: {
                "median_s": row.median,
                "ratio": section.ratio(name),
                "vs": row.baseline,
            }
            for name, row in section.rows.items()
        }
        for key, section in report.sections.items()
    }
    data["targets"] = {  # type: ignore[assignment]
        t.label: {"measured": t.measured, "limit": t.limit, "status": t.status}
        for t in report.targets
    }
    path.write_text(json.dumps(data, indent=1))


def markdown(report: Report) -> str:
    """A compact Markdown summary: per table, every system's ratio to its baseline."""
    lines = [
        "| table | baseline | persistdict | peers |",
        "| --- | --- | --- | --- |",
    ]
    for key, section in report.sections.items():
        ours, peers, bases = [], [], []
        for name, row in section.rows.items():
            ratio = section.ratio(name)
            if name == row.baseline:
                bases.append(f"{name} ({fmt_time(row.median)}/op)")
                continue
            cell = f"{name} {ratio:.2f}x" if ratio is not None else f"{name} -"
            if "persist" in name:
                ours.append(cell)
            else:
                peers.append(cell)
        lines.append(
            f"| {key} | {'; '.join(bases)} | {'; '.join(ours)} | {'; '.join(peers)} |"
        )
    lines.append("")
    lines.extend(f"- {t.line()}" for t in report.targets)
    return "\n".join(lines) + "\n"


def run_standalone(
    parts: list[Callable[[Report, bool, Path], None]], quick: bool, tmp: str | None
) -> int:
    """What each benchmark script's ``main`` does: set the sizes, make a scratch
    directory, print the header, run ``parts`` into one report, print it."""
    configure(quick)
    with scratch_dir(tmp) as scratch:
        report = Report()
        report.emit(header(sys.argv, scratch))
        report.emit()
        for part in parts:
            part(report, quick, scratch)
        report.finish()
    return 0
