"""Begin a write transaction on a store with py-lmdb directly, then wait to be killed.

Usage: dead_lock_holder.py PATH

Holds LMDB's write mutex and a reader slot (a second, read, transaction) when the
SIGKILL arrives: what a process that died mid-write leaves in lock.mdb.
"""

from __future__ import annotations

import sys
import time

import lmdb


def main() -> None:
    env = lmdb.open(sys.argv[1], max_dbs=8, max_readers=1024)
    reader = env.begin()
    reader.get(b"\x01anything")  # the rows are in the main database
    txn = env.begin(write=True)
    txn.put(b"\x01half-written", b"\x00" * 100)
    sys.stdout.write("holding\n")
    sys.stdout.flush()
    time.sleep(600)


if __name__ == "__main__":
    main()
