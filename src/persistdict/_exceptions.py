"""Exceptions raised by persistdict.

The tree::

    Exception
    └── PersistDictError            every error specific to persistdict
        ├── StoreClosedError        (also ValueError) the store was closed
        ├── ReadOnlyError           a write on a store opened with readonly=True
        ├── StoreCorruptedError     the files at the path are not a readable store
        ├── StoreWriteError         (also OSError) a write failed: disk full, ...
        ├── SignatureError          a record failed its checksum or signature
        └── UnsafeStoreError        (also PermissionError) others could write the store

Errors about the caller's own objects keep their usual types: a missing key is a
``KeyError``, an unhashable key a ``TypeError``, a value that cannot be pickled a
``TypeError`` or ``pickle.PicklingError`` naming the key.
"""

from __future__ import annotations

__all__ = [
    "PersistDictError",
    "ReadOnlyError",
    "SignatureError",
    "StoreClosedError",
    "StoreCorruptedError",
    "StoreWriteError",
    "UnsafeStoreError",
]


class PersistDictError(Exception):
    """Base class of every error specific to persistdict."""


class StoreClosedError(PersistDictError, ValueError):
    """The store was closed with ``close()`` (or its ``with`` block ended)."""


class ReadOnlyError(PersistDictError):
    """A write was attempted on a store opened with ``readonly=True``."""


class StoreCorruptedError(PersistDictError):
    """The files at the store's path are not a store that can be read safely."""


class StoreWriteError(PersistDictError, OSError):
    """LMDB could not commit a write (a full disk, a file size limit, an I/O
    error). Nothing of that write was stored; what was stored before is intact."""


class SignatureError(PersistDictError):
    """A stored record did not verify: it was changed outside persistdict.

    With ``secret=`` this is an HMAC check, so the record is never unpickled;
    without a secret it is a checksum that catches damaged files.
    """


class UnsafeStoreError(PersistDictError, PermissionError):
    """The store is owned by another user or writable by others.

    Whoever can write a store can make every reader run code (values are
    unpickled), so such a store is refused unless the caller opts in.
    """
