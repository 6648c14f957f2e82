"""Start iterating a store, hold the iterator until told, then finish it.

Usage: held_iterator.py PATH
"""

from __future__ import annotations

import json
import sys

from persistdict import PersistDict


def main() -> None:
    with PersistDict(sys.argv[1]) as d:
        it = iter(d.items())
        seen = [next(it)[0] for _ in range(10)]
        sys.stdout.write("holding\n")
        sys.stdout.flush()
        sys.stdin.readline()
        seen += [key for key, _value in it]
    sys.stdout.write(json.dumps({"seen": len(seen), "distinct": len(set(seen))}) + "\n")


if __name__ == "__main__":
    main()
