"""The in-memory layer's LRU: a hit marks its entry, eviction gives marked
entries a second chance (CLOCK), compared with an exact LRU on random traces;
and how the layer replaces its caches when a handle asks for more."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import hypothesis.strategies as st
from hypothesis import given

from persistdict import PersistDict
from persistdict._codec import is_immutable
from persistdict._lru import SecondChanceLRU
from persistdict._memory import MemoryLayer


def test_values_the_layer_may_share() -> None:
    import datetime as dt
    import decimal
    import fractions
    import uuid

    now = dt.datetime.now(dt.timezone.utc)
    shared = [now, now.date(), now.time(), dt.timedelta(1), dt.timezone.utc]
    shared += [decimal.Decimal("1.5"), fractions.Fraction(1, 3), uuid.uuid4()]
    shared += [(1, "a", (now,)), frozenset({now.date()})]
    for value in shared:
        assert is_immutable(value), value

    class Decimal:  # a look-alike: same module and name, another class
        pass

    Decimal.__module__ = "decimal"
    for value in ([1], {"a": 1}, (1, [2]), Decimal(), bytearray(b"x")):
        assert not is_immutable(value), value


def test_a_hit_entry_survives_the_next_eviction() -> None:
    cache = SecondChanceLRU(3)
    for key in (b"a", b"b", b"c"):
        cache[key] = (key, b"", True, 0.0)
    layer = MemoryLayer()
    layer._caches["codec"] = cache
    layer.known_txn = 7
    assert layer.get("codec", 7, b"a") == (b"a", b"", True, 0.0)  # a hit marks "a"
    cache[b"d"] = (b"d", b"", True, 0.0)  # full: evicts the oldest unmarked, "b"
    assert set(cache) == {b"a", b"c", b"d"}
    cache[b"e"] = (b"e", b"", True, 0.0)  # "a" had its second chance: now "c" goes
    assert set(cache) == {b"a", b"d", b"e"}
    assert set(cache.entries) == {b"a", b"d", b"e"}
    cache.forget(b"a")
    cache.clear()
    assert cache.entries == {}
    assert layer.get("codec", 6, b"a") is None  # not known current at txn 6


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 9)), max_size=200))
def test_never_larger_than_maxsize_and_holds_recent_inserts(
    ops: list[tuple[bool, int]],
) -> None:
    cache = SecondChanceLRU(4)
    exact: OrderedDict[bytes, int] = OrderedDict()
    for is_read, number in ops:
        key = bytes([number])
        if is_read:
            if key in cache:
                cache.referenced.add(key)
        else:
            cache[key] = number  # type: ignore[assignment]
            exact[key] = number
            exact.move_to_end(key)
        assert len(cache) <= 4
        assert set(cache.entries) == set(cache)  # the lock-free mirror is exact
        if not is_read:
            assert key in cache  # what was just stored is held
    for key in cache:
        assert cache[key] == exact[key]  # values are never mixed up


def test_a_larger_request_moves_entries_and_empties_the_old_cache(
    tmp_path: Path,
) -> None:
    # Reads take a cache from the layer before they check that the layer is
    # current, and their entry after: a cache that a larger request replaced
    # must hold nothing, since later writes update only the new one.
    small = PersistDict(tmp_path / "store", cache_size=2)
    small["k"] = ["v1"]
    assert small["k"] == ["v1"]
    assert small["k"] == ["v1"]  # the second read admits it to the layer
    layer = small._env.layer
    (old,) = layer._caches.values()
    assert b"\x01k" in old.entries
    large = PersistDict(tmp_path / "store", cache_size=100)
    (new,) = layer._caches.values()
    assert new is not old
    assert b"\x01k" in new.entries
    assert not old.entries
    assert not old.referenced
    # Both handles read the new cache from now on (their box, see layer.box).
    assert small._layer_box[0] is large._layer_box[0] is new
    large["k"] = ["v2"]
    assert small["k"] == ["v2"]
    assert large["k"] == ["v2"]
    small.close()
    large.close()


def test_a_value_admitted_late_by_a_reader_never_outlives_a_newer_write(
    tmp_path: Path,
) -> None:
    # A reader that read "old" at commit N admits it after a writer committed
    # N+1, which told the layer nothing (a layer that held nothing is not told):
    # the layer then says it is current only at N, so no read serves the entry.
    import pickle
    import time

    d = PersistDict(tmp_path / "store")
    d["k"] = "old"
    env = d._env
    layer = env.layer
    with env.env.begin() as txn:
        read_at = txn.id()
    d["k"] = ["new"]
    assert not layer._caches  # nothing admitted yet: the write told nothing
    layer.known_txn = max(layer.known_txn, read_at)  # as the reader saw it
    stale = d._layer_entry("old", pickle.dumps("old", protocol=5), time.time())
    layer.put(d._codec_key, read_at, b"\x01k", stale)
    assert layer._caches  # the late admission landed
    assert d["k"] == ["new"]
    assert d.get("k") == ["new"]
    assert d["k"] == ["new"]  # and now from the layer, if admitted: still new
    d.close()
