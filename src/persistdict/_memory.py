"""The in-memory layer: recently used values of one store, shared in a process.

Every handle of a store in a process shares one layer (``cache_size`` entries, the
largest any handle asked for). It is never stale. The layer remembers the id of
the last transaction at which it was known to match the store (``known_txn``):

* a read whose transaction sees that same id may use the layer (so may a read
  that finds that id in LMDB's lock file, without a transaction at all);
* a read that sees a later id drops the layer, unless the only commit since was
  an access-time flush, and the layer is then known current at the later id;
* a value read at any other id is never put in the layer;
* a write by this process that directly follows ``known_txn`` updates the entries
  it changed (if the layer holds them); any other write drops the layer.

Values of immutable types are shared as they are; other values are kept as
their serialized bytes and deserialized on each hit, so a caller that mutates
what it got never changes what the next read returns.
"""

from __future__ import annotations

import _thread  # not threading: see _env

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeAlias

    from ._lru import SecondChanceLRU
    from ._meta import Buffer

    # (value if immutable else None, payload if mutable else b"", is_immutable,
    # when it was read or written: its access time is at least that)
    LayerEntry: TypeAlias = tuple[Any, Buffer, bool, float]

_MAX_SEEN = 1 << 16

__all__ = ["MemoryLayer"]  # and, for type checkers, LayerEntry


def _new_lru(maxsize: int) -> SecondChanceLRU:
    # cachetools (with random, heapq...) is imported with the first cache, when a
    # value is first admitted: a program that opens a store and reads each key
    # once never imports it.
    from ._lru import SecondChanceLRU

    return SecondChanceLRU(maxsize)


class MemoryLayer:
    __slots__ = (
        "_boxes",
        "_caches",
        "_lock",
        "_seen",
        "known_txn",
        "maxsize",
        "seen_limit",
    )

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self.maxsize = 0
        # Admission: an id enters the layer on its second read within a while,
        # so a scan over many keys read once costs no insertion and eviction.
        # "A while": since the last flush of access times (about a second), as
        # long as at most seen_limit distinct ids were read in it (a larger
        # batch is a scan, or a working set larger than the layer: admitting
        # would only evict). The batch of access times is that record, for
        # free (see PersistDict.__getitem__); a handle that records no access
        # time uses admit(), whose _seen set holds up to seen_limit recent ids.
        self.seen_limit = 0  # min(2 * maxsize, _MAX_SEEN)
        self._caches: dict[object, SecondChanceLRU] = {}
        # The same caches, each in a one-item list that handles keep (see box).
        self._boxes: dict[object, list[SecondChanceLRU | None]] = {}
        self.known_txn = -1
        self._seen: set[bytes] = set()

    def reset(self) -> None:
        """Forget everything (after a fork: the child starts empty)."""
        self._lock = _thread.allocate_lock()
        for cache in self._caches.values():
            cache.clear()
        self.known_txn = -1
        self._seen = set()

    def request(self, size: int) -> None:
        """Make room for ``size`` entries per codec (the largest request wins)."""
        with self._lock:
            if size <= self.maxsize:
                return
            self.maxsize = size
            self.seen_limit = min(2 * size, _MAX_SEEN)
            for codec_key, cache in list(self._caches.items()):
                grown = _new_lru(size)
                for key, value in cache.items():
                    grown[key] = value
                self._caches[codec_key] = grown
                self._boxes[codec_key][0] = grown
                # Emptied: a reader that took the old cache before this sees
                # misses in it, never an entry that later writes do not update.
                cache.clear()

    def _cache(self, codec_key: object) -> SecondChanceLRU:
        cache = self._caches.get(codec_key)
        if cache is None:
            cache = self._caches[codec_key] = _new_lru(max(self.maxsize, 1))
            self._boxes.setdefault(codec_key, [None])[0] = cache
        return cache

    def box(self, codec_key: object) -> list[SecondChanceLRU | None]:
        """A one-item list that always holds the cache of ``codec_key`` (None
        before its first entry): a handle reads its cache from it in one step,
        not through ``_caches``."""
        with self._lock:
            box = self._boxes.get(codec_key)
            if box is None:
                box = self._boxes[codec_key] = [self._caches.get(codec_key)]
            return box

    def get(self, codec_key: object, txn_id: int, entry_id: bytes) -> LayerEntry | None:
        """The entry if the layer is known current at ``txn_id``."""
        if txn_id != self.known_txn:
            return None
        return self.hit(codec_key, entry_id)

    def hit(self, codec_key: object, entry_id: bytes) -> LayerEntry | None:
        """The entry, for a caller that knows the layer is current."""
        cache = self._caches.get(codec_key)
        if cache is None:
            return None
        # No lock: a hit changes nothing but the ``referenced`` set; the lookup
        # is one dict lookup and the add one set operation, each atomic. A hit that
        # races with the eviction of its entry gets the value or a miss, either
        # right; it may leave the id marked, which costs that id one extra pass
        # through the eviction clock later.
        entry = cache.entries.get(entry_id)
        if entry is not None:
            cache.referenced.add(entry_id)
        return entry

    def validate(self, txn_id: int, only_atimes: bool) -> None:
        """A read transaction ``txn_id`` saw a commit the layer does not know.

        ``only_atimes``: that commit directly follows ``known_txn`` and wrote
        access times only.
        """
        with self._lock:
            if txn_id <= self.known_txn:
                return  # an older snapshot than one already checked
            if not (only_atimes and txn_id == self.known_txn + 1):
                for cache in self._caches.values():
                    cache.clear()
            self.known_txn = txn_id

    def admit(self, entry_id: bytes) -> bool:
        """Whether a value just read from the store by a handle that records no
        access times should be ``put``: from its second read within the last
        ``seen_limit`` ids read on (see ``__init__``)."""
        if self.maxsize == 0:
            return False
        seen = self._seen
        if entry_id in seen:
            return True
        if len(seen) >= self.seen_limit:
            seen.clear()
        seen.add(entry_id)
        return False

    def put(
        self, codec_key: object, txn_id: int, entry_id: bytes, entry: LayerEntry
    ) -> None:
        """Keep a value read in transaction ``txn_id`` if the layer is current
        there (callers ask ``admit`` first)."""
        with self._lock:
            if txn_id == self.known_txn:
                self._cache(codec_key)[entry_id] = entry

    def wrote(
        self,
        txn_id: int,
        changes: dict[bytes, tuple[object, Any, bytes] | None] | None,
        make_entry: Callable[[Any, bytes], LayerEntry] | None = None,
    ) -> None:
        """This process committed ``txn_id``.

        ``changes`` maps ids to (codec key, new value, its payload), or None for
        a removal; None means the transaction changed too much to list: drop
        everything. New entries are not added (a read adds them), only held
        ones are replaced, by ``make_entry(value, payload)``.
        """
        with self._lock:
            if self.known_txn >= txn_id:
                return  # a reader already saw this commit, or a later one
            if self.known_txn == txn_id - 1 and changes is not None:
                for key, cache in self._caches.items():
                    held = cache.entries
                    for entry_id, change in changes.items():
                        if entry_id not in held:
                            continue
                        if change is not None and change[0] == key and make_entry:
                            cache[entry_id] = make_entry(change[1], change[2])
                        else:
                            cache.forget(entry_id)
            else:
                for cache in self._caches.values():
                    cache.clear()
            self.known_txn = txn_id

    def clear(self) -> None:
        with self._lock:
            for cache in self._caches.values():
                cache.clear()
