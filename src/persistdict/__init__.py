"""persistdict: a dict that lives in LMDB on disk, and a memoizing decorator on it."""

from ._dict import PersistDict
from ._exceptions import (
    PersistDictError,
    ReadOnlyError,
    SignatureError,
    StoreClosedError,
    StoreCorruptedError,
    StoreWriteError,
    UnsafeStoreError,
)
from ._memo import CachedFunction, CacheInfo, CacheParameters, persist_cache
from ._meta import EntryMetadata

__version__ = "0.1.0"

__all__ = [
    "CacheInfo",
    "CacheParameters",
    "CachedFunction",
    "EntryMetadata",
    "PersistDict",
    "PersistDictError",
    "ReadOnlyError",
    "SignatureError",
    "StoreClosedError",
    "StoreCorruptedError",
    "StoreWriteError",
    "UnsafeStoreError",
    "__version__",
    "persist_cache",
]

# Show the public names as persistdict.X in reprs and tracebacks.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) or callable(_obj):
        _obj.__module__ = "persistdict"
del _name, _obj
