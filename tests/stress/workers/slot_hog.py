"""Take reader slots with py-lmdb directly, then wait to be killed.

Usage: slot_hog.py PATH MAX   (MAX 0: until LMDB says the table is full)

What a process killed while reading leaves: slots still marked with its pid,
pinning the snapshot they read.
"""

from __future__ import annotations

import sys
import time

import lmdb


def main() -> None:
    env = lmdb.open(sys.argv[1], max_dbs=8, max_readers=1024)
    limit = int(sys.argv[2]) or 1 << 30
    txns = []
    try:
        while len(txns) < limit:
            txns.append(env.begin())
    except lmdb.ReadersFullError:
        pass
    sys.stdout.write(f"{len(txns)}\n")
    sys.stdout.flush()
    time.sleep(600)


if __name__ == "__main__":
    main()
