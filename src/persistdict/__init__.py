"""persistdict: a dict that lives in LMDB on disk, and a memoizing decorator on it."""

from ._dict import PersistDict
from ._exceptions import (
    PersistDictError,
    ReadOnlyError,
    SignatureError,
    StoreClosedError,
    StoreCorruptedError,
    UnsafeStoreError,
)
from ._meta import EntryMetadata

__version__ = "0.1.0"

__all__ = [
    "EntryMetadata",
    "PersistDict",
    "PersistDictError",
    "ReadOnlyError",
    "SignatureError",
    "StoreClosedError",
    "StoreCorruptedError",
    "UnsafeStoreError",
    "__version__",
]

for _name in __all__:
    _obj = globals()[_name]
    if hasattr(_obj, "__module__"):
        try:
            _obj.__module__ = "persistdict"
        except (AttributeError, TypeError):  # builtins such as str reject it
            pass
del _name, _obj
