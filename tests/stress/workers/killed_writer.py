"""A writer to be killed with SIGKILL at a random moment.

Usage: killed_writer.py PATH LOG FIRST_SEQ SEED DURABLE

Runs operations numbered from FIRST_SEQ until killed: a set, a large update() of
new keys, an update() that overwrites the same 300 keys, or a delete. Before an
operation it appends ``{"n", "op", ...}`` to LOG; after the call returns it
appends ``{"ack": n}`` (os.write, so a line written is in the kernel before the
next operation starts, and survives the kill).
"""

from __future__ import annotations

import json
import os
import random
import sys

from persistdict import PersistDict

FIXED = 300


def value(n: int, i: int = 0) -> tuple[int, int, bytes]:
    return (n, i, b"%d:%d|" % (n, i) * (1 + (n * 7 + i) % 60))


def main() -> None:
    path, log_path = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3])
    rng = random.Random(int(sys.argv[4]))
    d = PersistDict(path, durable=sys.argv[5] == "True")
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    sets: list[int] = []
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        n += 1
        pick = rng.random()
        if pick < 0.2:
            op: dict[str, object] = {"n": n, "op": "set"}
        elif pick < 0.6:
            op = {"n": n, "op": "upd", "m": rng.randint(200, 2000)}
        elif pick < 0.9:
            op = {"n": n, "op": "fix"}
        elif sets:
            op = {"n": n, "op": "del", "key": f"s:{sets.pop(rng.randrange(len(sets)))}"}
        else:
            continue
        os.write(fd, (json.dumps(op) + "\n").encode())
        if op["op"] == "set":
            d[f"s:{n}"] = value(n)
            sets.append(n)
        elif op["op"] == "upd":
            d.update({f"u:{n % 6}:{i}": value(n, i) for i in range(int(str(op["m"])))})
        elif op["op"] == "fix":
            d.update({f"fixed:{i}": value(n, i) for i in range(FIXED)})
        else:
            del d[str(op["key"])]
        os.write(fd, (json.dumps({"ack": n}) + "\n").encode())


if __name__ == "__main__":
    main()
