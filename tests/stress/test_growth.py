"""Growth to more than 1 GiB of values while readers in other processes read."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from persistdict import PersistDict

MIB = 1 << 20
VALUES = 1100  # 1 MiB each: 1.07 GiB


def test_growth_past_one_gib_while_other_processes_read(
    tmp_path: Path, stress: Any, workers: list[Any]
) -> None:
    path = tmp_path / "store"
    try:
        with PersistDict(path) as d:  # opened with the default 64 MiB map
            initial_map = d._live().env.info()["map_size"]
        started = time.monotonic()
        readers = [stress.start("growth_reader", path, seed) for seed in range(2)]
        workers.extend(readers)
        for reader in readers:
            assert reader.stdout.readline().strip() == "ready"
        writer = stress.start("grower", path, VALUES)
        workers.append(writer)
        wrote = json.loads(stress.finish(writer, 170).splitlines()[-1])
        read = [json.loads(stress.finish(r, 60).splitlines()[-1]) for r in readers]

        with PersistDict(path, cache_size=0) as d:
            assert d["count"] == VALUES
            sample = [*range(0, VALUES, 7), VALUES - 1]
            wrong = sum(1 for i in sample if d[i] != _blob(i))
            final_map = d._live().env.info()["map_size"]
            entries = len(d)
        size = (path / "data.mdb").stat().st_size
        stress.report(
            "growth past 1 GiB with 2 readers",
            seconds=round(time.monotonic() - started, 1),
            writer=wrote,
            data_mdb_mib=size // MIB,
            map_mib=f"{initial_map // MIB}->{final_map // MIB}",
            entries=entries,
            reader_reads=[r["reads"] for r in read],
            reader_wrong=[r["wrong"] for r in read],
            final_checked=len(sample),
            final_wrong=wrong,
        )
        assert size >= VALUES * MIB
        assert entries == VALUES + 2
        assert wrong == 0
        assert all(r["wrong"] == 0 and r["reads"] > 0 for r in read)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _blob(i: int) -> bytes:
    import hashlib

    return hashlib.blake2b(str(i).encode()).digest() * 16384
