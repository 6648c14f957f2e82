"""The memory layer's LRU (see _memory): imported with the first cache."""

from __future__ import annotations

from cachetools import LRUCache

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from ._memory import LayerEntry

__all__ = ["SecondChanceLRU"]


class SecondChanceLRU(LRUCache[bytes, "LayerEntry"]):
    """cachetools' LRUCache in which a hit only marks its entry.

    Moving an entry to the end of the LRU order is the costly part of a hit; here
    a hit adds the key to ``referenced``, and the order is settled when an entry
    must be evicted: a marked entry is unmarked and goes to the end instead (the
    CLOCK, or second-chance, approximation of LRU).
    """

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self.referenced: set[bytes] = set()
        # The held entries again, in a plain dict: a hit is one dict lookup.
        # Kept in step by __setitem__ and __delitem__ (all removals go through
        # it: pop, popitem, clear), which run under the layer's lock.
        self.entries: dict[bytes, LayerEntry] = {}

    def __setitem__(self, key: bytes, value: LayerEntry) -> None:
        super().__setitem__(key, value)
        self.entries[key] = value

    def __delitem__(self, key: bytes) -> None:
        super().__delitem__(key)
        self.entries.pop(key, None)

    def popitem(self) -> tuple[bytes, LayerEntry]:
        referenced = self.referenced
        for _ in range(len(self)):
            key, value = super().popitem()
            if key not in referenced:
                return key, value
            referenced.discard(key)
            self[key] = value  # to the end; one slot was just freed: no eviction
        return super().popitem()

    def forget(self, key: bytes) -> None:
        """Remove ``key`` (not through ``del``, which popitem uses too)."""
        del self[key]
        self.referenced.discard(key)

    def clear(self) -> None:
        self.referenced.clear()  # first: no second chances while emptying
        super().clear()
