"""Rewrite every value of a store ROUNDS times, 200 entries per update().

Usage: rewriter.py PATH ROUNDS
"""

from __future__ import annotations

import json
import sys
import time

from persistdict import PersistDict


def main() -> None:
    path, rounds = sys.argv[1], int(sys.argv[2])
    started = time.monotonic()
    with PersistDict(path) as d:
        keys = list(d)
        for r in range(rounds):
            for first in range(0, len(keys), 200):
                d.update({k: (r, b"v" * 2000) for k in keys[first : first + 200]})
    sys.stdout.write(
        json.dumps(
            {"rewritten": rounds * len(keys), "seconds": time.monotonic() - started}
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
