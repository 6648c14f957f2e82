"""One LMDB environment per store directory per process.

lmdb-dict-full keeps environments per path string and runs every mapping operation
in its own transaction; persistdict needs more than that, so this module talks to
py-lmdb directly for:

* one write transaction over several databases (entry rows in the main
  database, insertion order and access times in named ones);
* growing the map when it is full, and adopting a size another process grew to
  (``set_mapsize`` is only allowed while this process has no transaction open, so
  every transaction passes a gate that a resize closes);
* ``fork``: an environment must not be used in a child, and closing the inherited
  one is only safe while no transaction is open, so a fork waits at the gate too,
  and the child reopens the environment on first use;
* keeping the in-memory layer coherent with other processes (transaction ids,
  and the last commit id that LMDB keeps in its lock file), where lmdb-dict-full's
  per-process cache is authoritative and goes stale;
* ``close()``, which lmdb-dict-full does not have.

lmdb-dict-full's ``SafeLmdbDict`` (YAML, never pickle) keeps the store's settings
in their own sub-database, so reading what a store is never unpickles anything.
"""

from __future__ import annotations

# _thread, not threading: the same locks and threads, without the import cost of
# threading (about a millisecond), which a short script that opens a store and
# reads from it would otherwise pay for one background thread.
import _thread
import atexit
import functools
import itertools
import mmap
import os
import stat
import struct
import sys
import time
from types import MappingProxyType

import lmdb

from ._codec import HASHED
from ._exceptions import (
    ReadOnlyError,
    StoreCorruptedError,
    StoreWriteError,
    UnsafeStoreError,
)
from ._log import logger
from ._memory import MemoryLayer
from ._meta import _TIME

__all__ = [
    "CommitCounter",
    "Env",
    "Txn",
    "acquire_env",
    "release_env",
]

# typing (with re, enum...) is not imported at run time: it would cost more at
# start-up than the rest of what opening a store and reading it imports.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Final, TypeAlias, TypeVar

    Txn: TypeAlias = lmdb.Transaction[bytes]
    T = TypeVar("T")
else:
    Txn = lmdb.Transaction

FORMAT_VERSION = 4
DEFAULT_MAP_SIZE = 64 * 1024 * 1024
MAX_READERS = 1024
# Named databases, all opened once with the environment (opening one while another
# thread holds a write transaction deadlocks the process: LMDB-NOTES.md).
DB_NAMES = (b"atimes", b"internal", b"settings")
# What a write or a read touches lives in the main database, beside these
# databases' records: the entries' rows and their places in the insertion order.
# A transaction that uses a named database also reads its record in the main
# database, and a commit that changed one rewrites that record: a new key (a row
# and a place) costs 1.02x one put when both are in the main database, 1.10x with
# the places in a named database (durable; 1.08x against 1.44x without fsync).
# The main database's keys, in their order:
#   below 0x20  entry ids: the encoding of a key up to 511 bytes (its first
#               byte is the key's type tag, 0x00-0x10) or, for a longer key,
#               HASHED (0x1e) + its hash + a counter (see _codec)
#   0x20-0xfe   the named databases' names (lower-case letters)
#   0xff + u64  the insertion order: a place -> the id of its entry. The last
#               keys of the database, so a new place is appended (LMDB then
#               starts a new page instead of splitting a full one in halves).
ORDER_TAG = 0xFF
ORDER_FROM = b"\xff"  # the first key of the insertion order
NAMES_FROM = b"\x20"  # the first key after the entry ids
_ORDER_KEY = struct.Struct(">BQ")
# Formats 2 and 3 kept the rows ("values", format 2) and the insertion order
# ("order", formats 2 and 3) in named databases, and long keys' ids began with
# 0xff; opening such a store moves them to the main database.
_EARLIER_DBS = (b"values", b"order")
_EARLIER_HASHED = 0xFF
# Databases of earlier store formats, named in the error that refuses such a store.
_LEGACY_DB_NAMES = (b"meta",)


def is_entry_id(key: bytes | memoryview) -> bool:
    """Whether a key of the main database is an entry's id (not a place in the
    insertion order, nor the record of a named database)."""
    return key[0] < 0x20


def order_key(seq: int) -> bytes:
    """The key of place ``seq`` in the insertion order."""
    return _ORDER_KEY.pack(ORDER_TAG, seq)


def order_seq(key: bytes | memoryview) -> int:
    """The place that an insertion-order key stands for."""
    return int(_ORDER_KEY.unpack(key)[1])


# Key in the internal database: the id of the last transaction that only wrote
# access times. Memory layers need not drop anything for such a commit.
ATIME_TXN_KEY = b"atime-transaction"
# Key in the internal database: the store's format version (u64).
FORMAT_KEY = b"format"
_u64 = struct.Struct(">Q")
_pack_time, _unpack_time = _TIME.pack, _TIME.unpack_from  # an access time (see _meta)
# Reads' access times are written in batches, about one a second, by a
# background thread; a batch of at least INLINE_FLUSH_MIN ids is handed to the
# next read of the store for IDLE_FLUSH_GRACE seconds first (see Env.flush_due),
# and a read writes at most INLINE_FLUSH_MAX of them (about 20 ms), the next
# read the next ones.
ATIME_FLUSH_SECONDS = 1.0
IDLE_FLUSH_GRACE = 0.25
# While it runs, the thread also advances the clock that reads record their
# access time with (Env.clock) every CLOCK_TICK seconds: time.time() on every
# read that records one costs a call and a float kept in the batch, about 5% of
# a read beyond the memory layer.
CLOCK_TICK = 0.1
_FLUSH_CHUNK = 4096  # access times written between two advances of the clock
INLINE_FLUSH_MIN = 256
INLINE_FLUSH_MAX = 16384
# py-lmdb parses keyword arguments slowly: about 0.1 us per call that passes any
# (a read transaction and its get cost 0.54 us with ``get(key, db=db)``, 0.41 us
# with ``get(key, None, db)``). The hot paths pass them by position:
# ``begin(db, parent, write, buffers)``, ``get(key, default, db)``,
# ``put(key, value, dupdata, overwrite, append, db)``, ``delete(key, value, db)``,
# ``cursor(db)``.

_fork_generation = 0


class CommitCounter:
    """The id of the last transaction committed by any process, read in ~0.1 µs.

    LMDB keeps it in its lock file, which every process maps: the reader table's
    header is ``magic, format, reader mutex, txnid, numreaders`` (lmdb's
    ``MDB_txbody``). The mutex's size depends on the platform, so the field's
    offset is learnt, not assumed: a candidate offset is kept only while its value
    follows the ids of real transactions (two different ones before it is
    trusted), and any later disagreement turns the counter off for good. While it
    is off, readers check coherence with a read transaction instead.

    With it, a read served by the memory layer needs no LMDB transaction: if no
    commit happened since the layer was last known current, the layer is current.
    """

    __slots__ = ("_candidates", "_fd", "_known", "_seen", "_usable", "mapped", "offset")

    _CANDIDATES = (48, 56, 40, 32, 64)
    # The offset and lock-file format of common builds: the offset is trusted
    # from the first matching transaction when the format is one of these.
    _KNOWN: Final = MappingProxyType(
        {("x86_64", 0x10001): 48, ("aarch64", 0x10001): 56}
    )
    _TOLERANCE = 16  # commits that may land between a transaction and our look
    _MAGIC = 0xBEEFC0DE
    _u32 = struct.Struct("=I").unpack_from
    _u64 = struct.Struct("=Q").unpack_from

    def __init__(self, lock_file: str | None) -> None:
        self.offset: int | None = None
        self._candidates = set(self._CANDIDATES)
        self._seen: set[int] = set()
        self._usable = False
        self._known: int | None = None
        self.mapped: mmap.mmap | None = None  # the lock file, read-only
        self._fd = -1
        if lock_file is None:
            return
        # Closing ANY descriptor of lock.mdb (an mmap holds one too) drops this
        # process's fcntl locks on it, which LMDB relies on: the descriptor and
        # the map stay open until the environment is closed (close_after_env).
        try:
            self._fd = os.open(lock_file, os.O_RDONLY | os.O_CLOEXEC)
            self.mapped = mmap.mmap(self._fd, 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # no lock file, or an empty one
            return
        self._usable = (
            len(self.mapped) >= 128 and self._u32(self.mapped, 0)[0] == self._MAGIC
        )
        if self._usable:
            lock_format = self._u32(self.mapped, 4)[0]
            self._known = self._KNOWN.get((os.uname().machine, lock_format))

    def observe(self, txn_id: int) -> None:
        """Check (or learn) the offset against a real transaction's id."""
        mapped = self.mapped
        if not self._usable or mapped is None:
            return
        if self.offset is not None:
            if self._u64(mapped, self.offset)[0] < txn_id:
                logger.debug("lock file counter disagrees with LMDB: not used")
                self.offset = None
                self._usable = False
            return
        self._candidates = {
            offset
            for offset in self._candidates
            if 0 <= self._u64(mapped, offset)[0] - txn_id < self._TOLERANCE
        }
        self._seen.add(txn_id)
        if not self._candidates:
            self._usable = False
        elif self._known in self._candidates and (
            self._u64(mapped, self._known)[0] == txn_id
        ):
            self.offset = self._known
        elif len(self._candidates) == 1 and len(self._seen) >= 2:
            self.offset = next(iter(self._candidates))

    def current(self) -> int | None:
        """The id of the last commit, once the offset is known (else None)."""
        offset, mapped = self.offset, self.mapped
        if offset is None or mapped is None:
            return None
        return int(self._u64(mapped, offset)[0])

    def close_after_env(self) -> None:
        """Release the map and the descriptor, once LMDB's environment is closed
        (its locks are gone by then anyway)."""
        self.offset = None
        self._usable = False
        if self.mapped is not None:
            self.mapped.close()
            self.mapped = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@functools.cache
def _settings_class() -> type:
    """lmdb-dict's YAML mapping over our ``settings`` database.

    lmdb-dict caches environments by path string and never closes them; we hand
    it our environment instead (one per path per process, reopened after fork).
    Imported on first use: most opens never read the settings.
    """
    from lmdb_dict import SafeLmdbDict
    from lmdb_dict.cache import DummyCache
    from lmdb_dict.mapping.abc import LockingCache
    from lmdb_dict.util import DummyLockPool

    class Settings(SafeLmdbDict):  # type: ignore[misc]
        def __init__(self, environ: lmdb.Environment, db: Any) -> None:
            self._environ_ = environ
            self._db_ = db
            self.name = "settings"
            self._locker_ = LockingCache(DummyCache(), DummyLockPool())

    return Settings


def _check_data_file(data_file: str | os.PathLike[str]) -> None:
    """Refuse a data file LMDB would crash on (SIGBUS on a truncated file)."""
    try:
        size = os.stat(data_file).st_size
    except FileNotFoundError:
        return
    if size == 0:
        return
    page_size = 0
    best: tuple[int, int] | None = None  # (txnid, last_pgno)
    with open(data_file, "rb") as fh:
        # The two meta pages: at 0, and at the page size the first one gives.
        head = fh.read(_META_BYTES)
        metas = [
            (offset, os.pread(fh.fileno(), _META_BYTES, offset) if offset else head)
            for offset in _meta_offsets(head)
        ]
    for offset, meta in metas:
        if len(meta) < _META_BYTES:
            continue
        magic = struct.unpack_from("<I", meta, 16)[0]
        if magic != 0xBEEFC0DE:
            continue
        psize = struct.unpack_from("<I", meta, 40)[0]
        last_pg, txnid = struct.unpack_from("<QQ", meta, 136)
        if offset == 0:
            page_size = psize
        if best is None or txnid > best[0]:
            best = (txnid, last_pg)
    if best is None or page_size == 0:
        raise StoreCorruptedError(
            f"{data_file} is not an LMDB data file (no valid meta page): the "
            "store is damaged or this is not a persistdict store; move it away"
        )
    needed = (best[1] + 1) * page_size
    if size < needed:
        raise StoreCorruptedError(
            f"{data_file} is truncated ({size} bytes, its last page ends at "
            f"{needed}): the store is damaged; restore it from a copy or move it away"
        )


_META_BYTES = 152  # of a meta page: its header, then MDB_meta up to mm_txnid


def _meta_offsets(head: bytes) -> list[int]:
    offsets = [0]
    if len(head) >= 44:
        psize = struct.unpack_from("<I", head, 40)[0]
        if 512 <= psize <= 65536:
            offsets.append(psize)
    return offsets


# LMDB's locks do not work across machines (lmdb.h: "do not use LMDB databases on
# remote filesystems").
_NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "9p",
        "afs",
        "ceph",
        "glusterfs",
        "lustre",
        "fuse.sshfs",
        "fuse.glusterfs",
        "davfs",
        "ncpfs",
    }
)


def _filesystem_type(path: str) -> str | None:
    """The type of the file system ``path`` is on (Linux), or None (also for a
    file system on a local block device, which no network file system is)."""
    try:
        if os.major(os.stat(path).st_dev) != 0:
            return None  # network file systems have anonymous devices (major 0)
    except OSError:
        return None
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as fh:
            mounts = fh.read().splitlines()
    except OSError:
        return None
    best, best_type = "", None
    target = path
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount_point = fields[1].replace("\\040", " ")
        inside = target == mount_point or target.startswith(
            mount_point.rstrip("/") + "/"
        )
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, fields[2]
    return best_type


def _check_ownership(path: str | os.PathLike[str], allow_unsafe: bool) -> None:
    if allow_unsafe:
        return
    uid = os.geteuid()
    for item in (path, os.path.join(path, "data.mdb"), os.path.join(path, "lock.mdb")):
        try:
            st = os.stat(item)
        except FileNotFoundError:
            continue
        if st.st_uid != uid:
            raise UnsafeStoreError(
                f"{item} belongs to uid {st.st_uid}, not to you (uid {uid}): "
                "whoever can write a store can run code in every process that "
                "reads it; pass allow_unsafe_permissions=True if you trust its owner"
            )
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise UnsafeStoreError(
                f"{item} can be written by other users (mode "
                f"{stat.S_IMODE(st.st_mode):o}): whoever can write a store can run "
                f"code in every process that reads it; run 'chmod go-w {item}' or "
                "pass allow_unsafe_permissions=True"
            )


class Env:
    """A store's LMDB environment in this process, shared by its handles."""

    # Slots: read on every operation. On CPython 3.11 a slot reads in ~5 ns, an
    # attribute of an instance __dict__ once materialized (as cached_property or
    # any use of __dict__ does) in ~18 ns.
    __slots__ = (
        "_flush_lock",
        "_flush_wanted",
        "_flusher",
        "_generation",
        "_initial_map_size",
        "_lock",
        "_pause_lock",
        "_paused",
        "_pending",
        "_pending_lock",
        "_settings",
        "_settings_db",
        "_tokens",
        "_writer",
        "allow_unsafe",
        "atimes",
        "clock",
        "closed",
        "counter",
        "durable",
        "env",
        "internal",
        "layer",
        "name_records",
        "next_seq",
        "path",
        "readonly",
        "refcount",
        "values",
    )

    def __init__(
        self,
        path: str,
        *,
        readonly: bool,
        durable: bool,
        map_size: int | None,
        allow_unsafe: bool,
    ) -> None:
        self.path = path  # absolute, symbolic links resolved
        self.readonly = readonly
        self.durable = durable
        self.allow_unsafe = allow_unsafe
        self._initial_map_size = map_size or DEFAULT_MAP_SIZE
        self.refcount = 0
        self.closed = False
        self.layer = MemoryLayer()
        self._settings: Any = None  # see settings
        self._reset_process_state()
        self._open()

    # -- opening ---------------------------------------------------------------

    def _reset_process_state(self, gate_closed: bool = False) -> None:
        """Fresh state for this process; ``gate_closed``: the gate starts closed
        (as by ``_pause``) for the caller to open with ``_unpause``."""
        self._generation = _fork_generation
        # (write transaction id, insertion place after the one it gave): see
        # PersistDict._next_seq. Set only inside write transactions.
        self.next_seq = (-2, 0)
        # (the id of a transaction, how many named databases' records the main
        # database held in it): see _dict._count. Names change only in a commit.
        self.name_records = (-1, 0)
        # The gate: every transaction holds a token while it is open; a resize or
        # a fork sets _paused and waits until no token is left. Appending to and
        # popping from a list are atomic under the GIL, and each side re-checks
        # the other's flag after setting its own, so the fast path takes no lock.
        self._tokens: list[None] = []
        self._pause_lock = _thread.allocate_lock()
        if gate_closed:
            self._pause_lock.acquire()
        self._paused = int(gate_closed)
        self._pending: dict[bytes, float] = {}
        # The time recorded for a read (see CLOCK_TICK): current to within a
        # tick while _flusher is set (touch() sets it when it starts the
        # thread, the thread every tick, a long flush as it goes), stale
        # otherwise.
        self.clock = time.time()
        self._pending_lock = _thread.allocate_lock()
        # Held for a whole flush: one flush at a time, and the exit handler
        # waits for the background thread's flush to end (see _flush_at_exit).
        self._flush_lock = _thread.allocate_lock()
        self._flusher = False  # whether the access-time thread runs
        self._flush_wanted = False  # a read should write the batch (flush_due)
        # The thread whose write transaction is open (set under LMDB's write
        # lock, cleared before its commit or abort), else 0: see flush_due.
        self._writer = 0
        self.layer.reset()

    def _open(self) -> None:
        path = self.path
        data_file = os.path.join(path, "data.mdb")
        if os.path.exists(path) and not os.path.isdir(path):
            raise StoreCorruptedError(
                f"{path} is a file, not a store directory: pass the path of a "
                "directory (it is created if missing)"
            )
        if not os.path.exists(path):
            if self.readonly:
                raise FileNotFoundError(
                    f"no store at {path}: a read-only store must already exist"
                )
            os.makedirs(path, mode=0o700, exist_ok=True)
            os.chmod(path, 0o700)
        _check_ownership(path, self.allow_unsafe)
        fs_type = _filesystem_type(path)
        if fs_type in _NETWORK_FILESYSTEMS:
            logger.warning(
                "%s is on a network file system (%s): LMDB's locks do not work "
                "across machines, so concurrent use from two hosts can corrupt it",
                path,
                fs_type,
            )
        _check_data_file(data_file)
        lock = True
        if self.readonly and not os.access(path, os.W_OK):
            # LMDB writes lock.mdb even read-only; without write access it can
            # only read a snapshot without locking (unsafe with a live writer).
            logger.warning(
                "%s is not writable: opening it read-only without locks, so "
                "concurrent writers are not seen safely",
                path,
            )
            lock = False
        elif self.readonly and not os.path.exists(data_file):
            raise FileNotFoundError(
                f"no store at {path}: a read-only store must already exist"
            )
        try:
            self.env = lmdb.open(
                str(path),
                map_size=self._initial_map_size,
                subdir=True,
                readonly=self.readonly,
                metasync=self.durable,
                sync=self.durable,
                mode=0o600,
                max_readers=MAX_READERS,
                max_dbs=len(DB_NAMES) + 2,  # + earlier formats' databases, moved
                max_spare_txns=0,
                lock=lock,
            )
        except (
            lmdb.InvalidError,
            lmdb.VersionMismatchError,
            lmdb.CorruptedError,
        ) as exc:
            raise StoreCorruptedError(
                f"{path} does not hold a readable LMDB store ({exc}): move it away "
                "or pass another path"
            ) from exc
        try:
            if lock:
                self.env.reader_check()
            self._open_dbs()
        except BaseException:
            self.env.close()
            raise
        self._lock = lock
        self.counter = CommitCounter(os.path.join(path, "lock.mdb") if lock else None)

    def _open_dbs(self) -> None:
        path = self.path
        env = self.env
        with env.begin() as txn:
            # The named databases' records, without a look at any entry.
            names = []
            cursor = txn.cursor()
            ok = cursor.set_range(NAMES_FROM)
            while ok and cursor.key()[0] != ORDER_TAG:
                names.append(cursor.key())
                ok = cursor.next()
            if any(name in _LEGACY_DB_NAMES for name in names):
                raise StoreCorruptedError(
                    f"{path} was written in store format 1 by an earlier "
                    f"persistdict; this version reads format {FORMAT_VERSION}. "
                    "Open it with the persistdict that wrote it, or delete the "
                    "directory if it only holds a cache"
                )
            foreign = [
                name
                for name in names
                if name not in DB_NAMES and name not in _EARLIER_DBS
            ]
            existing = b"internal" in names
            if not foreign and not existing and cursor.first():
                # Not a store yet, yet keys: someone else's (ids alike included).
                foreign = [cursor.key()]
            if foreign:
                raise StoreCorruptedError(
                    f"{path} is an LMDB environment but not a persistdict store "
                    f"(it has other databases or keys, e.g. {bytes(foreign[0])!r}); "
                    "pass another path"
                )
            # Databases of formats 2 and 3, or empty ones that an earlier
            # persistdict created before it refused this format.
            earlier = [name for name in names if name in _EARLIER_DBS]
        try:
            if self.readonly:
                if not existing:
                    raise StoreCorruptedError(
                        f"{path} is not a persistdict store (it has no entries "
                        "database); open it once without readonly=True first"
                    )
                dbs = [env.open_db(name, create=False) for name in DB_NAMES]
            else:
                with env.begin(write=True) as txn:
                    dbs = [env.open_db(name, txn=txn) for name in DB_NAMES]
            main = env.open_db(None)  # the rows (see DB_NAMES)
        except lmdb.MapFullError:
            env.set_mapsize(env.info()["map_size"] * 2)
            self._open_dbs()
            return
        except lmdb.Error as exc:
            raise StoreCorruptedError(
                f"{path} is not a readable persistdict store ({exc})"
            ) from exc
        self.values = main
        self.atimes, self.internal, self._settings_db = dbs
        self._settings = None  # bound to a previous environment
        with env.begin() as txn:
            raw_format = txn.get(FORMAT_KEY, db=self.internal)
        if raw_format is None and not self.readonly:
            with env.begin(write=True) as txn:
                txn.put(FORMAT_KEY, _u64.pack(FORMAT_VERSION), db=self.internal)
            # Directly: this runs while the environment is being opened, when
            # nothing else uses it (and maybe with the gate closed, see
            # _reopen_after_fork).
            self.settings.update({"format": FORMAT_VERSION, "created": time.time()})
            raw_format = _u64.pack(FORMAT_VERSION)
        fmt = _u64.unpack(raw_format)[0] if raw_format else FORMAT_VERSION
        if fmt in (2, 3) or (fmt == FORMAT_VERSION and earlier):
            if self.readonly:
                if fmt == FORMAT_VERSION:
                    return  # empty leftovers: nothing to read in them
                raise StoreCorruptedError(
                    f"{path} was written in store format {fmt} by an earlier "
                    f"persistdict; open it once without readonly=True (in Python: "
                    f"PersistDict(path)) to move it to format {FORMAT_VERSION} "
                    "(its entries are kept)"
                )
            self._move_to_main()
        elif fmt != FORMAT_VERSION:
            raise StoreCorruptedError(
                f"{path} was written in store format {fmt!r}; this persistdict "
                f"reads format {FORMAT_VERSION}"
            )

    def _move_to_main(self) -> None:
        """Bring a store of format 2 or 3 to format 4, in one transaction: the
        rows of format 2's "values" database into the main database, the places
        of the "order" database to the main database's 0xff + u64 keys, long
        keys' ids from 0xff to HASHED (in the rows, the places and ``atimes``);
        then drop those databases. Run by every process that saw an earlier
        format: after the first, nothing is left to move. (A format-4 store
        only gets its empty leftovers dropped.)"""
        env = self.env
        main = self.values
        hashed = HASHED[0]

        def new_id(entry_id: bytes) -> bytes:
            if entry_id[0] == _EARLIER_HASHED:
                return bytes([hashed]) + entry_id[1:]
            return entry_id

        while True:
            moved = 0
            try:
                with env.begin(write=True) as txn:
                    raw = txn.get(FORMAT_KEY, db=self.internal)
                    earlier = raw is not None and _u64.unpack(raw)[0] < FORMAT_VERSION
                    if earlier:
                        # Long keys' rows (format 3: at the end of the main
                        # database, where no place is yet) and access times.
                        for db in (main, self.atimes):
                            cursor = txn.cursor(db=db)
                            old_rows = []
                            if cursor.set_range(ORDER_FROM):
                                old_rows = [(bytes(k), bytes(v)) for k, v in cursor]
                            for key, value in old_rows:
                                txn.delete(key, db=db)
                                txn.put(new_id(key), value, db=db)
                                moved += 1
                    for name in _EARLIER_DBS:
                        if txn.get(name) is None:
                            continue
                        old = env.open_db(name, txn=txn, create=False)
                        if not earlier and txn.stat(old)["entries"]:
                            raise StoreCorruptedError(
                                f"{self.path} holds a database {name!r} with "
                                f"entries beside store format {FORMAT_VERSION}: "
                                "an earlier persistdict wrote into it after this "
                                "one moved the store; copy what you need out of "
                                "it with that persistdict, then delete it"
                            )
                        for key, value in txn.cursor(db=old):
                            if name == b"order":
                                if len(key) != 8:
                                    continue  # (damage)
                                key = order_key(_u64.unpack(key)[0])
                                value = new_id(bytes(value))
                            elif is_entry_id(key) or key[0] == _EARLIER_HASHED:
                                key = new_id(bytes(key))
                            else:
                                continue  # (damage)
                            txn.put(key, value, db=main)
                            moved += 1
                        txn.drop(old, delete=True)
                    txn.put(FORMAT_KEY, _u64.pack(FORMAT_VERSION), db=self.internal)
            except lmdb.MapFullError:
                env.set_mapsize(env.info()["map_size"] * 2)
                continue
            # As for a new store (see _open_dbs): for the command line.
            self.settings.update({"format": FORMAT_VERSION})
            logger.info(
                "the store at %s is in format %d (%d keys moved)",
                self.path,
                FORMAT_VERSION,
                moved,
            )
            return

    # -- the gate ----------------------------------------------------------------

    def _enter(self) -> None:
        if self._generation != _fork_generation:
            self._reopen_after_fork()
        tokens = self._tokens
        while True:
            if self._paused == 0:
                tokens.append(None)
                if self._paused == 0:
                    return
                tokens.pop()  # a resize or a fork started meanwhile: step back
            with self._pause_lock:  # wait for the resize or fork to finish
                pass

    def _pause(self) -> None:
        """Close the gate and wait until no transaction is open in this process."""
        self._pause_lock.acquire()
        self._paused += 1
        while self._tokens:
            time.sleep(0.0002)

    def _unpause(self) -> None:
        self._paused -= 1
        self._pause_lock.release()

    def _set_mapsize(self, size: int) -> None:
        self._pause()
        try:
            self.env.set_mapsize(size)
        finally:
            self._unpause()

    def _grow(self) -> None:
        # A reader killed mid-read pins its snapshot, so freed pages cannot be
        # reused and the map fills up: clear such slots before growing.
        if self._lock and self.env.reader_check():
            return
        current = self.env.info()["map_size"]
        new = current * 2
        logger.debug(
            "growing the map of %s from %d to %d bytes", self.path, current, new
        )
        self._set_mapsize(new)

    # -- transactions ------------------------------------------------------------

    def _begin(self, write: bool, buffers: bool = False) -> Txn:
        """Begin a transaction; the caller holds a token."""
        retried_readers = False
        while True:
            try:
                txn: Txn = self.env.begin(  # type: ignore[call-overload]
                    write=write, buffers=buffers
                )
                return txn
            except lmdb.MapResizedError:
                # Another process grew the map: adopt its size.
                self._tokens.pop()
                try:
                    self._set_mapsize(0)
                finally:
                    self._enter()
            except lmdb.ReadersFullError:
                if retried_readers:
                    raise
                retried_readers = True
                # Slots of killed processes stay taken until a reader check.
                self.env.reader_check()

    def begin_read(self, buffers: bool = False) -> Txn:
        """A read transaction, to be ended with ``end_read`` (the hot paths use
        this pair; everything else uses ``read``). With ``buffers``, its gets
        return buffers into the map, valid until it ends, instead of copies."""
        # _enter(), its common case written out. A forked child needs no check
        # of its own here: the fork paused every environment of the parent, so
        # an inherited one is still paused in the child until it is reopened.
        tokens = self._tokens
        tokens.append(None)
        if self._paused:
            tokens.pop()
            self._enter()
        try:
            txn: Txn = self.env.begin(None, None, False, buffers)  # type: ignore[call-overload]
            return txn
        except lmdb.Error:  # the map grown by another process, reader slots full
            try:
                return self._begin(False, buffers)
            except BaseException:
                self._tokens.pop()
                raise

    def end_read(self, txn: Txn) -> None:
        txn.abort()
        self._tokens.pop()

    def read(self, fn: Callable[[Txn], T], buffers: bool = False) -> T:
        """Run ``fn`` in a read transaction and return its result (``buffers``:
        as for ``begin_read``; nothing ``fn`` returns may be such a buffer)."""
        txn = self.begin_read(buffers)
        try:
            return fn(txn)
        finally:
            self.end_read(txn)

    def write(
        self, fn: Callable[..., T], buffers: bool = False, *args: Any
    ) -> tuple[T, int]:
        """Run ``fn(txn, *args)`` in a write transaction, commit, return (result,
        txn id).

        With ``buffers``, gets return buffers valid until the next change in the
        transaction (copy what must outlive one; ``fn`` returns no buffer).

        ``fn`` may run more than once: when the map is full the transaction is
        aborted, the map grown, and ``fn`` run again.

        A transaction that changed nothing is not committed by LMDB: its id is
        not used up (the next commit, maybe another process's, takes it), so the
        id returned is then one less (the last commit before it; callers use
        the id only after a change).
        """
        if self.readonly:
            raise ReadOnlyError(
                f"the store at {self.path} was opened with readonly=True: open it "
                "without readonly to change it"
            )
        while True:
            # _enter(), its common case written out (see begin_read).
            tokens = self._tokens
            tokens.append(None)
            if self._paused:
                tokens.pop()
                self._enter()
            try:
                try:
                    # begin(db, parent, write, buffers): by position (see the top)
                    txn: Txn = self.env.begin(None, None, True, buffers)  # type: ignore[call-overload]
                except lmdb.Error:  # the map grown by another process, ...
                    txn = self._begin(True, buffers)
                try:
                    self._writer = _thread.get_ident()  # (see flush_due)
                    result = fn(txn, *args)
                    txn_id: int = txn.id()
                    self._writer = 0
                    txn.commit()
                    last = self.counter.current()
                    if last is None:  # the counter is still learning, or off
                        last = self.env.info()["last_txnid"]
                    if last < txn_id:  # nothing was written
                        return result, txn_id - 1
                    if self.counter.offset is None:
                        self.counter.observe(txn_id)  # (else: checked just above)
                    return result, txn_id
                # What _next_seq gave in an aborted transaction was not stored:
                # forget it first (another thread may begin the next one while
                # the abort releases the GIL).
                except lmdb.MapFullError:
                    self._writer = 0
                    self.next_seq = (-2, 0)
                    txn.abort()
                except lmdb.Error as exc:
                    self._writer = 0
                    self.next_seq = (-2, 0)
                    txn.abort()
                    raise StoreWriteError(
                        f"could not write to the store at {self.path}: {exc} (the "
                        "disk may be full, or a file size limit reached); nothing "
                        "of this write was stored"
                    ) from exc
                except BaseException:
                    self._writer = 0
                    self.next_seq = (-2, 0)
                    txn.abort()
                    raise
            finally:
                self._tokens.pop()
            self._grow()

    def only_atimes(self, txn: Txn) -> bool:
        """Whether the commit that ``txn`` sees last wrote access times only.

        Access-time flushes mark their transaction in the internal database, so
        a memory layer that was current one commit earlier stays current.
        """
        raw = txn.get(ATIME_TXN_KEY, None, self.internal)
        return raw is not None and _u64.unpack(raw)[0] == txn.id()

    # -- settings ------------------------------------------------------------------

    @property
    def settings(self) -> Any:
        """The store's settings (YAML values), through lmdb-dict."""
        settings = self._settings
        if settings is None:
            settings = self._settings = _settings_class()(self.env, self._settings_db)
        return settings

    def settings_snapshot(self) -> dict[str, Any]:
        self._enter()
        try:
            return dict(self.settings.items())
        finally:
            self._tokens.pop()

    def update_settings(self, values: dict[str, Any]) -> None:
        if self.readonly:
            return
        self._enter()
        try:
            self.settings.update(values)
        finally:
            self._tokens.pop()

    # -- access times ----------------------------------------------------------------

    def touch(self, entry_id: bytes, now: float) -> None:
        """Record a read of ``entry_id``; written within about a second.

        No lock on this path (a dict assignment is atomic): a touch racing with
        a flush may land in the batch being written or in the next one, or, at
        worst, be lost, and the entry's next read records it again.
        """
        if self.readonly or self.closed:
            return
        self._pending[entry_id] = now
        if not self._flusher:
            with self._pending_lock:
                if not self._flusher:
                    self.clock = now  # current from here on (see CLOCK_TICK)
                    # A daemon thread: it never holds up the exit (at exit,
                    # _flush_at_exit writes what is pending).
                    _thread.start_new_thread(self._flush_loop, ())
                    self._flusher = True

    def flush_due(self) -> None:
        """Write the pending batch from this (reading) thread, as the background
        thread asked (``_flush_wanted``), unless a flush is under way. Called
        by reads after their transaction ended (a write transaction begun with
        a read one open in the same thread would deadlock at a map resize).

        Why not the thread itself: py-lmdb releases the GIL around each get and
        put, so a thread writing a batch while another reads hands the GIL over
        at every put. Measured: 10,000 access times took 12 ms to write from
        the reading thread and 100-130 ms from the background thread while the
        main thread read, and those reads were 5-9% slower for it.
        """
        if self._writer == _thread.get_ident():
            # Called from user code inside this thread's own write (a key's
            # __reduce__, a logging handler): LMDB's write lock is not
            # recursive (py-lmdb refuses a second write transaction in one
            # thread). The batch waits for a later read or the thread.
            return
        if not self._flush_lock.acquire(False):
            return  # another thread is writing a batch
        try:
            self._flush_pending(INLINE_FLUSH_MAX)
        except Exception:  # noqa: BLE001 - logged; access times are advisory
            logger.error("could not write access times of %s", self.path, exc_info=True)
        finally:
            self._flush_lock.release()

    def pending_atime(self, entry_id: bytes) -> float:
        return self._pending.get(entry_id, 0.0)

    def _tick(self, seconds: float) -> None:
        """Sleep ``seconds``, advancing the clock every CLOCK_TICK."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            time.sleep(min(left, CLOCK_TICK) if left > 0 else 0)
            self.clock = time.time()
            if left <= CLOCK_TICK:
                return

    def _flush_loop(self) -> None:
        try:
            while True:
                self._tick(ATIME_FLUSH_SECONDS)
                with self._pending_lock:
                    if not self._pending or self.closed or _exiting:
                        self._flusher = False
                        return
                    large = len(self._pending) >= INLINE_FLUSH_MIN
                    self._flush_wanted = large
                if large:
                    # Handed to the next read (flush_due); written here if no
                    # read took it (the process stopped reading).
                    self._tick(IDLE_FLUSH_GRACE)
                    if not self._flush_wanted:
                        continue
                self.flush_atimes()
        except Exception:  # noqa: BLE001 - logged; the thread ends
            # Not expected (a failed flush is logged and dropped): a later
            # read starts another thread.
            self._flusher = False
            logger.error(
                "the access-time thread of %s stopped", self.path, exc_info=True
            )

    def flush_atimes(self) -> None:
        """Write the access times recorded since the last flush, in one transaction."""
        with self._flush_lock:
            self._flush_pending()

    def _flush_pending(self, limit: int | None = None) -> None:
        """Write the pending access times, or the ``limit`` recorded first."""
        with self._pending_lock:
            pending = self._pending
            if limit is None or len(pending) <= limit:
                # A copy of the items: a reader that took the dict before this
                # swap may still add to it (that read's time is then lost, as
                # touch says); the dict must not change under the loop below,
                # which lets go of the GIL at each put.
                batch = list(pending.items())
                self._pending = {}
                self._flush_wanted = False
            else:
                # The first ``limit`` (a dict keeps its order); the rest stays
                # pending, and _flush_wanted with it: the next read writes more.
                batch = list(itertools.islice(pending.items(), limit))
                for entry_id, _ in batch:
                    del pending[entry_id]
        if not batch or self.readonly:
            return
        atimes = self.atimes

        def put(txn: Txn) -> None:
            # (about 1.1 us an entry, nearly all of it the three calls into
            # py-lmdb; options by position: see the top)
            exists = txn.cursor(self.values).set_key
            get, put_ = txn.get, txn.put
            for start in range(0, len(batch), _FLUSH_CHUNK):
                for entry_id, atime in batch[start : start + _FLUSH_CHUNK]:
                    if not exists(entry_id):
                        continue  # deleted meanwhile
                    raw = get(entry_id, None, atimes)
                    # The later time wins (another process may have written one).
                    if raw is None or atime > _unpack_time(raw)[0]:
                        put_(entry_id, _pack_time(atime), True, True, False, atimes)
                # The clock stays current through a long flush (the thread that
                # advances it may be the one writing).
                self.clock = time.time()
            txn.put(ATIME_TXN_KEY, _u64.pack(txn.id()), db=self.internal)

        try:
            self.write(put)
        except (lmdb.Error, StoreWriteError):
            # Access times are advisory: losing one batch must not break a read.
            logger.warning(
                "could not record access times in %s", self.path, exc_info=True
            )

    # -- lifecycle ---------------------------------------------------------------------

    def _reopen_after_fork(self) -> None:
        with _REGISTRY_LOCK:
            if self._generation == _fork_generation:
                return
            old = self.env
            # The gate stays closed until the environment is open again: other
            # threads of the child wait at it, rather than begin a transaction
            # in the inherited environment while it is being closed.
            self._reset_process_state(gate_closed=True)
            try:
                # No transaction was open at the fork (the fork waited at the
                # gate), so closing the inherited environment releases nothing
                # of the parent's.
                old.close()
                self.counter.close_after_env()
                self._open()
            finally:
                self._unpause()

    def close(self) -> None:
        if sys.is_finalizing():
            # The interpreter is going away: _flush_at_exit wrote what was
            # pending, and a daemon thread stopped for good inside a
            # transaction would never give its token back. The process exit
            # releases the environment (LMDB needs no close for safety).
            self.closed = True
            return
        if self._generation != _fork_generation:
            # Inherited through fork and never used here: nothing to flush.
            # No transaction was open at the fork, so closing is safe.
            old = self.env
            self._reset_process_state()
            self.closed = True
            old.close()
            self.counter.close_after_env()
            return
        self.flush_atimes()
        if not self.durable and not self.readonly:
            self.env.sync(True)
        self._pause()
        try:
            self.closed = True
            self.env.close()
            self.counter.close_after_env()
        finally:
            self._unpause()

    def before_fork(self) -> None:
        if self._generation == _fork_generation:
            self._pause()

    def after_fork_in_parent(self) -> None:
        if self._generation == _fork_generation:
            self._unpause()


_REGISTRY: dict[str, Env] = {}
_REGISTRY_LOCK = _thread.RLock()


def acquire_env(
    path: str,
    *,
    readonly: bool,
    durable: bool,
    map_size: int | None,
    allow_unsafe: bool,
) -> Env:
    """The environment of ``path`` in this process, opened on first use."""
    with _REGISTRY_LOCK:
        env = _REGISTRY.get(path)
        if env is None:
            env = Env(
                path,
                readonly=readonly,
                durable=durable,
                map_size=map_size,
                allow_unsafe=allow_unsafe,
            )
            _REGISTRY[path] = env
        else:
            if env.readonly and not readonly:
                raise ValueError(
                    f"{path} is already open read-only in this process: close "
                    "the read-only handles first, or open this one read-only too"
                )
            if env.durable != durable and not env.readonly:
                raise ValueError(
                    f"{path} is already open in this process with durable="
                    f"{env.durable}; every handle of a store in one process must "
                    "use the same durable setting"
                )
            if not allow_unsafe:
                _check_ownership(path, False)
        env.refcount += 1
        return env


def release_env(env: Env) -> None:
    with _REGISTRY_LOCK:
        env.refcount -= 1
        if env.refcount > 0:
            return
        if _REGISTRY.get(env.path) is env:
            del _REGISTRY[env.path]
    env.close()


def _before_fork() -> None:
    _REGISTRY_LOCK.acquire()
    for env in list(_REGISTRY.values()):
        env.before_fork()


def _after_fork_in_parent() -> None:
    for env in list(_REGISTRY.values()):
        env.after_fork_in_parent()
    _REGISTRY_LOCK.release()


def _after_fork_in_child() -> None:
    global _fork_generation, _REGISTRY_LOCK
    _fork_generation += 1
    _REGISTRY_LOCK = _thread.RLock()
    for env in _REGISTRY.values():
        # Readers must not use the parent's memory layer until the child has
        # reopened the environment (the layer is reset then).
        env.counter.offset = None


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)


_exiting = False  # set at exit: access-time threads stop


@atexit.register
def _flush_at_exit() -> None:
    # Runs before the interpreter stops daemon threads: an access-time thread
    # in the middle of a flush finishes it first (flush_atimes waits for it),
    # and starts no other.
    global _exiting
    _exiting = True
    for env in list(_REGISTRY.values()):
        if env._generation != _fork_generation:
            continue
        try:
            env.flush_atimes()
            if not env.durable and not env.readonly:
                env.env.sync(True)
        except Exception:  # noqa: BLE001 - one store must not stop the others
            logger.warning(
                "could not finish writing %s at exit", env.path, exc_info=True
            )
