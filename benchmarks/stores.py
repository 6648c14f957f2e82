"""The key-value systems under test, behind one small adapter each.

Every adapter exposes the operations as plain callables (``set``, ``get``,
``contains``, ``delete``, ``keys``, ``length``, ``fill``, ``close``). For dict-like
systems they are the bound methods themselves (``d.__getitem__``), so no adapter
layer is timed. Raw py-lmdb is written the way a careful user would: one
transaction per operation, str keys encoded to UTF-8, values through
``pickle.dumps(..., protocol=5)``.

``durable`` says whether a commit reaches the disk before the call returns (an
fsync per commit); a system is compared with raw py-lmdb at the same setting.
"""

from __future__ import annotations

import pickle
import shelve
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import Unavailable

__all__ = ["SPECS", "Spec", "Store", "fresh_snippet", "spec"]

MAP_SIZE = 1 << 34  # sparse on Linux: costs nothing until used


class Store:
    """Operations of one opened system (see module docstring)."""

    set: Callable[[str, Any], None]
    get: Callable[[str], Any]
    contains: Callable[[str], bool]
    delete: Callable[[str], None]
    keys: Callable[[], list[str]]
    length: Callable[[], int]
    fill: Callable[[dict[str, Any]], None]
    close: Callable[[], None]


@dataclass(frozen=True)
class Spec:
    name: str
    durable: bool
    open: Callable[[Path], Store]
    sync_note: str
    # source of a fresh interpreter doing: import, open PATH, read every key of KEYS
    fresh: str
    dict_like: bool = True


# ---------------------------------------------------------------- raw py-lmdb


def open_raw(path: Path, *, sync: bool) -> Store:
    import lmdb

    env = lmdb.open(
        str(path), map_size=MAP_SIZE, sync=sync, max_readers=1024, mode=0o700
    )
    dumps = pickle.dumps
    loads = pickle.loads
    s = Store()

    def set_(key: str, value: Any) -> None:
        with env.begin(write=True) as txn:
            txn.put(key.encode(), dumps(value, protocol=5))

    def get(key: str) -> Any:
        with env.begin() as txn:
            data = txn.get(key.encode())
        if data is None:
            raise KeyError(key)
        return loads(data)

    def contains(key: str) -> bool:
        with env.begin() as txn:
            return txn.get(key.encode()) is not None

    def delete(key: str) -> None:
        with env.begin(write=True) as txn:
            if not txn.delete(key.encode()):
                raise KeyError(key)

    def keys() -> list[str]:
        with env.begin() as txn:
            return [k.decode() for k in txn.cursor().iternext(values=False)]

    def length() -> int:
        return int(env.stat()["entries"])

    def fill(items: dict[str, Any]) -> None:
        with env.begin(write=True) as txn:
            for k, v in items.items():
                txn.put(k.encode(), dumps(v, protocol=5))

    s.set, s.get, s.contains, s.delete = set_, get, contains, delete
    s.keys, s.length, s.fill, s.close = keys, length, fill, env.close
    return s


def open_raw_rows(path: Path, *, sync: bool) -> Store:
    """Raw py-lmdb writing what a PersistDict write of a new key writes, and
    nothing else: the entry's row (a 44-byte header and checksum, zeros here,
    then the pickle) under the key's id, and its place in the insertion order
    (0xff + the next place, found as the last key, appended) pointing to it,
    both in the main database, in one transaction. A floor for writers: the
    pages a commit writes are PersistDict's."""
    import struct

    import lmdb

    env = lmdb.open(
        str(path), map_size=MAP_SIZE, sync=sync, max_readers=1024, mode=0o700
    )
    dumps, loads = pickle.dumps, pickle.loads
    place = struct.Struct(">BQ")
    header = b"\x00" * 44
    s = Store()

    def set_(key: str, value: Any) -> None:
        entry_id = b"\x01" + key.encode()
        row = header + dumps(value, protocol=5)
        with env.begin(write=True) as txn:
            cursor = txn.cursor()
            last = cursor.key() if cursor.last() else b""
            seq = place.unpack(last)[1] + 1 if last[:1] == b"\xff" else 1
            txn.put(entry_id, row)
            txn.put(place.pack(0xFF, seq), entry_id, append=True)

    def get(key: str) -> Any:
        with env.begin() as txn:
            row = txn.get(b"\x01" + key.encode())
        if row is None:
            raise KeyError(key)
        return loads(row[44:])

    s.set, s.get, s.close = set_, get, env.close
    return s


def open_required(path: Path, *, sync: bool) -> Store:
    """Every step PersistDict's design requires of ``d[k] = v``, done by hand
    in raw py-lmdb (floor_schema.required_writer): sets only, beside the write
    tables' systems as their floor."""
    from floor_schema import required_writer

    path.mkdir(parents=True, exist_ok=True)
    set_, close = required_writer(path, sync=sync)
    s = Store()

    def fill(items: dict[str, Any]) -> None:
        for k, v in items.items():
            set_(k, v)

    s.set, s.fill, s.close = set_, fill, close
    return s


RAW_FRESH = """
import lmdb, pickle
env = lmdb.open(PATH, map_size=1 << 34, max_readers=1024, mode=0o700)
for k in KEYS:
    with env.begin() as txn:
        pickle.loads(txn.get(k.encode()))
"""


# ---------------------------------------------------------------- persistdict


def open_persistdict(path: Path, **options: Any) -> Store:
    try:
        from persistdict import PersistDict
    except ImportError as exc:
        raise Unavailable(f"persistdict not importable ({exc})") from None
    try:
        d = PersistDict(path, **options)
    except TypeError as exc:  # an option this version does not have yet
        raise Unavailable(f"PersistDict({options}) failed: {exc}") from None
    return _dict_store(d, d.close, fill=d.update)


PD_FRESH = """
from persistdict import PersistDict
d = PersistDict(PATH)
for k in KEYS:
    d[k]
"""

# ---------------------------------------------------------------- peers


def _dict_store(
    d: Any, close: Callable[[], None], fill: Callable[[dict[str, Any]], None] | None
) -> Store:
    s = Store()
    s.set = d.__setitem__
    s.get = d.__getitem__
    s.contains = d.__contains__
    s.delete = d.__delitem__
    s.keys = lambda: list(d)
    s.length = d.__len__
    s.fill = fill if fill is not None else d.update
    s.close = close
    return s


def open_diskcache(path: Path) -> Store:
    try:
        import diskcache
    except ImportError as exc:
        raise Unavailable(f"diskcache not installed ({exc})") from None
    c = diskcache.Cache(str(path))

    def fill(items: dict[str, Any]) -> None:
        with c.transact():
            for k, v in items.items():
                c[k] = v

    return _dict_store(c, c.close, fill)


def open_index(path: Path) -> Store:
    try:
        import diskcache
    except ImportError as exc:
        raise Unavailable(f"diskcache not installed ({exc})") from None
    d = diskcache.Index(str(path))

    def fill(items: dict[str, Any]) -> None:
        with d.transact():
            d.update(items)

    return _dict_store(d, d.cache.close, fill)


def open_sqlitedict(path: Path) -> Store:
    try:
        from sqlitedict import SqliteDict
    except ImportError as exc:
        raise Unavailable(f"sqlitedict not installed ({exc})") from None
    path.mkdir(parents=True, exist_ok=True)
    d = SqliteDict(str(path / "db.sqlite"), autocommit=True)

    def fill(items: dict[str, Any]) -> None:
        with SqliteDict(str(path / "db.sqlite"), autocommit=False) as bulk:
            bulk.update(items)
            bulk.commit()

    return _dict_store(d, d.close, fill)


def open_shelve(path: Path) -> Store:
    path.mkdir(parents=True, exist_ok=True)
    d = shelve.open(str(path / "shelf"), protocol=5)  # noqa: SIM115 - closed by close
    return _dict_store(d, d.close, None)


SPECS: list[Spec] = [
    Spec(
        "lmdb-raw",
        True,
        lambda p: open_raw(p, sync=True),
        "sync=True (fsync per commit)",
        RAW_FRESH,
        dict_like=False,
    ),
    Spec(
        "persistdict",
        True,
        lambda p: open_persistdict(p),
        "default (durable)",
        PD_FRESH,
    ),
    Spec(
        "lmdb-raw-nosync",
        False,
        lambda p: open_raw(p, sync=False),
        "sync=False",
        RAW_FRESH,
        dict_like=False,
    ),
    Spec(
        "persistdict-nodur",
        False,
        lambda p: open_persistdict(p, durable=False),
        "durable=False",
        PD_FRESH,
    ),
    Spec(
        "diskcache.Cache",
        False,
        open_diskcache,
        "sqlite WAL, synchronous=NORMAL (no fsync per commit)",
        "import diskcache\nd = diskcache.Cache(PATH)\nfor k in KEYS:\n    d[k]\n",
    ),
    Spec(
        "diskcache.Index",
        False,
        open_index,
        "sqlite WAL, synchronous=NORMAL (no fsync per commit)",
        "import diskcache\nd = diskcache.Index(PATH)\nfor k in KEYS:\n    d[k]\n",
    ),
    Spec(
        "sqlitedict",
        True,
        open_sqlitedict,
        "autocommit=True, journal DELETE, synchronous=FULL",
        "from sqlitedict import SqliteDict\n"
        "d = SqliteDict(PATH + '/db.sqlite')\nfor k in KEYS:\n    d[k]\n",
    ),
    Spec(
        "shelve",
        False,
        open_shelve,
        "dbm backend, no fsync",
        "import shelve\nd = shelve.open(PATH + '/shelf', 'r')\n"
        "for k in KEYS:\n    d[k]\n",
    ),
]


def _floor_specs(
    name: str, nosync_name: str, opener: Callable[..., Store], what: str
) -> list[Spec]:
    """A floor at each sync setting (a durable one, and one without fsync)."""
    return [
        Spec(
            label,
            sync,
            lambda p, sync=sync: opener(p, sync=sync),
            f"sync={sync}; {what}",
            RAW_FRESH,
            dict_like=False,
        )
        for label, sync in ((name, True), (nosync_name, False))
    ]


# Floors that only some tables use: bench_store's sets, bench_concurrency's
# writers.
FLOOR_SPECS: list[Spec] = _floor_specs(
    "every required step", "every required step nosync", open_required, "by hand"
) + _floor_specs(
    "lmdb-2rows",
    "lmdb-2rows-nosync",
    open_raw_rows,
    "PersistDict's two rows per new key",
)


def spec(name: str) -> Spec:
    for s in SPECS + FLOOR_SPECS:
        if s.name == name:
            return s
    known = [s.name for s in SPECS + FLOOR_SPECS]
    raise KeyError(f"unknown system {name!r}; known: {known}")


def baseline_for(s: Spec) -> str:
    """Raw py-lmdb at the same sync setting."""
    return "lmdb-raw" if s.durable else "lmdb-raw-nosync"


def fresh_snippet(s: Spec, path: Path, keys: Iterable[str]) -> str:
    """A whole child program: times import + open + reads, prints seconds."""
    body = s.fresh.replace("PATH", repr(str(path))).replace("KEYS", repr(list(keys)))
    # The clock starts before any import of the system under test.
    return (
        "import time\n_t0 = time.perf_counter()\n"
        + body
        + "\nprint(time.perf_counter() - _t0)\n"
    )
