"""PersistDict: a dict that lives in an LMDB store on disk."""

from __future__ import annotations

import _thread
import itertools
import operator
import os
import pickle
import struct
import time
from collections.abc import ItemsView, KeysView, Mapping, ValuesView

import lmdb

from ._codec import (
    _VIEW_FROM,
    HASHED,
    MAX_ID,
    Codec,
    decode_key,
    default_dumps,
    default_loads,
    encode_key,
    is_immutable,
    long_key_digest,
)
from ._codec import _xxh64 as _xxh64
from ._env import (
    _EARLIER_DBS,
    _ORDER_KEY,
    DB_NAMES,
    ORDER_FROM,
    ORDER_TAG,
    Env,
    Txn,
    acquire_env,
    is_entry_id,
    order_key,
    order_seq,
    release_env,
)
from ._exceptions import (
    PersistDictError,
    ReadOnlyError,
    SignatureError,
    StoreClosedError,
)
from ._log import logger
from ._meta import (
    _HEADER,
    _TIME,
    HEADER_SIZE,
    Buffer,
    EntryMetadata,
    MetaRecord,
    damaged_row,
    pack_row,
    record_start,
    repack_row,
    row_seq,
    row_written,
    to_datetime,
    unpack_atime,
    unpack_row,
)

# typing (with re, enum...) and pathlib are not imported at run time: they would
# cost more at start-up than the rest of what opening a store and reading it does.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from pathlib import Path
    from typing import Any, NoReturn, TypeAlias, TypeVar

    from ._memory import LayerEntry

    _T = TypeVar("_T")
    # One write, prepared outside the transaction: the key's encoding, the key,
    # the serialized value, the value, the note.
    _Row: TypeAlias = tuple[bytes, Any, bytes, Any, "str | None"]
    # What one read transaction of an iteration took from the store: the ids of
    # the visible entries; their keys when every key could be rebuilt from its id,
    # else None and how to rebuild each (its encoding and original bytes, or None:
    # from its id); with values, their (row, record start); how many order
    # entries were read (fewer than _BATCH: the last batch); where to go on.
    _Batch: TypeAlias = tuple[
        list[bytes],
        "list[Any] | None",
        "list[tuple[bytes, bytes | None] | None]",
        list[tuple[bytes, int]],
        int,
        bytes,
    ]
    _KeysBase: TypeAlias = KeysView[Any]
    _ValuesBase: TypeAlias = ValuesView[Any]
    _ItemsBase: TypeAlias = ItemsView[Any, Any]
else:
    _KeysBase, _ValuesBase, _ItemsBase = KeysView, ValuesView, ItemsView

__all__ = ["PersistDict"]

_MISSING: Any = object()
_RAISE: Any = object()  # _lookup's default: raise KeyError
_DAY = 86400.0
_BATCH = 512  # entries read per transaction when iterating
_SWEEP_LIMIT = 1000  # entries examined by the sweep at open
_get_ident = _thread.get_ident
_pack_place = _ORDER_KEY.pack  # order_key(seq) is _pack_place(ORDER_TAG, seq)
_pack_header = _HEADER.pack  # a row's metadata (see _meta)
_pack_time = _TIME.pack
_read_u64 = struct.Struct("=Q").unpack_from
_T_CUSTOM = b"\x10"
# First bytes of ids that are exactly their key's encoding (str, bytes): the key
# is rebuilt from the id alone.
_FROM_ID = frozenset({1, 2})
_first_byte = operator.itemgetter(0)
_STR_TAGS = b"\x01" * _BATCH  # the first bytes of a batch of str keys' ids


class _NeedsMeta(Exception):  # noqa: N818 - a signal, not an error
    """Raised while rebuilding keys from ids: this one needs its row."""


def _bytes_key(entry_id: bytes) -> bytes:
    """The key of an id that is a bytes key's encoding; else _NeedsMeta."""
    if entry_id[0] == 2:
        return entry_id[1:]
    raise _NeedsMeta


def _last_place(txn: Txn, env: Env) -> int:
    """The last place taken in the insertion order, or -1."""
    cursor = txn.cursor(env.values)
    ok = cursor.last()  # the places are the main database's last keys
    return order_seq(cursor.key()) if ok and cursor.key()[0] == ORDER_TAG else -1


def _within_order(
    cursor: Any, ids: list[Any], positioned: bool
) -> tuple[list[Any], bytes]:
    """``ids`` taken backwards by ``cursor`` from the insertion order on, past
    its start, without those taken beyond it; and the key of the last place
    taken. ``positioned``: the cursor is on the last key it took (else it ran
    off the start of the database)."""
    ok = True if positioned else cursor.first()
    beyond = 0
    key = cursor.key() if ok else b""
    while key and key[0] != ORDER_TAG:
        beyond += 1
        key = cursor.key() if cursor.next() else b""
    return ids[: len(ids) - beyond], bytes(key)


def _count(txn: Txn, env: Env) -> int:
    """How many entries the store holds, expired or not: each has one row and
    one place, beside the named databases' records, in the main database (those
    of this format, and maybe an earlier format's left by an earlier persistdict
    that was refused the store: see Env._move_to_main)."""
    txn_id = txn.id()
    known_at, names = env.name_records
    if known_at != txn_id:
        names = len(DB_NAMES)
        for name in _EARLIER_DBS:
            if txn.get(name, None, env.values) is not None:
                names += 1
        env.name_records = (txn_id, names)
    return (int(txn.stat(env.values)["entries"]) - names) // 2


def _entry_rows(cursor: Any) -> Iterator[tuple[Buffer, Buffer]]:
    """(id, row) of every entry, in key order: the main database's first keys."""
    for key, row in cursor:
        if not is_entry_id(key):
            return
        yield key, row


class _NotFound(Exception):  # noqa: N818 - a signal, not an error
    """Raised inside a write transaction to abort it: the key is missing."""


def _check_pair(
    name: str, dumps: Callable[..., Any] | None, loads: Callable[..., Any] | None
) -> None:
    if (dumps is None) != (loads is None):
        raise TypeError(
            f"{name}_serializer and {name}_unserializer go together: pass both "
            "(or neither, for the default pickle-based encoding)"
        )
    for fn in (dumps, loads):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} serializers must be callables, got {fn!r}")


def _secret_bytes(secret: bytes | str | None) -> bytes | None:
    """The signing key derived from ``secret=`` or ``$PERSISTDICT_SECRET``.

    Any length of secret works: it is hashed to a 64-byte BLAKE2b key.
    """
    if secret is None:
        env_secret = os.environ.get("PERSISTDICT_SECRET")
        if not env_secret:
            return None
        secret = env_secret
    if isinstance(secret, str):
        secret = secret.encode()
    if not isinstance(secret, bytes) or not secret:
        raise TypeError("secret= must be non-empty bytes (or str)")
    import hashlib  # only stores with a secret need it

    return hashlib.blake2b(secret, digest_size=64, person=b"persistdict.key").digest()


class PersistDict(dict):  # type: ignore[type-arg]
    """A ``dict`` whose contents live in an LMDB store on disk.

    Every ``dict`` method works and answers as a real dict with the same contents
    would; the contents are shared by every thread and process that opens the
    same ``database_path``. See the README for the guarantees.

    :param database_path: the store's directory (created, mode 0o700, if missing).
    :param expiration_days: entries not read or written for this many days (a
        float: ``1/24`` is an hour) are invisible at once and removed by sweeps.
    :param cache_size: entries of the in-memory layer shared by this process's
        handles of the store (the largest asked for wins); ``0`` bypasses it.
    :param key_serializer: ``key -> bytes``, deterministic (equal keys, equal
        bytes); with ``key_unserializer``, replaces the canonical key encoding.
    :param value_serializer: ``value -> bytes``; with ``value_unserializer``,
        replaces pickle (for compression or encryption).
    :param readonly: open for reading only; writes raise ``ReadOnlyError`` and
        access times are not recorded.
    :param verbose: log this store's operations at DEBUG level.
    :param map_size: initial LMDB map size in bytes; the map grows on demand.
    :param secret: sign every value with a keyed BLAKE2b hash (default:
        ``$PERSISTDICT_SECRET``); records that do not verify are never unpickled.
    :param durable: ``True`` (default) syncs every commit to disk; ``False``
        skips the fsync: faster, and a crash of the process loses nothing, but a
        power loss or OS crash may lose the last commits.
    :param allow_unsafe_permissions: open a store owned by another user or
        writable by others (whoever can write it can run code in this process).
    """

    # Slots, not an instance __dict__: on CPython 3.11 an attribute of a dict
    # subclass's __dict__ costs ~18 ns to read, a slot ~5 ns, and a read of the
    # store reads a dozen of them (measured in benchmarks/).
    __slots__ = (
        "__weakref__",
        "_checksums",
        "_codec",
        "_codec_key",
        "_default_values",
        "_env",
        "_expire_seconds",
        "_key_dumps",
        "_key_loads",
        "_layer_box",
        "_layered",
        "_loads",
        "_options",
        "_path",
        "_plain_max",
        "_readonly",
        "_verbose",
    )

    def __init__(
        self,
        database_path: str | os.PathLike[str],
        expiration_days: float | None = None,
        *,
        cache_size: int = 128,
        key_serializer: Callable[[Any], bytes] | None = None,
        key_unserializer: Callable[[bytes], Any] | None = None,
        value_serializer: Callable[[Any], bytes] | None = None,
        value_unserializer: Callable[[bytes], Any] | None = None,
        readonly: bool = False,
        verbose: bool = False,
        map_size: int | None = None,
        secret: bytes | str | None = None,
        durable: bool = True,
        allow_unsafe_permissions: bool = False,
    ) -> None:
        super().__init__()
        if expiration_days is not None:
            if isinstance(expiration_days, bool) or not isinstance(
                expiration_days, (int, float)
            ):
                raise TypeError(
                    f"expiration_days must be a number of days or None, got "
                    f"{expiration_days!r}"
                )
            if not expiration_days > 0:
                raise ValueError(
                    f"expiration_days must be > 0 (or None to keep entries "
                    f"forever), got {expiration_days!r}"
                )
        if (
            isinstance(cache_size, bool)
            or not isinstance(cache_size, int)
            or cache_size < 0
        ):
            raise ValueError(f"cache_size must be an int >= 0, got {cache_size!r}")
        if map_size is not None and (not isinstance(map_size, int) or map_size <= 0):
            raise ValueError(f"map_size must be a positive int, got {map_size!r}")
        _check_pair("key", key_serializer, key_unserializer)
        _check_pair("value", value_serializer, value_unserializer)
        secret_bytes = _secret_bytes(secret)
        given = os.fspath(database_path)
        if not isinstance(given, str):
            raise TypeError(
                f"database_path must be a str or an os.PathLike of str, got "
                f"{database_path!r}"
            )
        path = os.path.realpath(os.path.expanduser(given))

        self._options: dict[str, Any] = {
            "expiration_days": expiration_days,
            "cache_size": cache_size,
            "key_serializer": key_serializer,
            "key_unserializer": key_unserializer,
            "value_serializer": value_serializer,
            "value_unserializer": value_unserializer,
            "readonly": readonly,
            "verbose": verbose,
            "map_size": map_size,
            "secret": secret,
            "durable": durable,
            "allow_unsafe_permissions": allow_unsafe_permissions,
        }
        self._path = path
        self._expire_seconds = expiration_days * _DAY if expiration_days else 0.0
        self._layered = cache_size > 0  # (a bool: tested on every read)
        self._readonly = readonly
        self._key_dumps = key_serializer
        self._key_loads = key_unserializer
        self._default_values = value_serializer is None
        self._codec = Codec(
            value_serializer or default_dumps,
            value_unserializer or default_loads,
            secret_bytes,
        )
        # For _lookup's common case: records of this handle carry a checksum
        # (not a signature), and how a payload is deserialized.
        self._checksums = secret_bytes is None
        # The longest row that __getitem__ opens itself (-1: none, the handle
        # signs its records); a longer record is read through a memoryview.
        self._plain_max = _VIEW_FROM if self._checksums else -1
        self._loads = self._codec.loads
        # Handles with the same value codec share deserialized values.
        self._codec_key = (value_unserializer, secret_bytes)
        self._verbose = verbose
        if verbose:
            import logging  # imported on first use: see _log.py

            verbose_logger = logging.getLogger("persistdict")
            verbose_logger.setLevel(logging.DEBUG)
            if not verbose_logger.hasHandlers():
                verbose_logger.addHandler(logging.StreamHandler())
        self._env: Env | None = None
        env = acquire_env(
            path,
            readonly=readonly,
            durable=durable,
            map_size=map_size,
            allow_unsafe=allow_unsafe_permissions,
        )
        self._env = env
        env.layer.request(cache_size)
        self._layer_box = env.layer.box(self._codec_key)
        if self._expire_seconds and not readonly:
            if env.settings_snapshot().get("expiration_days") != expiration_days:
                # Recorded for the command line (``persistdict expire``, ``info``).
                env.update_settings({"expiration_days": expiration_days})
            self._sweep(_SWEEP_LIMIT)
        if verbose:
            logger.debug("opened %s (expiration_days=%s)", path, expiration_days)

    # -- plumbing ----------------------------------------------------------------

    def _live(self) -> Env:
        env = self._env
        if env is None:
            raise StoreClosedError(
                f"this PersistDict of {self._path} was closed: open a new one "
                "with PersistDict(path)"
            )
        return env

    def _writable(self) -> Env:
        env = self._live()
        if self._readonly:
            raise ReadOnlyError(
                f"this PersistDict of {self._path} was opened with readonly=True: "
                "open another handle without readonly to change the store"
            )
        return env

    @property
    def path(self) -> Path:
        """The store's directory."""
        from pathlib import Path  # not imported at start-up (see the imports)

        return Path(self._path)

    @property
    def expiration_days(self) -> float | None:
        """Days without access after which an entry expires (None: never)."""
        value: float | None = self._options["expiration_days"]
        return value

    def _encode(self, key: Any) -> bytes:
        """The canonical encoding of ``key`` (the entry id, if short enough)."""
        if self._key_dumps is None:
            if type(key) is str:
                return b"\x01" + key.encode("utf-8", "surrogatepass")
            return encode_key(key)[0]
        hash(key)  # unhashable keys raise TypeError, as in a dict
        encoded = self._key_dumps(key)
        if not isinstance(encoded, bytes):
            raise TypeError(
                f"key_serializer must return bytes, returned "
                f"{type(encoded).__name__} for key {key!r}"
            )
        return _T_CUSTOM + encoded

    def _original(self, key: Any, encoded: bytes) -> bytes | None:
        """The bytes that rebuild ``key`` exactly, sealed like a value (checksum,
        or signature with a secret), or None when the encoding itself will do."""
        if self._key_dumps is not None or type(key) is str:
            return None  # (a str key is rebuilt from its encoding)
        original = encode_key(key)[1]
        return None if original is None else self._codec.seal(encoded, original)

    def _decode(self, encoded: bytes, original: bytes | None) -> Any:
        if self._key_loads is not None:
            return self._key_loads(encoded[1:])
        if original is None:
            return decode_key(encoded, None)
        # Verified before it is unpickled, as values are.
        return decode_key(encoded, self._codec.open(encoded, original))

    def _dumps(self, key: Any, value: Any) -> bytes:
        try:
            payload = self._codec.dumps(value)
        except pickle.PicklingError as exc:
            raise pickle.PicklingError(
                f"cannot store the value for key {key!r}: {exc}; the store is "
                "unchanged (store a picklable value, or pass value_serializer=)"
            ) from exc
        except (TypeError, AttributeError, ValueError) as exc:
            raise TypeError(
                f"cannot store the value for key {key!r}: {exc}; the store is "
                "unchanged (store a picklable value, or pass value_serializer=)"
            ) from exc
        if not isinstance(payload, bytes):
            raise TypeError(
                f"value_serializer must return bytes, returned "
                f"{type(payload).__name__} for key {key!r}"
            )
        return payload

    def _layer_entry(self, value: Any, payload: Buffer, stamp: float) -> LayerEntry:
        """What the memory layer keeps: an immutable value itself, else the
        payload, unpickled again on each hit so that readers never share it; and
        ``stamp``, a time the entry's recorded access time is at least (see
        _lookup; 0.0 when unknown)."""
        if self._default_values and is_immutable(value):
            return (value, b"", True, stamp)
        return (None, payload, False, stamp)

    def _atime(self, env: Env, txn: Txn, entry_id: bytes, row: Buffer) -> float:
        """When the entry was last read or written, as far as this process knows:
        its row's write time, the reads flushed to ``atimes``, pending reads."""
        atime = row_written(row)
        flushed = txn.get(entry_id, None, env.atimes)
        if flushed is not None:
            atime = max(atime, unpack_atime(flushed))
        return max(atime, env.pending_atime(entry_id))

    def _expired(
        self, env: Env, txn: Txn, entry_id: bytes, row: Buffer, now: float
    ) -> bool:
        try:
            if now - row_written(row) <= self._expire_seconds:
                return False
            return now - self._atime(env, txn, entry_id, row) > self._expire_seconds
        except SignatureError:
            # A row cut short: not expired (its age is unknown); reading it
            # raises, and writing or deleting it replaces or removes it.
            return False

    def _find(self, env: Env, txn: Txn, encoded: bytes) -> tuple[bytes, Buffer] | None:
        """(id, row) of the entry for ``encoded``, expired or not."""
        if len(encoded) <= MAX_ID:
            row = txn.get(encoded, None, env.values)
            return None if row is None else (encoded, row)
        prefix = HASHED + long_key_digest(encoded)
        cursor = txn.cursor(db=env.values)
        if cursor.set_range(prefix):
            for key, row in cursor:
                entry_id = bytes(key)  # a buffer in a transaction with buffers
                if not entry_id.startswith(prefix):
                    break
                if unpack_row(row).full == encoded:
                    return entry_id, row
        return None

    def _new_id(self, env: Env, txn: Txn, encoded: bytes) -> bytes:
        if len(encoded) <= MAX_ID:
            return encoded
        prefix = HASHED + long_key_digest(encoded)
        for counter in range(256):
            candidate = prefix + bytes([counter])
            if txn.get(candidate, None, env.values) is None:
                return candidate
        raise PersistDictError(
            "more than 256 long keys share one 128-bit hash in this store"
        )

    def _remove(self, env: Env, txn: Txn, entry_id: bytes, seq: int) -> None:
        """Delete an entry's rows (``seq``: its place in the insertion order)."""
        txn.delete(entry_id, b"", env.values)  # arguments by position: see _env
        txn.delete(order_key(seq), b"", env.values)
        txn.delete(entry_id, b"", env.atimes)

    def _remove_damaged(self, env: Env, txn: Txn, entry_id: bytes) -> None:
        """Delete an entry whose row cannot be read (so neither its place in
        the order: every place that names it is looked for)."""
        txn.delete(entry_id, db=env.values)
        txn.delete(entry_id, db=env.atimes)
        places = []
        cursor = txn.cursor(env.values)
        ok = cursor.set_range(ORDER_FROM)
        while ok and cursor.key()[0] == ORDER_TAG:
            if bytes(cursor.value()) == entry_id:
                places.append(bytes(cursor.key()))
            ok = cursor.next()
        for place in places:
            txn.delete(place, db=env.values)
        env.next_seq = (-2, 0)  # the last place may be gone: ask the database

    def _next_seq(self, env: Env, txn: Txn) -> int:
        """The insertion place of a new key: after the last one.

        Write transactions run one at a time; the place after the one this
        process gave last is still the next one if ``txn`` follows that
        transaction directly (no commit, by anyone, in between) or is that
        transaction (an update() of several keys). Otherwise: ask the database.
        A transaction that did not commit is forgotten (Env.write), and _put
        checks that the place is after the last one before it is used.
        """
        txn_id = txn.id()
        last_txn, following = env.next_seq
        if txn_id == last_txn or txn_id == last_txn + 1:
            seq = following
        else:
            seq = _last_place(txn, env) + 1
        env.next_seq = (txn_id, seq + 1)
        return seq

    def _put(
        self,
        env: Env,
        txn: Txn,
        encoded: bytes,
        key: Any,
        payload: bytes,
        now: float,
        note: str | None = None,
    ) -> bytes:
        """Store one value in ``txn``; return its id. (``txn`` may return
        buffers: a row read here is not used after the put.)"""
        found = self._find(env, txn, encoded)
        if found is not None:
            entry_id = found[0]
            try:
                if self._expire_seconds and self._expired(
                    env, txn, entry_id, found[1], now
                ):
                    # An expired entry is a missing key.
                    self._remove(env, txn, entry_id, row_seq(found[1]))
                    found = None
                else:
                    # As in a dict, the first key object stored is kept, and
                    # its place.
                    check = self._codec.check(entry_id, payload)
                    row = repack_row(found[1], now, check, payload, note)
            except SignatureError:
                # A row cut short (a damaged store): the new value replaces
                # the whole entry.
                logger.warning(
                    "the entry for key %r in %s was damaged; replaced", key, self._path
                )
                self._remove_damaged(env, txn, entry_id)
                found = None
        if found is None:
            entry_id = self._new_id(env, txn, encoded)
            seq = self._next_seq(env, txn)
            # (append: put(key, value, dupdata, overwrite, append, db); the
            # places are the main database's last keys)
            if not txn.put(order_key(seq), entry_id, True, True, True, env.values):
                # Not after the last place: the remembered one is stale (it
                # cannot be, see _next_seq); ask the database.
                env.next_seq = (-2, 0)
                seq = self._next_seq(env, txn)
                if not txn.put(order_key(seq), entry_id, True, True, True, env.values):
                    raise PersistDictError(
                        f"the insertion order of {self._path} is damaged: "
                        f"no place after the last one ({seq - 1})"
                    )
            full = encoded if entry_id != encoded else None
            check = self._codec.check(entry_id, payload)
            original = self._original(key, encoded)
            row = pack_row(seq, now, now, check, payload, full, original, note)
        txn.put(entry_id, row, True, True, False, env.values)
        return entry_id

    def _put_one(
        self, txn: Txn, env: Env, encoded: bytes, key: Any, payload: bytes, now: float
    ) -> bytes:
        """``_put`` for ``d[key] = value``, its common cases written out: an id
        that is the key's encoding, no expiration; a new key, or an overwrite.
        (Each call saved is measured in benchmarks/.) Anything else: ``_put``."""
        if len(encoded) > MAX_ID or self._expire_seconds:
            return self._put(env, txn, encoded, key, payload, now)
        if self._checksums:  # Codec.check(), its common case written out
            check = b"\x00" + _xxh64(payload, len(encoded))
        else:
            check = self._codec.check(encoded, payload)
        # (No db argument here and in the puts below: the transaction's own is
        # the main database, env.values, and py-lmdb parses each argument.)
        row = txn.get(encoded)
        if row is None:
            # A new key. Its place, after the last one: _next_seq, written out.
            txn_id = txn.id()
            last_txn, seq = env.next_seq
            if txn_id != last_txn and txn_id != last_txn + 1:
                seq = _last_place(txn, env) + 1
            env.next_seq = (txn_id, seq + 1)
            # (append: put(key, value, dupdata, overwrite, append))
            place = _pack_place(ORDER_TAG, seq)
            if not txn.put(place, encoded, True, True, True):
                env.next_seq = (-2, 0)  # not after the last place: _put asks the db
                return self._put(env, txn, encoded, key, payload, now)
            if self._key_dumps is None and type(key) is str:  # no original key
                header = _pack_header(0, seq, now, now, 0, 0, 0)
                new_row = b"".join((header, check, payload))
            else:
                original = self._original(key, encoded)
                new_row = pack_row(seq, now, now, check, payload, None, original)
        elif len(row) >= HEADER_SIZE and not row[0]:
            # An overwrite: as in a dict, the first key object stored is kept,
            # and its place; the same metadata with a new write time (bytes 17
            # to 25). repack_row(), its case of a row of flags 0, written out.
            new_row = b"".join((row[:17], _pack_time(now), row[25:35], check, payload))
        else:
            try:
                new_row = repack_row(row, now, check, payload, None)
            except SignatureError:  # a row cut short: _put replaces the entry
                return self._put(env, txn, encoded, key, payload, now)
        txn.put(encoded, new_row)
        return encoded

    # -- reading -----------------------------------------------------------------

    def __getitem__(self, key: Any, default: Any = _RAISE) -> Any:
        """``d[key]``: the value of ``key``, else KeyError. (Inside the library,
        as ``_lookup``: ``default`` instead of the KeyError; ``get`` calls it.)

        The hot path of the library, written out flat (each call or attribute
        saved is measured in benchmarks/). A warm read compares the last commit
        id in LMDB's lock file with the one the memory layer is known current
        at, and needs no transaction; otherwise one read transaction (whose id
        checks the layer), the value decoded after it ended.

        With expiration, a layer entry serves reads while its stamp is younger
        than the expiration: the stamp is the access time this process recorded
        for the read or write that put it there (0.0 from a read-only handle,
        which records none), so the entry's access time is at least that, and
        other processes' reads only make it later; an older one is checked in
        the store.
        """
        env = self._env
        if env is None:
            env = self._live()  # raises StoreClosedError
        if type(key) is str and self._key_dumps is None:
            try:
                encoded = b"\x01" + key.encode()
            except UnicodeEncodeError:  # lone surrogates
                encoded = self._encode(key)
        else:
            encoded = self._encode(key)
        # (An id longer than MAX_ID is not looked at here: LMDB refuses it, or
        # finds nothing under it; the miss below looks for its hash.)
        expire = self._expire_seconds
        use_layer = self._layered
        if use_layer:
            # Whether the layer holds the key at all, before the costlier checks
            # (a read of a key it does not hold, the common case of a store
            # larger than the layer, goes straight to the store; and a miss
            # seen here is a miss at the transaction's commit too: a miss is
            # never wrong, only slower).
            cache = self._layer_box[0]  # layer._caches.get(self._codec_key)
            held = False
            if cache is not None and encoded in cache.entries:
                held = True
                layer = env.layer
                counter = env.counter
                if (
                    counter.offset is not None  # None in a forked child until reopened
                    and _read_u64(counter.mapped, counter.offset)[0] == layer.known_txn  # type: ignore[arg-type]
                ):
                    # Nothing was committed since the layer was last known
                    # current. layer.hit(), written out: the entry is taken
                    # after that check (see validate; a cache that request()
                    # replaced is emptied).
                    entry = cache.entries.get(encoded)
                    if entry is not None and (
                        not expire or time.time() - entry[3] <= expire
                    ):
                        cache.referenced.add(encoded)
                        # _layer_hit(), written out: the warm path.
                        if not self._readonly and encoded not in env._pending:
                            env.touch(encoded, time.time())
                        if entry[2]:  # an immutable value, shared
                            return entry[0]
                        loads = self._loads  # (see the loads below)
                        return loads(entry[1])
        # Whether this key was read since the last flush of access times (its
        # time is then recorded already; and the layer admits such a key, see
        # below). A read-only handle records none: True for it.
        again = self._readonly or encoded in env._pending
        # env.begin_read(), its common case written out (see there).
        tokens = env._tokens
        tokens.append(None)
        if env._paused:
            tokens.pop()
            txn = env.begin_read()
            tokens = env._tokens  # a new list if that reopened after a fork
        else:
            try:
                txn = env.env.begin()
            except lmdb.Error:  # the map grown by another process, slots full
                tokens.pop()
                txn = env.begin_read()
        try:
            if use_layer:
                # Admission (see _memory): a key read again since the last
                # flush of access times (the pending dict holds the batch's
                # first reads), while the batch holds few keys; for a handle
                # that records no access time, the layer's own record of recent
                # reads (asked below, once the key is found).
                admit = again and (
                    self._readonly or len(env._pending) <= env.layer.seen_limit
                )
                # The layer is checked (and its transaction id learnt) for a key
                # it holds or may admit; any other read leaves it to the next.
                if held or admit:
                    layer = env.layer
                    txn_id = txn.id()
                    if txn_id != layer.known_txn:
                        layer.validate(
                            txn_id,
                            txn_id == layer.known_txn + 1 and env.only_atimes(txn),
                        )
                        env.counter.observe(txn_id)
                    if held:
                        entry = layer.get(self._codec_key, txn_id, encoded)
                        if entry is not None and (
                            not expire or time.time() - entry[3] <= expire
                        ):
                            return self._layer_hit(env, encoded, entry)
            # (no db: the transaction's own is the main database, env.values;
            # py-lmdb parses each argument passed, see _env)
            record = txn.get(encoded)
            if (
                expire
                and record is not None
                and self._expired(env, txn, encoded, record, time.time())
            ):
                record = None  # an expired entry is a missing key
        except lmdb.BadValsizeError:  # an id longer than LMDB takes (MAX_ID)
            record = None
        finally:
            txn.abort()
            # Gone now, not with this frame: an aborted read transaction keeps
            # its reader slot until it is freed, and a KeyError raised below
            # keeps the frame (1,024 kept exceptions filled every slot).
            del txn
            tokens.pop()
        if record is None:
            if len(encoded) > MAX_ID:  # the key is stored under its hash
                value = self._read_checked(env, key, encoded)
                if value is not _MISSING:
                    return value
            if default is _RAISE:
                raise KeyError(key)
            return default
        if not again:
            if env._flusher:  # env.touch(), its common case written out
                # The clock the access-time thread advances (see CLOCK_TICK in
                # _env): no call to time.time(), and one float for many reads.
                env._pending[encoded] = env.clock
            else:
                env.touch(encoded, time.time())  # starts the thread and the clock
        if env._flush_wanted:  # access times to write (see Env.flush_due)
            env.flush_due()
        # Codec.open(), its common case written out: a row of flags 0 (its record
        # at HEADER_SIZE, 35: a flag byte, 0, then 8 bytes of checksum) of a
        # size that is unpickled from bytes, whose checksum verifies. The record's
        # flag is not looked at: a signed record (flag 1, then its signature)
        # fails the comparison, and _open_row says why. The offsets are
        # literals: no arithmetic on this path. Any other row: _payload.
        try:
            plain = not record[0]
        except IndexError:  # a row cut short: a damaged store
            plain = False  # _payload raises
        # (The comparison in the if: the interpreter specializes one followed by
        # a jump, not one whose result is stored.)
        if plain and len(record) <= self._plain_max:
            payload: Buffer = record[44:]
            if record[36:44] != _xxh64(payload, len(encoded)):
                payload = self._open_row(key, encoded, record)  # raises
        else:
            payload = self._payload(key, encoded, record)
        # (An attribute, then a call: the interpreter does not specialize the
        # LOAD_METHOD of a slot that holds a function, self._loads(payload).)
        loads = self._loads
        value = loads(payload)
        if use_layer and admit and (not self._readonly or layer.admit(encoded)):
            # The access time recorded for the key's first read of the batch.
            stamp = 0.0 if self._readonly else env._pending.get(encoded, 0.0)
            entry = self._layer_entry(value, payload, stamp)
            layer.put(self._codec_key, txn_id, encoded, entry)
        return value

    _lookup = __getitem__

    def _layer_hit(self, env: Env, encoded: bytes, entry: LayerEntry) -> Any:
        """The value of a memory-layer entry served to a read, whose access time
        it records (unless read before in this batch, or read-only)."""
        if not self._readonly and encoded not in env._pending:
            env.touch(encoded, time.time())
        return entry[0] if entry[2] else self._loads(entry[1])

    def _payload(self, key: Any, entry_id: bytes, row: Buffer) -> Buffer:
        """The payload of a row's record, its checksum verified (as
        ``_open_row``; a checksummed record of a row with flags is checked here)."""
        try:
            start = record_start(row) if row[0] else HEADER_SIZE
        except (IndexError, SignatureError):  # a row cut short: a damaged store
            start = len(row)  # no record in it: _open_row raises
        if self._checksums and start < len(row) <= _VIEW_FROM and not row[start]:
            payload = row[start + 9 :]
            if row[start + 1 : start + 9] == _xxh64(payload, len(entry_id)):
                return payload
        return self._open_row(key, entry_id, row)

    def _open_row(self, key: Any, entry_id: bytes, row: Buffer) -> Buffer:
        """The payload of a row's record, its checksum or signature verified
        (SignatureError, logged, for one that does not verify or is damaged)."""
        try:
            start = record_start(row)
            if start >= len(row):  # a row cut short: no record in it
                raise damaged_row()
            return self._codec.open(entry_id, bytes(row), start)
        except PersistDictError:
            logger.error("record for key %r in %s did not verify", key, self._path)
            raise

    def _read_checked(self, env: Env, key: Any, encoded: bytes) -> Any:
        """``_lookup`` for a key stored under its hash (not in the memory layer)."""
        now = time.time()

        def fn(txn: Txn) -> tuple[bytes, Buffer] | None:
            found = self._find(env, txn, encoded)
            if found is None or (
                self._expire_seconds and self._expired(env, txn, *found, now)
            ):
                return None
            return found

        found = env.read(fn)
        if found is None:
            return _MISSING
        if not self._readonly:
            env.touch(found[0], now)
        return self._codec.loads(self._open_row(key, *found))

    def get(self, key: Any, default: Any = None) -> Any:
        return self._lookup(key, default)

    def __contains__(self, key: Any) -> bool:
        env = self._env
        if env is None:
            env = self._live()
        if type(key) is str and self._key_dumps is None:
            try:
                encoded = b"\x01" + key.encode()
            except UnicodeEncodeError:  # lone surrogates
                encoded = self._encode(key)
        else:
            encoded = self._encode(key)
        if not self._expire_seconds and len(encoded) <= MAX_ID:
            # The common case written out: one lookup in one read transaction
            # (env.begin_read() written out too, as in __getitem__; a cursor's
            # set_key does not copy the value just to drop it).
            tokens = env._tokens
            tokens.append(None)
            if env._paused:
                tokens.pop()
                txn = env.begin_read()
                tokens = env._tokens  # a new list if that reopened after a fork
            else:
                try:
                    txn = env.env.begin()
                except lmdb.Error:  # the map grown by another process, slots full
                    tokens.pop()
                    txn = env.begin_read()
            try:
                return bool(txn.cursor(env.values).set_key(encoded))
            finally:
                txn.abort()
                del txn  # its reader slot (see __getitem__)
                tokens.pop()
        now = time.time()

        def fn(txn: Txn) -> bool:
            found = self._find(env, txn, encoded)
            if found is None:
                return False
            return not (self._expire_seconds and self._expired(env, txn, *found, now))

        return env.read(fn, buffers=True)

    def __len__(self) -> int:
        env = self._live()
        if not self._expire_seconds:
            txn = env.begin_read()
            try:
                return _count(txn, env)
            finally:
                env.end_read(txn)
        now = time.time()

        def count(txn: Txn) -> int:
            return sum(
                1
                for entry_id, row in _entry_rows(txn.cursor(env.values))
                if not self._expired(env, txn, bytes(entry_id), row, now)
            )

        return env.read(count, buffers=True)

    def metadata(self, key: Any) -> EntryMetadata:
        """Creation time, last access time and stored size of ``key``'s entry.

        Reading metadata is not an access: it does not move ``atime``.
        """
        env = self._live()
        encoded = self._encode(key)
        now = time.time()

        def fn(txn: Txn) -> tuple[MetaRecord, float] | None:
            found = self._find(env, txn, encoded)
            if found is None or (
                self._expire_seconds and self._expired(env, txn, *found, now)
            ):
                return None
            return unpack_row(found[1]), self._atime(env, txn, *found)

        found = env.read(fn, buffers=True)
        if found is None:
            raise KeyError(key)
        meta, atime = found
        return EntryMetadata(to_datetime(meta.ctime), to_datetime(atime), meta.size)

    # -- iteration ---------------------------------------------------------------

    def _batches(
        self, *, reverse: bool = False, values: bool = False
    ) -> Iterator[tuple[list[Any], list[bytes], list[tuple[bytes, int]]]]:
        """Visible entries in insertion order: (keys, ids, records) per batch,
        one read transaction per batch (records, as (row, record start), only
        with ``values``).

        No transaction is held while the caller works on a batch, so a slow
        consumer never pins old pages nor blocks a resize. Entries added or
        removed meanwhile may or may not be seen (never twice, never an error).
        """
        env = self._live()
        position: bytes | None = None
        now = time.time()
        expire = self._expire_seconds
        # str and bytes keys are their own ids: rebuilt without reading the row.
        from_id = _FROM_ID if self._key_loads is None else frozenset()
        # Keys only, without expiration: the insertion order may be all it takes.
        direct = bool(from_id) and not expire and not values
        # Otherwise rows are read for their metadata: as buffers, not copies.
        buffers = not direct

        def batch(txn: Txn) -> _Batch:
            # The places of the insertion order: the main database's last keys,
            # from ORDER_FROM on (see _env).
            cursor = txn.cursor(env.values)
            if position is None:
                ok = cursor.last() if reverse else cursor.set_range(ORDER_FROM)
            elif not cursor.set_range(position):
                ok = cursor.last() if reverse else False  # ``position`` was last
            elif reverse:
                ok = cursor.prev()  # the place before ``position`` (maybe gone)
            else:
                ok = cursor.next() if cursor.key() == position else True
            if not ok or cursor.key()[0] != ORDER_TAG:
                return [], None, [], [], 0, b""
            rows = (cursor.iterprev if reverse else cursor.iternext)(False, True)
            ids = list(itertools.islice(rows, _BATCH))
            last = bytes(cursor.key())  # the islice stopped on the last id it took
            if reverse and (not last or last[0] != ORDER_TAG):
                # This batch ran past the start of the insertion order: drop
                # what it took before it. (Forwards, it ends with the database.)
                ids, last = _within_order(cursor, ids, bool(last))
            if buffers:
                ids = [bytes(entry_id) for entry_id in ids]
            if direct:
                # The common case, all str keys none of which holds a "\x01":
                # their ids joined, decoded and split at the tags, in C.
                read = len(ids)
                keys: list[Any]
                if bytes(map(_first_byte, ids)) == _STR_TAGS[:read]:
                    joined = b"".join(ids)
                    if joined.count(1) == read:
                        try:
                            keys = joined.decode().split("\x01")[1:]
                        except UnicodeDecodeError:  # lone surrogates
                            pass
                        else:
                            return ids, keys, [], [], read, last
                # Else in one comprehension (decoding runs no user code: fine
                # in the transaction); any other key ends it.
                try:
                    keys = [
                        entry_id[1:].decode()
                        if entry_id[0] == 1
                        else _bytes_key(entry_id)
                        for entry_id in ids
                    ]
                except (_NeedsMeta, UnicodeDecodeError):  # or lone surrogates
                    pass
                else:
                    return ids, keys, [], [], len(ids), last
            get = txn.get
            values_db = env.values
            visible: list[bytes] = []
            originals: list[tuple[bytes, bytes | None] | None] = []
            records: list[tuple[bytes, int]] = []
            for entry_id in ids:
                row = get(entry_id, None, values_db)
                if row is None or (
                    expire and self._expired(env, txn, entry_id, row, now)
                ):
                    continue
                if entry_id[0] in from_id:
                    originals.append(None)
                    start = record_start(row)
                else:
                    meta = unpack_row(row)
                    originals.append((meta.full or entry_id, meta.original))
                    start = meta.start
                visible.append(entry_id)
                if values:
                    records.append((bytes(row), start))
            return visible, None, originals, records, len(ids), last

        while True:
            batch_ids, direct_keys, originals, records, read, position = env.read(
                batch, buffers
            )
            if direct_keys is not None:
                if direct_keys:
                    yield direct_keys, batch_ids, records
            else:
                # Outside the transaction: a key_unserializer or an original
                # key's unpickling may run user code.
                keys = [
                    decode_key(entry_id, None) if how is None else self._decode(*how)
                    for entry_id, how in zip(batch_ids, originals, strict=True)
                ]
                if keys:
                    yield keys, batch_ids, records
            if read < _BATCH:
                return

    def __iter__(self) -> Iterator[Any]:
        return itertools.chain.from_iterable(keys for keys, _, _ in self._batches())

    def __reversed__(self) -> Iterator[Any]:
        return itertools.chain.from_iterable(
            keys for keys, _, _ in self._batches(reverse=True)
        )

    def _iter_items(self) -> Iterator[tuple[Any, Any]]:
        codec = self._codec
        for keys, ids, records in self._batches(values=True):
            for key, entry_id, (row, start) in zip(keys, ids, records, strict=True):
                yield key, codec.loads(codec.open(entry_id, row, start))

    def _iter_values(self) -> Iterator[Any]:
        for _key, value in self._iter_items():
            yield value

    def keys(self) -> _KeysView:  # type: ignore[override]
        return _KeysView(self)

    def values(self) -> _ValuesView:  # type: ignore[override]
        return _ValuesView(self)

    def items(self) -> _ItemsView:  # type: ignore[override]
        return _ItemsView(self)

    def copy(self) -> dict[Any, Any]:
        """A plain ``dict`` with the current contents (a snapshot in memory)."""
        return dict(self._iter_items())

    def __repr__(self) -> str:
        return repr(self.copy())

    def __str__(self) -> str:
        return repr(self.copy())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, dict):
            return NotImplemented
        if isinstance(other, PersistDict):
            other = other.copy()
        return self.copy() == other

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = None

    # Dicts are not ordered; defined so that no dict slot is left to answer.
    def __lt__(self, other: object) -> bool:
        return NotImplemented

    def __le__(self, other: object) -> bool:
        return NotImplemented

    def __gt__(self, other: object) -> bool:
        return NotImplemented

    def __ge__(self, other: object) -> bool:
        return NotImplemented

    def __or__(self, other: Any) -> dict[Any, Any]:
        if not isinstance(other, dict):
            return NotImplemented
        merged = self.copy()
        merged.update(other.copy() if isinstance(other, PersistDict) else other)
        return merged

    def __ror__(self, other: Any) -> dict[Any, Any]:
        if not isinstance(other, dict):
            return NotImplemented
        merged = dict(other)
        merged.update(self.copy())
        return merged

    def __ior__(self, other: Any) -> PersistDict:
        self.update(other)
        return self

    # -- writing -----------------------------------------------------------------

    def _write(self, rows: list[_Row]) -> None:
        """Store ``rows`` in ONE transaction (``__setitem__`` is the same for
        one row, written out)."""
        env = self._writable()
        now = time.time()

        def fn(txn: Txn) -> list[bytes]:
            return [
                self._put(env, txn, encoded, key, payload, now, note)
                for encoded, key, payload, _value, note in rows
            ]

        # With buffers: _put reads the row it replaces in place, and is done with
        # it before its own put (a copy of a large row, beside the new payload
        # and row, made the allocator return memory and fault it in again on
        # every write).
        ids, txn_id = env.write(fn, buffers=True)
        layer = env.layer
        # A layer that never held anything has nothing to update: it is not
        # told. (Should a reader admit a value it read before this commit, the
        # layer stays known current only at that reader's older commit, and the
        # next read, at this one or later, drops it: see MemoryLayer.validate.)
        if layer._caches:
            codec_key = self._codec_key
            changes: dict[bytes, tuple[object, Any, bytes] | None] = {
                entry_id: (codec_key, value, payload)
                for entry_id, (_encoded, _key, payload, value, _note) in zip(
                    ids, rows, strict=True
                )
            }
            layer.wrote(
                txn_id,
                changes,
                lambda value, payload: self._layer_entry(value, payload, now),
            )
        if self._verbose:
            logger.debug("stored %d entries in %s", len(rows), self._path)

    def _row(self, key: Any, value: Any, note: str | None = None) -> _Row:
        """Everything about one write that can be done before the transaction."""
        if type(key) is str and self._key_dumps is None:  # _encode's common case
            encoded = b"\x01" + key.encode("utf-8", "surrogatepass")
        else:
            encoded = self._encode(key)
        payload = self._dumps(key, value)
        return encoded, key, payload, value, note

    def _note(self, key: Any) -> str | None:
        """The note kept with ``key``'s entry by ``_set_with_note``, if any."""
        env = self._live()
        encoded = self._encode(key)
        found = env.read(lambda txn: self._find(env, txn, encoded))
        return None if found is None else unpack_row(found[1]).note

    def _set_with_note(self, key: Any, value: Any, note: str) -> None:
        """``self[key] = value``, with a short text kept in the entry's metadata
        (persist_cache's preview of the call, shown by the command line)."""
        self._write([self._row(key, value, note)])

    def __setitem__(self, key: Any, value: Any) -> None:
        # _write([self._row(key, value)]), written out for one row: less code
        # runs per write (and code that runs right after an fsync runs cold).
        env = self._env
        if env is None or self._readonly:
            env = self._writable()  # raises
        if type(key) is str and self._key_dumps is None:  # _encode's common case
            encoded = b"\x01" + key.encode("utf-8", "surrogatepass")
        else:
            encoded = self._encode(key)
        if self._default_values:
            # _dumps() without its checks, for the default serializer; any error
            # goes through _dumps again, which says what failed, with the key.
            try:
                payload = default_dumps(value)
            except Exception:  # noqa: BLE001 - raised again by _dumps
                payload = self._dumps(key, value)
        else:
            payload = self._dumps(key, value)
        now = time.time()
        # env.write(self._put_one, ...), its common case written out; any other
        # (the gate closed, an error from LMDB, a full map) goes through it,
        # which begins again, grows a full map and says what failed.
        tokens = env._tokens
        tokens.append(None)
        txn: Txn | None = None
        if not env._paused:
            try:
                # begin(db, parent, write, buffers): by position (see _env);
                # buffers: see _write
                txn = env.env.begin(None, None, True, True)  # type: ignore[assignment]
            except lmdb.Error:
                pass  # Env.write, below, begins again (a map another process
                # grew) or raises what failed
        if txn is not None:
            try:
                env._writer = _get_ident()  # (as Env.write; see Env.flush_due)
                entry_id = self._put_one(txn, env, encoded, key, payload, now)
                txn_id = txn.id()
                env._writer = 0
                txn.commit()
            except lmdb.Error:
                env._writer = 0
                env.next_seq = (-2, 0)  # (as Env.write: nothing of it was stored)
                txn.abort()
                txn = None
            except BaseException:
                env._writer = 0
                env.next_seq = (-2, 0)
                txn.abort()
                tokens.pop()
                raise
        tokens.pop()
        if txn is None:
            entry_id, txn_id = env.write(
                self._put_one, True, env, encoded, key, payload, now
            )
        elif env.counter.offset is None:  # (as Env.write)
            env.counter.observe(txn_id)
        layer = env.layer
        if layer._caches:  # (see _write)
            layer.wrote(
                txn_id,
                {entry_id: (self._codec_key, value, payload)},
                lambda value, payload: self._layer_entry(value, payload, now),
            )
        if self._verbose:
            logger.debug("stored %d entries in %s", 1, self._path)

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Like ``dict.update``; all the items are stored in one transaction."""
        if len(args) > 1:
            raise TypeError(f"update expected at most 1 argument, got {len(args)}")
        rows = []
        if args:
            other = args[0]
            if isinstance(other, PersistDict):
                pairs: Iterable[Any] = other._iter_items()
            elif isinstance(other, Mapping) or hasattr(other, "keys"):
                pairs = ((k, other[k]) for k in other.keys())  # noqa: SIM118 - keys() is the protocol
            else:
                pairs = other
            for index, pair in enumerate(pairs):
                try:
                    key, value = pair
                except (TypeError, ValueError) as exc:
                    raise TypeError(
                        f"update() needs a mapping or an iterable of (key, value) "
                        f"pairs; element #{index} is {pair!r}"
                    ) from exc
                rows.append(self._row(key, value))
        rows.extend(self._row(key, value) for key, value in kwargs.items())
        if rows:
            self._write(rows)

    def _delete(self, key: Any, want_value: bool) -> Any:
        env = self._writable()
        encoded = self._encode(key)
        now = time.time()

        def fn(txn: Txn) -> tuple[bytes, bytes | None]:
            found = self._find(env, txn, encoded)
            if found is None or (
                self._expire_seconds and self._expired(env, txn, *found, now)
            ):
                raise _NotFound
            entry_id, row = found  # a buffer: copied only if the value is wanted
            kept = bytes(row) if want_value else None
            try:
                seq = row_seq(row)
            except SignatureError:  # a row cut short (a damaged store)
                self._remove_damaged(env, txn, entry_id)
            else:
                self._remove(env, txn, entry_id, seq)
            return entry_id, kept

        (entry_id, kept), txn_id = env.write(fn, buffers=True)
        env.layer.wrote(txn_id, {entry_id: None})
        if kept is None:
            return None
        return self._codec.loads(self._open_row(key, entry_id, kept))

    def __delitem__(self, key: Any) -> None:
        try:
            self._delete(key, want_value=False)
        except _NotFound:
            raise KeyError(key) from None

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        try:
            return self._delete(key, want_value=True)
        except _NotFound:
            if default is _MISSING:
                raise KeyError(key) from None
            return default

    def popitem(self) -> tuple[Any, Any]:
        """Remove and return the last inserted (key, value) pair (LIFO)."""
        env = self._writable()
        now = time.time()

        def fn(txn: Txn) -> tuple[bytes, bytes]:
            cursor = txn.cursor(env.values)
            ok = cursor.last()
            while ok and cursor.key()[0] == ORDER_TAG:  # the last place first
                entry_id = bytes(cursor.value())
                row = txn.get(entry_id, db=env.values)
                if row is not None and not (
                    self._expire_seconds and self._expired(env, txn, entry_id, row, now)
                ):
                    self._remove(env, txn, entry_id, row_seq(row))
                    return entry_id, row
                ok = cursor.prev()
            raise _NotFound

        try:
            (entry_id, row), txn_id = env.write(fn)
        except _NotFound:
            raise KeyError("popitem(): dictionary is empty") from None
        env.layer.wrote(txn_id, {entry_id: None})
        meta = unpack_row(row)
        key = self._decode(meta.full or entry_id, meta.original)
        return key, self._codec.loads(self._open_row(key, entry_id, row))

    def setdefault(self, key: Any, default: Any = None) -> Any:
        value = self._lookup(key, _MISSING)
        if value is not _MISSING:
            return value
        env = self._writable()
        encoded = self._encode(key)
        payload = self._dumps(key, default)
        now = time.time()

        def fn(txn: Txn) -> tuple[bytes, Buffer | None]:
            found = self._find(env, txn, encoded)
            if found is not None and not (
                self._expire_seconds and self._expired(env, txn, *found, now)
            ):
                # Another thread or process stored it meanwhile: keep theirs.
                return found
            entry_id = self._put(env, txn, encoded, key, payload, now)
            return entry_id, None

        (entry_id, row), txn_id = env.write(fn)
        if row is not None:
            return self._codec.loads(self._open_row(key, entry_id, row))
        env.layer.wrote(
            txn_id,
            {entry_id: (self._codec_key, default, payload)},
            lambda value, payload: self._layer_entry(value, payload, now),
        )
        return default

    def clear(self) -> None:
        env = self._writable()

        def fn(txn: Txn) -> None:
            txn.drop(env.atimes, delete=False)
            # The rows and places share the main database with the named
            # databases' records (see _env): deleted one by one.
            cursor = txn.cursor(env.values)
            ok = cursor.first()
            while ok and cursor.key():  # (b"" after the last one is deleted)
                key = cursor.key()
                # (delete() moves on to the next key)
                gone = is_entry_id(key) or key[0] == ORDER_TAG
                ok = cursor.delete() if gone else cursor.next()

        _, txn_id = env.write(fn)
        env.layer.wrote(txn_id, None)

    @classmethod
    def fromkeys(cls, iterable: Iterable[Any], value: Any = None) -> NoReturn:
        raise TypeError(
            "PersistDict.fromkeys() cannot know where to store: use "
            "PersistDict(path).update(dict.fromkeys(keys, value))"
        )

    def __call__(self, *args: Any, **kwargs: Any) -> PersistDict:
        """Fill the store like ``dict(...)``; allowed once per store."""
        env = self._writable()
        if env.settings_snapshot().get("filled"):
            raise PersistDictError(
                f"the store at {self._path} was already filled by a call "
                "d(...), which is allowed once per store (like dict(...)); "
                "use d.update(...) to add more"
            )
        self.update(*args, **kwargs)
        env.update_settings({"filled": True})
        return self

    # -- expiration --------------------------------------------------------------

    def _expire_where(self, match: Callable[[bytes, MetaRecord], bool] | None) -> int:
        """Remove expired entries (all, or those ``match`` accepts); return how many.

        Works through the store 10,000 entries per write transaction, so other
        writers are never held up for long.
        """
        if not self._expire_seconds:
            return 0
        env = self._writable()
        env.flush_atimes()
        now = time.time()
        removed = 0
        position = b""
        while True:

            def fn(txn: Txn, position: bytes = position) -> tuple[int, bytes | None]:
                return self._remove_expired(env, txn, position, 10_000, now, match)

            (count, next_position), txn_id = env.write(fn, buffers=True)
            if count:
                env.layer.wrote(txn_id, None)
            removed += count
            if next_position is None:
                break
            position = next_position
        if removed and self._verbose:
            logger.debug("expired %d entries from %s", removed, self._path)
        return removed

    def _remove_expired(
        self,
        env: Env,
        txn: Txn,
        position: bytes,
        limit: int,
        now: float,
        match: Callable[[bytes, MetaRecord], bool] | None = None,
    ) -> tuple[int, bytes | None]:
        """In a write transaction with buffers: remove the expired entries (that
        ``match`` accepts) among at most ``limit`` rows from ``position`` on;
        return how many, and where to go on (None: the end)."""
        cursor = txn.cursor(env.values)
        count = seen = 0
        ok = cursor.set_range(position) if position else cursor.first()
        while ok and seen < limit:
            entry_id = bytes(cursor.key())
            if not is_entry_id(entry_id):  # the rows end here (see _env)
                ok = False
                break
            row = cursor.value()  # a buffer: read before anything changes
            seen += 1
            if self._expired(env, txn, entry_id, row, now) and (
                match is None or match(entry_id, unpack_row(row))
            ):
                self._remove(env, txn, entry_id, row_seq(row))
                count += 1
                ok = cursor.set_range(entry_id)
                continue
            ok = cursor.next()
        return count, bytes(cursor.key()) if ok else None

    def expire(self) -> int:
        """Remove every entry not accessed for ``expiration_days``; return how many."""
        return self._expire_where(None)

    def _sweep(self, limit: int) -> None:
        """Bounded sweep at open: examine at most ``limit`` entries, resuming
        where the last sweep stopped, so opening a large store stays fast."""
        env = self._live()
        now = time.time()

        def fn(txn: Txn) -> tuple[int, bytes]:
            raw_pos = bytes(txn.get(b"sweep-position", db=env.internal) or b"")
            count, next_pos = self._remove_expired(env, txn, raw_pos, limit, now)
            if (next_pos or b"") != raw_pos:
                txn.put(b"sweep-position", next_pos or b"\x00", db=env.internal)
            return count, next_pos or b""

        def nothing_to_do(txn: Txn) -> bool:
            if _count(txn, env) > limit:
                return False
            return not any(
                self._expired(env, txn, bytes(entry_id), row, now)
                for entry_id, row in _entry_rows(txn.cursor(env.values))
            )

        if env.read(nothing_to_do, buffers=True):
            return
        (count, _pos), txn_id = env.write(fn, buffers=True)
        if count:
            env.layer.wrote(txn_id, None)
            logger.debug("swept %d expired entries from %s at open", count, self._path)

    # -- helpers for persist_cache and the integrations --------------------------

    def _prefix_rows(
        self, txn: Txn, env: Env, prefix: str
    ) -> Iterator[tuple[bytes, Buffer, str]]:
        """(id, row, key) of entries whose str key starts with ``prefix`` (rows
        are buffers in a transaction with buffers: valid until the next change)."""
        start = b"\x01" + prefix.encode("utf-8", "surrogatepass")
        cursor = txn.cursor(db=env.values)
        ok = cursor.set_range(start)
        while ok:
            entry_id = bytes(cursor.key())
            if not entry_id.startswith(start):
                break
            key = entry_id[1:].decode("utf-8", "surrogatepass")
            yield entry_id, cursor.value(), key
            ok = cursor.next()
        if cursor.set_range(HASHED):
            for entry_id, row in cursor:
                if entry_id[0] != HASHED[0]:
                    break  # past the long keys' ids
                full = unpack_row(row).full
                if full is not None and full.startswith(start):
                    key = full[1:].decode("utf-8", "surrogatepass")
                    yield bytes(entry_id), row, key

    def _visible_prefix_keys(
        self, prefix: str, collect: Callable[[Iterator[str]], _T]
    ) -> _T:
        """``collect`` over the visible str keys starting with ``prefix``."""
        if self._key_dumps is not None:
            raise TypeError("prefix queries need the default key encoding")
        env = self._live()
        now = time.time()
        expire = self._expire_seconds

        def fn(txn: Txn) -> _T:
            return collect(
                key
                for entry_id, row, key in self._prefix_rows(txn, env, prefix)
                if not (expire and self._expired(env, txn, entry_id, row, now))
            )

        return env.read(fn, buffers=True)

    def _keys_with_prefix(self, prefix: str) -> list[str]:
        """Visible str keys starting with ``prefix`` (in key order)."""
        return self._visible_prefix_keys(prefix, list)

    def _count_prefix(self, prefix: str) -> int:
        """How many visible str keys start with ``prefix``."""
        return self._visible_prefix_keys(prefix, lambda keys: sum(1 for _ in keys))

    def _delete_prefix(self, prefix: str) -> int:
        """Delete the entries whose str key starts with ``prefix`` (one transaction)."""
        if self._key_dumps is not None:
            raise TypeError("prefix queries need the default key encoding")
        env = self._writable()

        def fn(txn: Txn) -> int:
            rows = [
                (entry_id, row_seq(row))
                for entry_id, row, _key in self._prefix_rows(txn, env, prefix)
            ]
            for entry_id, seq in rows:
                self._remove(env, txn, entry_id, seq)
            return len(rows)

        count, txn_id = env.write(fn)
        if count:
            env.layer.wrote(txn_id, None)
        return count

    def _expire_prefix(self, prefix: str) -> int:
        """Remove expired entries whose str key starts with ``prefix``."""
        start = b"\x01" + prefix.encode("utf-8", "surrogatepass")

        def match(entry_id: bytes, meta: MetaRecord) -> bool:
            return (meta.full or entry_id).startswith(start)

        return self._expire_where(match)

    def _get_many(self, keys: Iterable[Any], default: Any = None) -> list[Any]:
        """The values of ``keys`` read in one transaction (``default`` if missing)."""
        env = self._live()
        keys = list(keys)
        encoded_keys = [self._encode(key) for key in keys]
        now = time.time()

        def fn(txn: Txn) -> list[tuple[bytes, Buffer] | None]:
            out: list[tuple[bytes, Buffer] | None] = []
            for encoded in encoded_keys:
                found = self._find(env, txn, encoded)
                if found is None or (
                    self._expire_seconds and self._expired(env, txn, *found, now)
                ):
                    out.append(None)
                    continue
                out.append(found)
            return out

        results = []
        for key, found in zip(keys, env.read(fn), strict=True):
            if found is None:
                results.append(default)
            else:
                if not self._readonly:
                    env.touch(found[0], now)
                results.append(self._codec.loads(self._open_row(key, *found)))
        return results

    def _delete_many(self, keys: Iterable[Any]) -> int:
        """Delete ``keys`` (missing ones are skipped) in one transaction."""
        env = self._writable()
        encoded_keys = [self._encode(key) for key in keys]

        def fn(txn: Txn) -> list[bytes]:
            removed = []
            for encoded in encoded_keys:
                found = self._find(env, txn, encoded)
                if found is not None:
                    self._remove(env, txn, found[0], row_seq(found[1]))
                    removed.append(found[0])
            return removed

        removed, txn_id = env.write(fn)
        if removed:
            env.layer.wrote(txn_id, dict.fromkeys(removed))
        return len(removed)

    # -- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        """Flush pending access times and release the store. Idempotent."""
        env = self._env
        if env is None:
            return
        self._env = None
        release_env(env)

    def __enter__(self) -> PersistDict:
        self._live()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        env = getattr(self, "_env", None)  # unset if __init__ failed early
        if env is not None:
            self._env = None
            release_env(env)

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return (_reopen, (self._path, self._options))

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__reduce_ex__(2)

    def __sizeof__(self) -> int:
        return object.__sizeof__(self)


def _reopen(path: str, options: dict[str, Any]) -> PersistDict:
    return PersistDict(path, **options)


class _KeysView(_KeysBase):
    __slots__ = ()
    _mapping: PersistDict

    def __reversed__(self) -> Iterator[Any]:
        return reversed(self._mapping)

    def __repr__(self) -> str:
        return f"dict_keys({list(self)!r})"


class _ValuesView(_ValuesBase):
    __slots__ = ()
    _mapping: PersistDict

    def __iter__(self) -> Iterator[Any]:
        return self._mapping._iter_values()

    def __reversed__(self) -> Iterator[Any]:
        mapping = self._mapping
        return iter([value for _key, value in reversed(list(mapping._iter_items()))])

    def __repr__(self) -> str:
        return f"dict_values({list(self)!r})"


class _ItemsView(_ItemsBase):
    __slots__ = ()
    _mapping: PersistDict

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        return self._mapping._iter_items()

    def __reversed__(self) -> Iterator[tuple[Any, Any]]:
        return iter(list(self._mapping._iter_items())[::-1])

    def __repr__(self) -> str:
        return f"dict_items({list(self)!r})"
