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
from ._meta import EntryMetadata

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)

if TYPE_CHECKING:
    from ._memo import CachedFunction, CacheInfo, CacheParameters, persist_cache

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

# The decorator's module needs inspect (and more) that a program using only
# PersistDict should not pay for at start-up: its names load on first access.
_FROM_MEMO = ("CacheInfo", "CacheParameters", "CachedFunction", "persist_cache")


def _export(name: str, obj: object) -> None:
    """Make ``obj`` the package's ``name``, shown as persistdict.X in reprs."""
    if isinstance(obj, type) or callable(obj):
        obj.__module__ = "persistdict"
    globals()[name] = obj


if not TYPE_CHECKING:  # type checkers see the imports above instead

    def __getattr__(name: str) -> object:
        if name in _FROM_MEMO:
            from . import _memo

            for lazy in _FROM_MEMO:
                _export(lazy, getattr(_memo, lazy))
            return globals()[name]
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FROM_MEMO))


for _name in __all__:
    if _name in globals():
        _export(_name, globals()[_name])
del _name, TYPE_CHECKING
