"""One process of the mixed-operations scenario: 2 threads, a bounded run.

Usage: mixed_ops.py PATH PROC START_AT SECONDS LOG N_OWN N_SHARED DURABLE

Each thread owns the keys ``own:PROC:THREAD:i`` (nobody else writes them, so
every read of them must equal this thread's model) and shares ``shared:j`` with
every other thread. Every acknowledged write is appended to LOG as a JSON line
``[op, key, proc, thread, seq, t_start, t_ack]`` (monotonic ns, one clock for
all processes on Linux); a value is rebuilt from (key, proc, thread, seq).
Prints a JSON summary on the last line.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import threading
import time

from persistdict import PersistDict


def make_value(key: str, proc: int, thread: int, seq: int) -> tuple[object, ...]:
    blob = hashlib.blake2b(f"{key}|{proc}|{thread}|{seq}".encode()).digest()
    return (key, proc, thread, seq, blob * (seq % 40 + 1))


def well_formed(key: str, value: object) -> bool:
    if not isinstance(value, tuple) or len(value) != 5 or value[0] != key:
        return False
    return value == make_value(key, value[1], value[2], value[3])


def main() -> None:
    path = sys.argv[1]
    proc = int(sys.argv[2])
    start_at = float(sys.argv[3])
    seconds = float(sys.argv[4])
    log_fd = os.open(sys.argv[5], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    n_own = int(sys.argv[6])
    n_shared = int(sys.argv[7])
    durable = sys.argv[8] == "True"
    # Two handles, one per thread: they share one environment and memory layer.
    handles = [
        PersistDict(path, durable=durable),
        PersistDict(path, durable=durable),
    ]
    counts = {"ops": 0, "acked": 0, "reads": 0, "wrong_reads": 0, "updates": 0}
    counts_lock = threading.Lock()
    errors: list[str] = []

    def log(rows: list[list[object]]) -> None:
        os.write(log_fd, "".join(json.dumps(r) + "\n" for r in rows).encode())

    def work(thread: int) -> None:
        d = handles[thread]
        rng = random.Random(proc * 1000 + thread)
        model: dict[str, tuple[object, ...]] = {}
        own = [f"own:{proc}:{thread}:{i}" for i in range(n_own)]
        shared = [f"shared:{j}" for j in range(n_shared)]
        local = dict.fromkeys(counts, 0)
        seq = 0
        while time.time() < start_at:
            time.sleep(0.005)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            seq += 1
            op = rng.random()
            local["ops"] += 1
            t0 = time.monotonic_ns()
            if op < 0.25:  # set an own key
                key = rng.choice(own)
                value = make_value(key, proc, thread, seq)
                d[key] = value
                model[key] = value
                log([["set", key, proc, thread, seq, t0, time.monotonic_ns()]])
            elif op < 0.45:  # read an own key: must be exactly the model
                key = rng.choice(own)
                local["reads"] += 1
                if d.get(key) != model.get(key):
                    local["wrong_reads"] += 1
                    errors.append(f"own read {key}: {d.get(key)!r:.80}")
                continue
            elif op < 0.55:  # delete an own key
                key = rng.choice(own)
                got = d.pop(key, None)
                if got != model.pop(key, None):
                    local["wrong_reads"] += 1
                    errors.append(f"own pop {key}")
                log([["del", key, proc, thread, seq, t0, time.monotonic_ns()]])
            elif op < 0.70:  # set a shared key
                key = rng.choice(shared)
                d[key] = make_value(key, proc, thread, seq)
                log([["set", key, proc, thread, seq, t0, time.monotonic_ns()]])
            elif op < 0.75:  # delete a shared key
                key = rng.choice(shared)
                d.pop(key, None)
                log([["del", key, proc, thread, seq, t0, time.monotonic_ns()]])
            elif op < 0.85:  # read a shared or a foreign key: well formed or absent
                key = (
                    rng.choice(shared)
                    if op < 0.80
                    else (
                        f"own:{rng.randrange(8)}:{rng.randrange(2)}:"
                        f"{rng.randrange(n_own)}"
                    )
                )
                local["reads"] += 1
                got = d.get(key)
                if got is not None and not well_formed(key, got):
                    local["wrong_reads"] += 1
                    errors.append(f"shared read {key}: {got!r:.80}")
                continue
            else:  # one update() of own and shared keys: one transaction
                keys = rng.sample(own, rng.randint(2, 12))
                keys += rng.sample(shared, rng.randint(0, 3))
                batch = {key: make_value(key, proc, thread, seq) for key in keys}
                d.update(batch)
                t1 = time.monotonic_ns()
                for key, value in batch.items():
                    if key.startswith("own:"):
                        model[key] = value
                log([["set", key, proc, thread, seq, t0, t1] for key in batch])
                local["updates"] += 1
            local["acked"] += 1
        # Read back everything this thread owns once more before leaving.
        for key in own:
            local["reads"] += 1
            if d.get(key) != model.get(key):
                local["wrong_reads"] += 1
                errors.append(f"final own read {key}")
        with counts_lock:
            for name, value in local.items():
                counts[name] += value

    threads = [threading.Thread(target=work, args=(t,)) for t in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for d in handles:
        d.close()
    os.close(log_fd)
    sys.stdout.write(json.dumps({**counts, "errors": errors[:5]}) + "\n")


if __name__ == "__main__":
    main()
