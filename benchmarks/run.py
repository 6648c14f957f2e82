"""Run every benchmark side by side in one run and print the tables and targets.

    python benchmarks/run.py                 # full run, a few minutes on 2 cores
    python benchmarks/run.py --quick         # about 30 s, smaller samples
    python benchmarks/run.py --only memo     # store, memo, concurrency (comma list)
    python benchmarks/run.py --out benchmarks/results/latest.txt

See benchmarks/README.md for what each table measures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import bench_concurrency
import bench_memo
import bench_store
from harness import Report, configure, dump_json, header, markdown, scratch_dir

PARTS = {
    "store": bench_store.run,
    "memo": bench_memo.run,
    "concurrency": bench_concurrency.run,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small samples, ~30 s")
    parser.add_argument(
        "--only", default=",".join(PARTS), help="comma list of: " + ", ".join(PARTS)
    )
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    parser.add_argument("--json", type=Path, help="write medians and ratios as JSON")
    parser.add_argument("--markdown", type=Path, help="write a Markdown summary")
    parser.add_argument("--tmp", default=None, help="scratch directory (default: temp)")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {unknown}; choose from {list(PARTS)}")
    configure(args.quick)
    started = time.perf_counter()
    with scratch_dir(args.tmp) as tmp:
        report = Report(args.out)
        report.emit(header(sys.argv if argv is None else ["run.py", *argv], tmp))
        report.emit()
        for part in parts:
            (tmp / part).mkdir()
            PARTS[part](report, args.quick, tmp / part)
        report.emit(f"total wall time: {time.perf_counter() - started:.0f} s")
        report.emit()
        report.finish()
        if args.json:
            dump_json(report, args.json)
        if args.markdown:
            args.markdown.write_text(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
