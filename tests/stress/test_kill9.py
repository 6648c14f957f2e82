"""20 rounds of SIGKILL of a writer at random moments, inside large updates too."""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path
from typing import Any

from persistdict import PersistDict

ROUNDS = 20
FIXED = 300


def _value(n: int, i: int = 0) -> tuple[int, int, bytes]:
    return (n, i, b"%d:%d|" % (n, i) * (1 + (n * 7 + i) % 60))


def _keys_of(op: dict[str, Any]) -> dict[str, Any]:
    """The entries an operation leaves (a None value: the key is deleted)."""
    n = op["n"]
    if op["op"] == "set":
        return {f"s:{n}": _value(n)}
    if op["op"] == "upd":
        return {f"u:{n % 6}:{i}": _value(n, i) for i in range(op["m"])}
    if op["op"] == "fix":
        return {f"fixed:{i}": _value(n, i) for i in range(FIXED)}
    return {op["key"]: None}


def test_twenty_sigkills_lose_no_acknowledged_write_and_leave_no_half_update(
    tmp_path: Path, stress: Any, workers: list[Any]
) -> None:
    path = tmp_path / "store"
    log = tmp_path / "log.jsonl"
    rng = random.Random(20)
    model: dict[str, Any] = {}  # the store as the acknowledged operations left it
    figures = dict.fromkeys(
        ["acknowledged", "lost", "wrong", "half", "killed_in_op", "in_flight_landed"], 0
    )
    in_flight_ops: dict[str, int] = {}
    started = time.monotonic()
    seq = 0
    for round_ in range(ROUNDS):
        proc = stress.start("killed_writer", path, log, seq, round_, round_ % 2 == 0)
        workers.append(proc)
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL

        # Replay this round's log into the model; keep the op left in flight.
        pending: dict[str, Any] | None = None
        for line in log.read_text().splitlines():
            row = json.loads(line)
            if "ack" in row:
                assert pending is not None
                assert pending["n"] == row["ack"]
                for key, value in _keys_of(pending).items():
                    if value is None:
                        model.pop(key, None)
                    else:
                        model[key] = value
                figures["acknowledged"] += 1
                pending = None
            else:
                pending = row
                seq = row["n"]
        log.unlink()

        # The store opens, every acknowledged write is there, and the op in
        # flight at the kill is wholly there or wholly absent.
        with PersistDict(path) as d:
            stored = dict(d.items())
        expected = dict(model)
        if pending is not None:
            figures["killed_in_op"] += 1
            in_flight_ops[pending["op"]] = in_flight_ops.get(pending["op"], 0) + 1
            after = _keys_of(pending)
            landed = [stored.get(k) == v for k, v in after.items()]
            if all(landed):
                figures["in_flight_landed"] += 1
                for key, value in after.items():
                    if value is None:
                        model.pop(key, None)
                    else:
                        model[key] = value
                expected = dict(model)
            elif any(landed) and pending["op"] != "del":
                figures["half"] += 1
        for key, value in expected.items():
            if key not in stored:
                figures["lost"] += 1
            elif stored[key] != value:
                figures["wrong"] += 1
        extra = [key for key in stored if key not in expected]
        figures["wrong"] += len(extra)
        assert (figures["lost"], figures["wrong"], figures["half"]) == (0, 0, 0), (
            round_,
            pending,
            extra[:5],
        )
    stress.report(
        f"{ROUNDS} x SIGKILL of a writer",
        seconds=round(time.monotonic() - started, 1),
        **figures,
        killed_during=in_flight_ops,
        final_entries=len(model),
        data_mdb_bytes=(path / "data.mdb").stat().st_size,
    )
    assert figures["acknowledged"] > ROUNDS
    assert figures["killed_in_op"] >= ROUNDS // 2  # most kills hit an operation
