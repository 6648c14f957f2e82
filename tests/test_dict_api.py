"""PersistDict answers every dict method as a dict with the same contents."""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import pickle
import threading
import weakref
import zlib
from pathlib import Path
from typing import Any

import pytest

import persistdict._dict
from persistdict import (
    EntryMetadata,
    PersistDict,
    PersistDictError,
    ReadOnlyError,
    StoreClosedError,
)

# Names on dict that need no override: construction and class machinery.
NOT_OVERRIDDEN = {
    "__new__",
    "__init_subclass__",
    "__class_getitem__",
    "__getattribute__",
    "__doc__",
    "__sizeof__",
}


def test_every_public_dict_method_is_overridden() -> None:
    missing = [
        name
        for name in vars(dict)
        if name not in NOT_OVERRIDDEN and name not in vars(PersistDict)
    ]
    assert missing == [], f"dict methods a PersistDict would answer as empty: {missing}"


def test_is_a_dict_and_reads_like_one(store: PersistDict) -> None:
    assert isinstance(store, dict)
    store["a"] = 1
    store["b"] = [1, 2]
    reference = {"a": 1, "b": [1, 2]}
    assert store == reference
    assert reference == store
    assert store != {"a": 1}
    assert repr(store) == repr(reference)
    assert str(store) == str(reference)
    assert f"{store}" == f"{reference}"
    assert dict(store) == reference
    assert {**store} == reference
    assert store.copy() == reference
    assert type(store.copy()) is dict
    assert list(store) == ["a", "b"]
    assert list(reversed(store)) == ["b", "a"]
    assert list(reversed(store.keys())) == ["b", "a"]
    assert list(reversed(store.values())) == [[1, 2], 1]
    assert list(reversed(store.items())) == [("b", [1, 2]), ("a", 1)]
    assert repr(store.keys()) == repr(reference.keys())
    assert repr(store.values()) == repr(reference.values())
    assert repr(store.items()) == repr(reference.items())
    assert store.keys() == reference.keys()
    assert store.keys() & {"a", "z"} == {"a"}
    assert ("a", 1) in store.items()
    assert ("a", 2) not in store.items()
    assert 1 in store.values()
    assert store | {"c": 3} == reference | {"c": 3}
    assert {"c": 3} | store == {"c": 3} | reference
    assert len(store) == 2
    assert bool(store)
    with pytest.raises(TypeError, match="unhashable"):
        hash(store)


def test_json_needs_a_plain_dict(store: PersistDict) -> None:
    store["a"] = 1
    # The C encoder reads dict storage directly: documented in the README.
    assert json.dumps(dict(store)) == '{"a": 1}'


def test_missing_keys_raise_keyerror_with_the_key(store: PersistDict) -> None:
    with pytest.raises(KeyError) as info:
        store["nope"]
    assert info.value.args == ("nope",)
    with pytest.raises(KeyError):
        del store["nope"]
    with pytest.raises(KeyError):
        store.pop("nope")
    assert store.pop("nope", 5) == 5
    with pytest.raises(KeyError, match="empty"):
        store.popitem()


def test_kept_keyerrors_do_not_hold_reader_slots(store: PersistDict) -> None:
    # An aborted read transaction keeps its LMDB reader slot until it is freed;
    # a KeyError kept by the caller keeps the frame that raised it. 1,024 kept
    # exceptions once filled every slot, and every later read failed.
    import persistdict._env

    store["a"] = 1
    kept: list[KeyError] = []
    for i in range(2 * persistdict._env.MAX_READERS):
        for read in (store.__getitem__, store.metadata):
            with pytest.raises(KeyError) as info:
                read(f"missing-{i}")
            kept.append(info.value)
    assert store["a"] == 1
    assert len(kept) == 4 * persistdict._env.MAX_READERS


def test_unhashable_key_raises_typeerror_like_a_dict(store: PersistDict) -> None:
    for op in (
        lambda: store.__setitem__([1], 1),
        lambda: store[[1]],
        lambda: [1] in store,
        lambda: store.get({}),
    ):
        with pytest.raises(TypeError, match="unhashable"):
            op()


def test_keys_of_many_types_round_trip(store: PersistDict) -> None:
    keys: list[Any] = [
        "s",
        "",
        "é\udc80",
        b"bytes",
        7,
        -(10**30),
        2.5,
        None,
        (1, "a", (b"x", None)),
        frozenset({1, 2, 3}),
        True,
        dt.date(2024, 1, 2),
    ]
    reference: dict[Any, Any] = {}
    for index, key in enumerate(keys):
        store[key] = reference[key] = index
    assert list(store) == keys
    for index, key in enumerate(keys):
        assert store[key] == index
    # As in a dict, equal numbers are one key, and the first key object stays.
    for d in (store, reference):
        d[1.0] = "float after bool"
        d[2.0] = "float first"
        d[2] = "then int"
        d[(1.0, "a", (b"x", None))] = "equal tuple"
    assert store == reference
    assert [type(k) for k in store] == [type(k) for k in reference]
    assert repr(store) == repr(reference)


def test_long_keys_are_hashed_and_round_trip(store: PersistDict) -> None:
    long_str = "x" * 5000
    long_tuple = tuple(range(400))
    store[long_str] = 1
    store[long_tuple] = 2
    assert store[long_str] == 1
    assert store[long_tuple] == 2
    assert list(store) == [long_str, long_tuple]
    assert (long_str + "y") not in store
    del store[long_str]
    assert list(store) == [long_tuple]


@pytest.mark.parametrize("length", [509, 510, 511, 512])
@pytest.mark.parametrize("cache_size", [0, 128])
def test_keys_at_the_id_length_limit(
    store_path: Path, length: int, cache_size: int
) -> None:
    # A str key's id is 1 + its UTF-8 length: up to 511 bytes (LMDB's largest
    # key) it is the key itself, longer ones are stored under their hash. A
    # read looks the id up whole and LMDB refuses the longer ones.
    key, other = "k" * length, "j" * length
    with PersistDict(store_path, cache_size=cache_size) as store:
        with pytest.raises(KeyError) as missing:
            store[key]
        assert missing.value.args == (key,)
        assert missing.value.__context__ is None  # no LMDB error behind it
        assert store.get(key, "default") == "default"
        assert key not in store
        store[key] = length
        for _ in range(3):  # the second read of a key may enter the layer
            assert store[key] == length
            assert store.get(key) == length
        assert key in store
        assert other not in store
        assert store.get(other) is None
        assert list(store) == [key]
        del store[key]
        assert store.get(key) is None


def test_hash_collisions_never_return_the_wrong_value(
    store: PersistDict, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every long key gets the same hash: entries must still be told apart.
    monkeypatch.setattr(persistdict._dict, "long_key_digest", lambda _b: b"\0" * 16)
    keys = ["a" * 600, "b" * 600, "c" * 600]
    for index, key in enumerate(keys):
        store[key] = index
    assert [store[k] for k in keys] == [0, 1, 2]
    assert "d" * 600 not in store
    del store[keys[1]]
    assert keys[1] not in store
    assert store[keys[2]] == 2
    store[keys[1]] = "back"
    assert store == {keys[0]: 0, keys[2]: 2, keys[1]: "back"}


def test_values_are_snapshots(store: PersistDict) -> None:
    value = {"list": [1]}
    store["k"] = value
    value["list"].append(2)  # changing the original after storing it
    assert store["k"] == {"list": [1]}
    got = store["k"]
    got["list"].append(3)  # changing what a read returned
    assert store["k"] == {"list": [1]}
    assert store.get("k") == {"list": [1]}
    assert store.copy()["k"] == {"list": [1]}


def test_unpicklable_value_names_the_key_and_changes_nothing(
    store: PersistDict,
) -> None:
    store["k"] = "before"
    with pytest.raises((TypeError, pickle.PicklingError), match="'k'"):
        store["k"] = threading.Lock()
    assert store["k"] == "before"
    with pytest.raises((TypeError, pickle.PicklingError), match="'bad'"):
        store.update({"new": 1, "bad": threading.Lock()})
    assert "new" not in store  # update is all or nothing
    assert store == {"k": "before"}


def test_lambdas_and_local_classes_are_stored(store: PersistDict) -> None:
    class Local:
        def __init__(self, x: int) -> None:
            self.x = x

    store["f"] = lambda y: y + 1
    store["obj"] = Local(3)
    assert store["f"](1) == 2
    assert store["obj"].x == 3


def test_none_is_a_value(store: PersistDict) -> None:
    store["n"] = None
    assert "n" in store
    assert store["n"] is None
    assert store.get("n", 1) is None


def test_setdefault_and_update_forms(store: PersistDict) -> None:
    assert store.setdefault("a", [1]) == [1]
    assert store.setdefault("a", [2]) == [1]
    assert store.setdefault("n") is None
    store.update([("b", 2)], c=3)
    store.update({"d": 4})
    store |= {"e": 5}
    assert list(store.items()) == [
        ("a", [1]),
        ("n", None),
        ("b", 2),
        ("c", 3),
        ("d", 4),
        ("e", 5),
    ]
    with pytest.raises(TypeError, match="element #0"):
        store.update([1])
    with pytest.raises(TypeError, match="at most 1"):
        store.update({}, {})


def test_fromkeys_says_what_to_do() -> None:
    with pytest.raises(TypeError, match="update"):
        PersistDict.fromkeys(["a"])


def test_call_fills_once_per_store(store_path: Path) -> None:
    d = PersistDict(store_path)
    assert d(a=1, b="b", c=str) is d
    assert d == {"a": 1, "b": "b", "c": str}
    with pytest.raises(PersistDictError, match="once per store"):
        d(x=1)
    d.close()
    with PersistDict(store_path) as again, pytest.raises(PersistDictError):
        again([("y", 2)])


def test_insertion_order_survives_overwrite_and_reinsert(store: PersistDict) -> None:
    reference: dict[str, int] = {}
    for d in (store, reference):
        d["a"], d["b"], d["c"] = 1, 2, 3
        d["a"] = 10  # overwriting keeps the place
        del d["b"]
        d["b"] = 20  # re-inserting goes to the end
    assert list(store.items()) == list(reference.items())


def test_iteration_is_batched_and_tolerates_writes(store: PersistDict) -> None:
    store.update((i, i) for i in range(1000))
    seen = []
    deleted = set()
    for key in store:
        seen.append(key)
        if key % 100 == 0:
            store[key + 0.5] = "added"  # no RuntimeError, unlike a dict
            del store[key + 1]
            deleted.add(key + 1)
    assert len(seen) == len(set(seen))  # nothing twice
    assert set(range(1000)) - deleted <= set(seen)  # nothing that stayed is missed
    assert len(store) == 1000


def test_metadata(store: PersistDict) -> None:
    before = dt.datetime.now(dt.timezone.utc)
    store["k"] = "v" * 100
    meta = store.metadata("k")
    assert isinstance(meta, EntryMetadata)
    assert meta.ctime.tzinfo is dt.timezone.utc
    assert before - dt.timedelta(seconds=1) <= meta.ctime <= meta.atime
    assert meta.size > 100
    store["k"] = "w"
    again = store.metadata("k")
    assert again.ctime == meta.ctime
    assert again.atime >= meta.atime
    assert again.size < meta.size
    with pytest.raises(KeyError):
        store.metadata("missing")


def test_closed_store_raises_a_clear_error(store_path: Path) -> None:
    d = PersistDict(store_path)
    d["a"] = 1
    d.close()
    d.close()  # idempotent
    for op in (lambda: d["a"], lambda: len(d), lambda: list(d), lambda: d.get("a")):
        with pytest.raises(StoreClosedError, match="closed"):
            op()
    with PersistDict(store_path) as d2:
        assert d2["a"] == 1
    with pytest.raises(StoreClosedError):
        d2["a"]


def test_pickle_and_copy_reopen_the_same_path(store: PersistDict) -> None:
    store["a"] = 1
    clone = pickle.loads(pickle.dumps(store))
    shallow = copy.copy(store)
    deep = copy.deepcopy(store)
    try:
        for other in (clone, shallow, deep):
            assert isinstance(other, PersistDict)
            assert other.path == store.path
            assert other == {"a": 1}
        clone["b"] = 2
        assert store["b"] == 2
    finally:
        for other in (clone, shallow, deep):
            other.close()


def test_subclasses_keep_attributes_and_handles_take_weak_references(
    store_path: Path,
) -> None:
    # PersistDict keeps its own state in slots (a faster read): a subclass still
    # has an instance dict of its own, and a handle can be weakly referenced,
    # as with any dict subclass.
    class Tagged(PersistDict):
        pass

    d = Tagged(store_path)
    d.tag = "mine"
    d["a"] = 1
    ref = weakref.ref(d)
    assert ref() is d
    assert (d.tag, vars(d), d["a"]) == ("mine", {"tag": "mine"}, 1)
    d.close()
    del d
    assert ref() is None
    with PersistDict(store_path) as plain, pytest.raises(AttributeError):
        plain.tag = "x"  # type: ignore[attr-defined]


def test_handles_share_contents_and_layer(store_path: Path) -> None:
    a = PersistDict(store_path)
    b = PersistDict(str(store_path), cache_size=0)
    a["k"] = [1]
    assert b["k"] == [1]
    b["k"] = [2]
    assert a["k"] == [2]
    del a["k"]
    assert "k" not in b
    a.close()
    assert b.get("k") is None
    b.close()


def test_readonly_refuses_writes(store_path: Path) -> None:
    with PersistDict(store_path) as d:
        d["a"] = 1
    ro = PersistDict(store_path, readonly=True)
    assert ro["a"] == 1
    for op in (
        lambda: ro.__setitem__("b", 2),
        lambda: ro.__delitem__("a"),
        lambda: ro.update(b=2),
        ro.clear,
        ro.popitem,
    ):
        with pytest.raises(ReadOnlyError, match="readonly"):
            op()
    assert ro == {"a": 1}
    ro.close()


def test_readonly_needs_an_existing_store(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="must already exist"):
        PersistDict(tmp_path / "nothing", readonly=True)


def test_compression_serializer(store_path: Path) -> None:
    d = PersistDict(
        store_path,
        value_serializer=lambda v: zlib.compress(pickle.dumps(v)),
        value_unserializer=lambda b: pickle.loads(zlib.decompress(b)),
    )
    d["big"] = "a" * 100_000
    assert d["big"] == "a" * 100_000
    assert d.metadata("big").size < 2_000
    d.close()


def test_key_serializer_round_trips(store_path: Path) -> None:
    d = PersistDict(
        store_path,
        key_serializer=lambda k: json.dumps(k).encode(),
        key_unserializer=lambda b: json.loads(b),
    )
    d["a"] = 1
    d["b" * 1000] = 2
    assert list(d) == ["a", "b" * 1000]
    assert d["a"] == 1
    d.close()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"expiration_days": 0}, ValueError, "> 0"),
        ({"expiration_days": "7"}, TypeError, "number of days"),
        ({"cache_size": -1}, ValueError, "cache_size"),
        ({"value_serializer": pickle.dumps}, TypeError, "go together"),
        ({"key_unserializer": pickle.loads}, TypeError, "go together"),
        ({"map_size": 0}, ValueError, "map_size"),
        ({"secret": b""}, TypeError, "secret"),
    ],
)
def test_bad_options_say_what_to_do(
    store_path: Path, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        PersistDict(store_path, **kwargs)


def test_serializer_must_return_bytes(store_path: Path) -> None:
    d = PersistDict(store_path, value_serializer=str, value_unserializer=str)
    with pytest.raises(TypeError, match="must return bytes"):
        d["a"] = 1
    assert "a" not in d
    d.close()


def test_verbose_logs_at_debug(
    store_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="persistdict"):
        d = PersistDict(store_path, verbose=True)
        d["a"] = 1
        d.close()
    assert any("stored 1 entries" in r.getMessage() for r in caplog.records)
    # Records name the library's module that logged, not the logger's helper.
    assert {r.filename for r in caplog.records} <= {"_dict.py", "_env.py"}
    logging.getLogger("persistdict").setLevel(logging.NOTSET)


def test_the_map_grows_past_its_initial_size(store_path: Path) -> None:
    d = PersistDict(store_path, map_size=256 * 1024, durable=False)
    blob = b"x" * 100_000
    for i in range(60):  # ~6 MB through a 256 KiB map
        d[i] = blob
    d.update({f"u{i}": blob for i in range(20)})
    assert len(d) == 80
    assert d[59] == blob
    d.close()


def test_a_readonly_handle_beside_a_writable_one_stays_readonly(
    store_path: Path,
) -> None:
    writer = PersistDict(store_path)
    writer["a"] = 1
    atime = writer.metadata("a").atime
    reader = PersistDict(store_path, readonly=True)
    with pytest.raises(ReadOnlyError):
        reader["x"] = 1
    with pytest.raises(ReadOnlyError):
        del reader["a"]
    assert reader["a"] == 1
    writer.close()
    reader.close()
    with PersistDict(store_path) as again:
        assert again == {"a": 1}
        assert again.metadata("a").atime == atime  # the read-only read left no trace


def test_memory_layer_admits_on_second_read(store_path: Path) -> None:
    d = PersistDict(store_path, cache_size=8)
    d.update({i: [i] for i in range(100)})
    env = d._live()
    layer = env.layer
    held = lambda: sum(len(c) for c in layer._caches.values())  # noqa: E731
    for i in range(100):  # a scan reads each key once: nothing is cached
        assert d[i] == [i]
    assert held() == 0
    # Nor while the batch of reads since the last access-time flush holds more
    # than 2 * cache_size keys: the working set is larger than the layer.
    for _ in range(2):
        assert d[7] == [7]
    assert held() == 0
    env.flush_atimes()  # a new batch (about a second later, in a real program)
    assert d[7] == [7]
    assert held() == 0  # a first read
    assert d[7] == [7]
    assert held() == 1  # the second
    got = d[7]
    got.append("mutated")  # hits never share mutable values
    assert d[7] == [7]
    d.close()


def test_memory_layer_of_a_readonly_handle_admits_on_second_read(
    store_path: Path,
) -> None:
    with PersistDict(store_path) as writer:
        writer.update({i: [i] for i in range(100)})
    d = PersistDict(store_path, cache_size=8, readonly=True)
    layer = d._live().layer
    held = lambda: sum(len(c) for c in layer._caches.values())  # noqa: E731
    for i in range(100):
        assert d[i] == [i]
    assert held() == 0
    for _ in range(2):
        assert d[7] == [7]
    assert held() == 1
    d.close()


@pytest.mark.parametrize(
    "odd",
    [
        ["tab\x01inside"],
        ["lone \udc80 surrogate"],
        [b"bytes key"],
        [7],
        ["a\x01b", b"c"],  # as many tag bytes in the batch as ids
        [],
    ],
    ids=["x01", "surrogate", "bytes", "int", "x01-and-bytes", "none"],
)
def test_iteration_of_str_keys_with_any_other_key_among_them(
    store: PersistDict, odd: list[Any]
) -> None:
    # Batches of str keys are decoded at once; a key that cannot be (one
    # holding the tag byte, a lone surrogate, another type) anywhere in a
    # batch must come back exactly all the same, in order.
    reference: dict[Any, Any] = {}
    for i in range(1200):  # three batches
        reference[f"k{i}-é"] = i
        if i in (5, 700):
            reference.update((key, i) for key in odd)
    store.update(reference)
    assert list(store) == list(reference)
    assert list(reversed(store)) == list(reversed(reference))
    assert list(store.items()) == list(reference.items())


@pytest.mark.parametrize("n", [1, 511, 512, 513, 1024])
def test_iteration_ends_exactly_at_the_last_place(store: PersistDict, n: int) -> None:
    # The insertion order shares the main database with the rows (ids below
    # it, and long keys' ids after it) and the named databases' records: a
    # batch that runs past either end of it must stop there.
    reference: dict[Any, Any] = {}
    for i in range(n):
        key: Any = ("x" * 600 + str(i)) if i % 7 == 3 else f"k{i}"  # some hashed
        reference[key] = i
    store.update(reference)
    assert list(store) == list(reference)
    assert list(reversed(store)) == list(reversed(reference))
    assert list(store.values()) == list(reference.values())
    assert len(store) == n
    last = next(reversed(reference))
    assert store.popitem() == (last, reference.pop(last))
    assert list(store.items()) == list(reference.items())
