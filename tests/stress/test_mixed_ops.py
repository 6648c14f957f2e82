"""8 processes x 2 threads of mixed operations, checked against their logs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from persistdict import PersistDict

PROCESSES = 8
SECONDS = 5.0
N_OWN = 40
N_SHARED = 12


def _value(key: str, proc: int, thread: int, seq: int) -> tuple[object, ...]:
    import hashlib

    blob = hashlib.blake2b(f"{key}|{proc}|{thread}|{seq}".encode()).digest()
    return (key, proc, thread, seq, blob * (seq % 40 + 1))


def test_eight_processes_two_threads_mixed_operations(
    tmp_path: Path, stress: Any, workers: list[Any]
) -> None:
    path = tmp_path / "store"
    PersistDict(path).close()
    logs = [tmp_path / f"log-{p}.jsonl" for p in range(PROCESSES)]
    started = time.monotonic()
    start_at = time.time() + 2.0  # every process imported and opened by then
    for p in range(PROCESSES):
        workers.append(
            stress.start(
                "mixed_ops",
                path,
                p,
                start_at,
                SECONDS,
                logs[p],
                N_OWN,
                N_SHARED,
                p % 2 == 0,  # durable in even processes, fsync-free in odd ones
            )
        )
    summaries = [json.loads(stress.finish(w, 180).splitlines()[-1]) for w in workers]
    run_seconds = time.monotonic() - started

    # Replay the logs. Own keys have one writer: the last logged op decides.
    # Shared keys: the final state must come from an op that no other op on the
    # key started after (t_start > its t_ack), i.e. one that may have been last.
    last_own: dict[str, list[Any]] = {}
    shared_ops: dict[str, list[list[Any]]] = {}
    acknowledged = 0
    for log in logs:
        for line in log.read_text().splitlines():
            row = json.loads(line)
            acknowledged += 1
            key = row[1]
            if key.startswith("own:"):
                last_own[key] = row
            else:
                shared_ops.setdefault(key, []).append(row)

    lost = wrong = 0
    problems: list[str] = []
    with PersistDict(path) as d:
        stored = dict(d.items())
        assert len(d) == len(stored)
        for key, row in last_own.items():
            if row[0] == "set":
                expected = _value(key, row[2], row[3], row[4])
                if key not in stored:
                    lost += 1
                    problems.append(f"lost {key}")
                elif stored[key] != expected:
                    wrong += 1
                    problems.append(f"wrong {key}")
            elif key in stored:
                wrong += 1
                problems.append(f"deleted {key} is back")
        for key, ops in shared_ops.items():
            latest_start = max(op[5] for op in ops)
            # ops that may have been the last to commit on this key
            maybe_last = [op for op in ops if op[6] >= latest_start]
            if key in stored:
                value = stored[key]
                ok = any(
                    op[0] == "set" and value == _value(key, op[2], op[3], op[4])
                    for op in maybe_last
                )
                if not ok:
                    wrong += 1
                    problems.append(f"shared {key} holds {value[1:4]!r}")
            elif not any(op[0] == "del" for op in maybe_last):
                lost += 1
                problems.append(f"shared {key} missing")
        known = set(last_own) | set(shared_ops)
        strangers = [key for key in stored if key not in known]

    wrong_reads = sum(s["wrong_reads"] for s in summaries)
    stress.report(
        "8 processes x 2 threads mixed",
        seconds=round(run_seconds, 1),
        ops=sum(s["ops"] for s in summaries),
        reads=sum(s["reads"] for s in summaries),
        updates=sum(s["updates"] for s in summaries),
        acknowledged=sum(s["acked"] for s in summaries),
        logged_writes=acknowledged,
        lost=lost,
        wrong=wrong,
        wrong_reads=wrong_reads,
        final_entries=len(stored),
        data_mdb_bytes=(path / "data.mdb").stat().st_size,
    )
    assert not strangers, strangers[:5]
    assert (lost, wrong, wrong_reads) == (0, 0, 0), (
        problems[:10],
        [s["errors"] for s in summaries],
    )
    assert sum(s["acked"] for s in summaries) > 500  # the run did real work
