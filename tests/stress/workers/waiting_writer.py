"""Open a store, wait for a line on stdin, then write and read back.

Usage: waiting_writer.py PATH
"""

from __future__ import annotations

import json
import sys

from persistdict import PersistDict


def main() -> None:
    d = PersistDict(sys.argv[1])
    before = dict(d.items())
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()
    d["after-the-dead-writer"] = 1
    d.update({f"more:{i}": i for i in range(100)})
    ok = d["after-the-dead-writer"] == 1 and all(d[k] == v for k, v in before.items())
    sys.stdout.write(
        json.dumps({"before": len(before), "ok": ok, "len": len(d)}) + "\n"
    )
    d.close()


if __name__ == "__main__":
    main()
