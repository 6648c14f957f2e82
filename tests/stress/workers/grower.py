"""Grow a store to N MiB of 1 MiB values (durable=False), 8 values per update().

Usage: grower.py PATH N

The value of key ``i`` is ``blob(i)``; ``count`` holds how many are stored and
is written in the same transaction as the values it counts.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time

from persistdict import PersistDict


def blob(i: int) -> bytes:
    return hashlib.blake2b(str(i).encode()).digest() * 16384  # 1 MiB


def main() -> None:
    path, n = sys.argv[1], int(sys.argv[2])
    started = time.monotonic()
    d = PersistDict(path, durable=False, cache_size=0)
    for first in range(0, n, 8):
        batch: dict[object, object] = {
            i: blob(i) for i in range(first, min(n, first + 8))
        }
        batch["count"] = min(n, first + 8)
        d.update(batch)
    written = time.monotonic() - started
    d["done"] = True
    d.close()  # syncs to disk
    sys.stdout.write(
        json.dumps(
            {
                "written_s": round(written, 1),
                "total_s": round(time.monotonic() - started, 1),
            }
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
