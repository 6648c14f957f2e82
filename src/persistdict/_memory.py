"""The in-memory layer: recently used values of one store, shared in a process.

Every handle of a store in a process shares one layer (``cache_size`` entries, the
largest any handle asked for). It is never stale: each read already runs in an
LMDB read transaction, whose id moves with every commit by any process; when it
moved, the layer compares the store's *data generation* (the id of the last
transaction that changed data rather than access times) and drops everything
when another process changed data. A value read at an older generation is never
put in the layer, and a write by this process updates the layer after it
commits.

Values of immutable types are shared as they are; other values are kept as
their serialized bytes and deserialized on each hit, so a caller that mutates
what it got never changes what the next read returns.
"""

from __future__ import annotations

import threading
from typing import Any

from cachetools import LRUCache

__all__ = ["LayerEntry", "MemoryLayer"]

# (value if immutable else None, payload if mutable else b"", is_immutable)
LayerEntry = tuple[Any, bytes, bool]


class MemoryLayer:
    __slots__ = ("_caches", "_lock", "known_gen", "known_txn", "maxsize")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.maxsize = 0
        self._caches: dict[object, LRUCache[bytes, LayerEntry]] = {}
        self.known_txn = -1
        self.known_gen = -1

    def reset(self) -> None:
        """Forget everything (after a fork: the child starts empty)."""
        self._lock = threading.Lock()
        for cache in self._caches.values():
            cache.clear()
        self.known_txn = -1
        self.known_gen = -1

    def request(self, size: int) -> None:
        """Make room for ``size`` entries per codec (the largest request wins)."""
        with self._lock:
            if size <= self.maxsize:
                return
            self.maxsize = size
            for codec_key, cache in list(self._caches.items()):
                grown: LRUCache[bytes, LayerEntry] = LRUCache(maxsize=size)
                for key, value in cache.items():
                    grown[key] = value
                self._caches[codec_key] = grown

    def _cache(self, codec_key: object) -> LRUCache[bytes, LayerEntry]:
        cache = self._caches.get(codec_key)
        if cache is None:
            cache = self._caches[codec_key] = LRUCache(maxsize=max(self.maxsize, 1))
        return cache

    def get(self, codec_key: object, txn_id: int, entry_id: bytes) -> LayerEntry | None:
        """The entry if the layer is known current at ``txn_id``."""
        if txn_id != self.known_txn:
            return None
        cache = self._caches.get(codec_key)
        if cache is None:
            return None
        with self._lock:
            try:
                return cache[entry_id]
            except KeyError:
                return None

    def validate(self, txn_id: int, generation: int) -> None:
        """Called from a read transaction ``txn_id`` that saw ``generation``."""
        with self._lock:
            if txn_id < self.known_txn:
                return  # an older snapshot than one already checked
            if generation != self.known_gen:
                for cache in self._caches.values():
                    cache.clear()
                self.known_gen = generation
            self.known_txn = txn_id

    def put(
        self, codec_key: object, txn_id: int, entry_id: bytes, entry: LayerEntry
    ) -> None:
        """Keep a value read in transaction ``txn_id`` if the layer is current there."""
        if self.maxsize == 0:
            return
        with self._lock:
            if txn_id == self.known_txn:
                self._cache(codec_key)[entry_id] = entry

    def wrote(
        self,
        previous_gen: int,
        txn_id: int,
        changes: dict[bytes, tuple[object, LayerEntry] | None] | None,
    ) -> None:
        """This process committed ``txn_id``, which replaced ``previous_gen``.

        ``changes`` maps ids to their new entry (or None for a removal); None
        means the transaction changed too much to list: drop everything.
        """
        with self._lock:
            if self.known_gen > txn_id:
                return  # a reader already saw a later generation
            if previous_gen == self.known_gen and changes is not None:
                for entry_id, change in changes.items():
                    for cache in self._caches.values():
                        cache.pop(entry_id, None)
                    if change is not None and self.maxsize:
                        codec_key, entry = change
                        self._cache(codec_key)[entry_id] = entry
            elif self.known_gen != txn_id:
                for cache in self._caches.values():
                    cache.clear()
            self.known_gen = txn_id
            if self.known_txn == txn_id - 1:
                self.known_txn = txn_id

    def clear(self) -> None:
        with self._lock:
            for cache in self._caches.values():
                cache.clear()
