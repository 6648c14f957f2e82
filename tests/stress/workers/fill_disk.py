"""Write into a store until the disk (or RLIMIT_FSIZE) is full; check what survives.

Usage: fill_disk.py PATH LIMIT_BYTES   (LIMIT_BYTES 0: no rlimit, a tiny tmpfs)

Prints a JSON summary: the exception type and message of the failed write,
whether earlier entries read back intact in the same process, and whether the
store keeps working (a small write after freeing room).
"""

from __future__ import annotations

import json
import os
import resource
import sys

import lmdb

from persistdict import PersistDict, PersistDictError

# What a failed write may raise today: the test judges which one it was.
WRITE_ERRORS = (PersistDictError, lmdb.Error, OSError)


def main() -> None:
    path, limit = sys.argv[1], int(sys.argv[2])
    d = PersistDict(path)
    kept = {f"kept:{i}": os.urandom(1000) for i in range(50)}
    d.update(kept)
    if limit:
        size = os.path.getsize(os.path.join(path, "data.mdb"))
        resource.setrlimit(
            resource.RLIMIT_FSIZE, (size + limit, resource.RLIM_INFINITY)
        )
    written = 0
    error: list[str] = []
    for i in range(100_000):
        try:
            d[f"fill:{i}"] = os.urandom(50_000)
        except WRITE_ERRORS as exc:
            error = [f"{type(exc).__module__}.{type(exc).__qualname__}", str(exc)]
            break
        written += 1
    intact_after_error = all(d[k] == v for k, v in kept.items())
    lost_acked = sum(1 for i in range(written) if f"fill:{i}" not in d)
    # Free room (delete what was filled; LMDB reuses the pages) or lift the limit.
    if limit:
        resource.setrlimit(
            resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        )
    recovered = ""
    try:
        for i in range(written):
            del d[f"fill:{i}"]
        d["small"] = b"x" * 100
        recovered = "ok" if d["small"] == b"x" * 100 else "wrong"
    except WRITE_ERRORS as exc:
        recovered = f"{type(exc).__name__}: {exc}"
    d.close()
    sys.stdout.write(
        json.dumps(
            {
                "written": written,
                "error": error,
                "intact_after_error": intact_after_error,
                "lost_acked": lost_acked,
                "recovered": recovered,
                "kept": {k: v.hex() for k, v in kept.items()},
            }
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
