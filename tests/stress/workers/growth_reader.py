"""Keep reading a growing store until its writer is done; check every value.

Usage: growth_reader.py PATH SEED
"""

from __future__ import annotations

import json
import random
import sys
import time

from persistdict import PersistDict


def main() -> None:
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from grower import blob

    path, rng = sys.argv[1], random.Random(int(sys.argv[2]))
    d = PersistDict(path, cache_size=0)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    reads = wrong = lens = 0
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        done = d.get("done", False)
        count = d.get("count", 0)
        if count:
            i = rng.randrange(count)
            reads += 1
            if d.get(i) != blob(i):
                wrong += 1
        if rng.random() < 0.05:
            lens += 1
            if len(d) < count:
                wrong += 1
        if done:
            break
    d.close()
    sys.stdout.write(json.dumps({"reads": reads, "wrong": wrong, "lens": lens}) + "\n")


if __name__ == "__main__":
    main()
