"""``@persist_cache``: memoize a function into a PersistDict.

The wrapper protocol is functools' (``cache_info``, ``cache_clear``,
``cache_parameters``, ``__wrapped__``) plus ``cache_invalidate``,
``cache_contains``, ``cache_expire`` and ``cache_key``. Keys are made by
:mod:`persistdict._keys`; entries live in a :class:`~persistdict.PersistDict`
under ``"{module}:{qualname}:{version}:" + 32 hex digits``.

Concurrent identical calls run the function once:

- threads of one process wait on a per-key condition (a pending set and a
  ``threading.Condition``, as cachetools does);
- tasks of one event loop await the leader's future;
- processes on one store take a byte-range ``fcntl`` lock on one lock file in
  the store directory (the byte is chosen by the key's hash). The OS drops it
  when its owner dies, so a killed leader never blocks the others. The lock
  file stays open for the life of the process, because closing any descriptor
  of a file drops all of this process's ``fcntl`` locks on it.

Whoever gets the lock looks in the store again before calling the function. A
wait is bounded by ``lock_timeout`` seconds; after it the waiter computes too.
The user function never runs under a Python lock.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import inspect
import os
import pickle
import reprlib
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Concatenate,
    Final,
    Generic,
    NamedTuple,
    ParamSpec,
    Protocol,
    TypedDict,
    TypeVar,
    overload,
)

from ._dict import _MISSING as _STORE_MISSING
from ._exceptions import SignatureError
from ._keys import CallKey, function_namespace
from ._log import logger
from ._paths import default_cache_dir

if TYPE_CHECKING:
    import asyncio  # imported where used: only async functions need it

    from ._dict import PersistDict


__all__ = ("CacheInfo", "CacheParameters", "CachedFunction", "persist_cache")

P = ParamSpec("P")
R = TypeVar("R")
_P2 = ParamSpec("_P2")
_S = TypeVar("_S")

#: What PersistDict's reads return for a missing key (None is a valid result).
_MISSING: Final = _STORE_MISSING
#: Shortens argument values in the call preview kept beside each entry.
_PREVIEW: Final = reprlib.Repr()
_PREVIEW.maxstring = 40
_PREVIEW.maxother = 40
_PREVIEW.maxlist = _PREVIEW.maxtuple = _PREVIEW.maxdict = _PREVIEW.maxset = 4
#: Name of the lock file, in the store directory, that orders processes.
LOCK_FILE_NAME: Final = "memo.lock"
_POLL_FIRST: Final = 0.001
_POLL_MAX: Final = 0.05


class CacheInfo(NamedTuple):
    """Statistics of a memoized function, as ``functools.lru_cache`` gives them.

    ``hits`` and ``misses`` count this process's calls since the last
    ``cache_clear()``; ``currsize`` is this function's entries in the store
    (from every process); ``maxsize`` is the in-memory LRU size.
    """

    hits: int
    misses: int
    maxsize: int | None
    currsize: int


class CacheParameters(TypedDict):
    """What ``cache_parameters()`` returns: the decoration options."""

    path: str | None
    expiration_days: float | None
    maxsize: int | None
    typed: bool
    ignore: tuple[str, ...]
    key: Callable[..., object] | None
    version: str | None
    lock_timeout: float | None
    durable: bool
    signed: bool
    namespace: str


class CachedFunction(Protocol[P, R]):
    """The type of a function decorated with :func:`persist_cache`.

    Calling it has the wrapped function's signature. The ``cache_*`` helpers
    that take arguments take the same ones (they never call the function).
    """

    __wrapped__: Callable[P, R]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

    # Read through an instance, a memoized method binds like a function.
    @overload
    def __get__(
        self, instance: None, owner: type[Any] | None = None
    ) -> CachedFunction[P, R]: ...

    @overload
    def __get__(
        self: CachedFunction[Concatenate[_S, _P2], R],
        instance: _S,
        owner: type[Any] | None = None,
    ) -> Callable[_P2, R]: ...

    def cache_info(self) -> CacheInfo:
        """``(hits, misses, maxsize, currsize)``."""
        ...

    def cache_clear(self) -> None:
        """Remove every entry of this function (all versions stay apart) and
        reset the statistics."""
        ...

    def cache_parameters(self) -> CacheParameters:
        """A new dict of the decoration options."""
        ...

    def cache_invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Remove the entry of this call; True if there was one."""
        ...

    def cache_contains(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """True if this call's result is stored (and not expired)."""
        ...

    def cache_expire(self) -> int:
        """Remove this function's expired entries for good; return how many."""
        ...

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The store key of this call."""
        ...


# ---------------------------------------------------------------- process locks


class _LockFile:
    """The per-store lock file, opened once per process and never closed.

    ``fcntl`` locks belong to the process, not to a descriptor or a thread, and
    closing *any* descriptor of the file drops them all: hence one descriptor
    per file for the life of the process. Threads of one process are kept
    apart by the in-process pending set before they get here.
    """

    _open: ClassVar[dict[str, _LockFile]] = {}
    _open_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    @classmethod
    def for_directory(cls, directory: os.PathLike[str] | str) -> _LockFile:
        path = os.path.join(os.path.realpath(directory), LOCK_FILE_NAME)
        with cls._open_lock:
            lock_file = cls._open.get(path)
            if lock_file is None:
                lock_file = cls._open[path] = cls(path)
            return lock_file

    def try_lock(self, offset: int) -> bool:
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EAGAIN):  # another process has it
                return False
            raise
        return True

    def unlock(self, offset: int) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, offset)

    def lock(self, offset: int, deadline: float | None) -> bool:
        """Wait for the byte at ``offset``; False if ``deadline`` passed first."""
        delay = _POLL_FIRST
        while not self.try_lock(offset):
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                delay = min(delay, remaining)
            time.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)
        return True

    async def alock(self, offset: int, deadline: float | None) -> bool:
        """:meth:`lock` for a coroutine: polls, never blocks the event loop."""
        import asyncio

        delay = _POLL_FIRST
        while not self.try_lock(offset):
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                delay = min(delay, remaining)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)
        return True


def _lock_offset(key: str) -> int:
    """The byte of the lock file that stands for ``key`` (24 bits of its hash)."""
    return int(key[-6:], 16)


# ---------------------------------------------------------------- shared state

_live: weakref.WeakSet[_Memo[Any]] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A thread that was computing in the parent does not exist in the child:
    # forget pending keys and in-flight futures, and renew the locks that
    # another thread may have held at the fork.
    _LockFile._open_lock = threading.Lock()
    for memo in list(_live):
        memo.reset_in_process_state()


os.register_at_fork(after_in_child=_after_fork_in_child)


class _Memo(Generic[R]):
    """Everything a memoized function needs besides its wrapper."""

    def __init__(
        self,
        func: Callable[..., R],
        *,
        path: str | os.PathLike[str] | None,
        expiration_days: float | None,
        maxsize: int | None,
        typed: bool,
        ignore: tuple[str, ...],
        key: Callable[..., object] | None,
        version: str | None,
        lock_timeout: float | None,
        durable: bool,
        secret: bytes | str | None,
    ) -> None:
        self.func = func
        self.durable = durable
        self.secret = secret
        self.qualname = getattr(func, "__qualname__", repr(func))
        self.path = path
        self.expiration_days = expiration_days
        self.maxsize = maxsize
        self.typed = typed
        self.ignore = ignore
        self.key = key
        self.version = version
        self.lock_timeout = lock_timeout
        self.namespace = function_namespace(func, version)
        self.make_key = CallKey(
            func, namespace=self.namespace, typed=typed, ignore=ignore, key=key
        ).make_key_function()
        self.hits = 0
        self.misses = 0
        self.store: PersistDict | None = None
        self.lock_file: _LockFile | None = None
        self._open_lock = threading.Lock()
        self.reset_in_process_state()
        _live.add(self)

    def reset_in_process_state(self) -> None:
        self._open_lock = threading.Lock()
        self._cond = threading.Condition()
        self._pending: set[str] = set()
        self._inflight: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, asyncio.Future[Any]]
        ] = weakref.WeakKeyDictionary()

    # -- the store

    def open(self) -> PersistDict:
        """The store, opened at the first call (so the default directory and
        ``$PERSISTDICT_CACHE_DIR`` are read then, not at import)."""
        with self._open_lock:
            if self.store is None:
                from ._dict import PersistDict

                path = self.path if self.path is not None else default_cache_dir()
                store = PersistDict(
                    path,
                    self.expiration_days,
                    cache_size=sys.maxsize if self.maxsize is None else self.maxsize,
                    durable=self.durable,
                    secret=self.secret,
                )
                self.lock_file = _LockFile.for_directory(store.path)
                self.store = store
            return self.store

    def lookup(self, key: str) -> Any:
        store = self.store if self.store is not None else self.open()
        try:
            return store._lookup(key, _MISSING)
        except SignatureError:  # logged by the store; recompute and overwrite
            return _MISSING

    def preview(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """A short text of the call (ignored arguments left out), for ``ls``."""
        try:
            bound = inspect.signature(self.func).bind(*args, **kwargs)
        except (TypeError, ValueError):  # no signature, or a call that will fail
            parts = [_PREVIEW.repr(a) for a in args]
            parts += [f"{k}={_PREVIEW.repr(v)}" for k, v in kwargs.items()]
        else:
            parts = [
                f"{name}={_PREVIEW.repr(value)}"
                for name, value in bound.arguments.items()
                if name not in self.ignore
            ]
        name = getattr(self.func, "__name__", self.qualname)
        return f"{name}({', '.join(parts)})"

    def save(
        self, key: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        store = self.store if self.store is not None else self.open()
        try:
            store._set_with_note(key, value, self.preview(args, kwargs))
        except (TypeError, pickle.PicklingError) as exc:  # returned, not stored
            logger.warning(
                "%s: result not cached, it cannot be serialized: %s",
                self.qualname,
                exc,
            )

    def deadline(self) -> float | None:
        if self.lock_timeout is None:
            return None
        return time.monotonic() + self.lock_timeout

    def _timed_out(self, key: str) -> None:
        logger.warning(
            "%s: waited %ss for another process computing the same call (%s); "
            "computing it here too",
            self.qualname,
            self.lock_timeout,
            key,
        )

    # -- misses

    def call_miss(self, key: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Compute ``key`` once per process and once per store, then return it."""
        deadline = self.deadline()
        pending = self._pending
        with self._cond:
            if key in pending:
                timeout = None if deadline is None else deadline - time.monotonic()
                self._cond.wait_for(lambda: key not in pending, timeout)
            pending.add(key)
        try:
            lock_file = self.lock_file
            if lock_file is None:
                self.open()
                lock_file = self.lock_file
            if lock_file is None:  # pragma: no cover - open() sets it
                raise RuntimeError("persistdict: the lock file was not opened")
            offset = _lock_offset(key)
            locked = lock_file.lock(offset, deadline)
            if not locked:
                self._timed_out(key)
            try:
                value = self.lookup(key)
                if value is not _MISSING:
                    self.hits += 1
                    return value
                self.misses += 1
                value = self.func(*args, **kwargs)
                self.save(key, value, args, kwargs)
                return value
            finally:
                if locked:
                    lock_file.unlock(offset)
        finally:
            with self._cond:
                pending.discard(key)
                self._cond.notify_all()

    async def acall_miss(
        self, key: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """:meth:`call_miss` for a coroutine function."""
        import asyncio

        loop = asyncio.get_running_loop()
        inflight = self._inflight.get(loop)
        if inflight is None:
            inflight = self._inflight.setdefault(loop, {})
        while True:
            leader = inflight.get(key)
            if leader is None:
                break
            # asyncio.wait neither raises the leader's error here nor cancels
            # the leader if this task is cancelled.
            await asyncio.wait({leader})
            if not leader.cancelled() and leader.exception() is None:
                self.hits += 1
                return leader.result()
            # The leader failed or was cancelled: the next one computes.
        future: asyncio.Future[Any] = loop.create_future()
        inflight[key] = future
        try:
            value = await self._acompute(key, args, kwargs)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters retry, nobody else reads it
            raise
        else:
            future.set_result(value)
            return value
        finally:
            if inflight.get(key) is future:
                del inflight[key]

    async def _acompute(
        self, key: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if self.lock_file is None:
            self.open()
        lock_file = self.lock_file
        if lock_file is None:  # pragma: no cover - open() sets it
            raise RuntimeError("persistdict: the lock file was not opened")
        offset = _lock_offset(key)
        locked = await lock_file.alock(offset, self.deadline())
        if not locked:
            self._timed_out(key)
        try:
            value = self.lookup(key)
            if value is not _MISSING:
                self.hits += 1
                return value
            self.misses += 1
            value = await self.func(*args, **kwargs)  # type: ignore[misc]
            self.save(key, value, args, kwargs)
            return value
        finally:
            if locked:
                lock_file.unlock(offset)

    # -- the cache_* helpers

    def cache_info(self) -> CacheInfo:
        store = self.store if self.store is not None else self.open()
        currsize = store._count_prefix(self.namespace)
        return CacheInfo(self.hits, self.misses, self.maxsize, currsize)

    def cache_clear(self) -> None:
        store = self.store if self.store is not None else self.open()
        store._delete_prefix(self.namespace)
        self.hits = self.misses = 0

    def cache_parameters(self) -> CacheParameters:
        return CacheParameters(
            path=None if self.path is None else os.fspath(self.path),
            expiration_days=self.expiration_days,
            maxsize=self.maxsize,
            typed=self.typed,
            ignore=self.ignore,
            key=self.key,
            version=self.version,
            lock_timeout=self.lock_timeout,
            durable=self.durable,
            signed=self.secret is not None
            or bool(os.environ.get("PERSISTDICT_SECRET")),
            namespace=self.namespace,
        )

    def cache_invalidate(self, *args: Any, **kwargs: Any) -> bool:
        store = self.store if self.store is not None else self.open()
        return store._delete_many([self.make_key(args, kwargs)]) == 1

    def cache_contains(self, *args: Any, **kwargs: Any) -> bool:
        store = self.store if self.store is not None else self.open()
        return self.make_key(args, kwargs) in store

    def cache_expire(self) -> int:
        store = self.store if self.store is not None else self.open()
        return store._expire_prefix(self.namespace)

    def cache_key(self, *args: Any, **kwargs: Any) -> str:
        return self.make_key(args, kwargs)


# ---------------------------------------------------------------- the decorator


def _check_options(
    expiration_days: float | None,
    maxsize: int | None,
    lock_timeout: float | None,
    ignore: Iterable[str] | str,
) -> tuple[str, ...]:
    if expiration_days is not None and (
        isinstance(expiration_days, bool)
        or not isinstance(expiration_days, (int, float))
        or expiration_days <= 0
    ):
        raise ValueError(
            f"expiration_days must be a positive number of days or None, "
            f"not {expiration_days!r}"
        )
    if maxsize is not None and (
        isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 0
    ):
        raise ValueError(
            f"maxsize must be an int >= 0 (0 turns the memory layer off) or None "
            f"(no bound), not {maxsize!r}"
        )
    if lock_timeout is not None and (
        isinstance(lock_timeout, bool)
        or not isinstance(lock_timeout, (int, float))
        or lock_timeout < 0
    ):
        raise ValueError(
            f"lock_timeout must be a number of seconds >= 0 or None, "
            f"not {lock_timeout!r}"
        )
    names = (ignore,) if isinstance(ignore, str) else tuple(ignore)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"ignore= takes parameter names (str), not {name!r}")
    return names


def _decorate(func: Callable[P, R], options: dict[str, Any]) -> CachedFunction[P, R]:
    if isinstance(func, (classmethod, staticmethod)):
        raise TypeError(
            f"@persist_cache must be placed below @{type(func).__name__}, "
            f"so that it decorates the function itself"
        )
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        raise TypeError(
            f"persist_cache cannot memoize the generator function "
            f"{getattr(func, '__qualname__', func)!r}: a generator is used up by "
            f"its first reader. Return a list (or tuple) instead, and memoize that."
        )
    if not callable(func):
        raise TypeError(f"persist_cache decorates functions, not {type(func).__name__}")
    memo: _Memo[R] = _Memo(func, **options)
    make_key = memo.make_key
    lookup = memo.lookup
    wrapper: Callable[..., Any]

    if inspect.iscoroutinefunction(func):

        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            key = make_key(args, kwargs)
            value = lookup(key)
            if value is not _MISSING:
                memo.hits += 1
                return value
            return await memo.acall_miss(key, args, kwargs)

        wrapper = async_wrapper
    else:

        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            key = make_key(args, kwargs)
            store = memo.store
            if store is None:
                value = lookup(key)
            else:  # lookup() written out: this is the hot path of a hit
                try:
                    value = store._lookup(key, _MISSING)
                except SignatureError:  # logged by the store; recompute
                    value = _MISSING
            if value is not _MISSING:
                memo.hits += 1
                return value
            return memo.call_miss(key, args, kwargs)

        wrapper = sync_wrapper

    functools.update_wrapper(wrapper, func)
    # Set after update_wrapper, which would copy a decorated function's own
    # cache_* attributes over these (STYLE.md, example 2).
    attributes: Any = wrapper
    attributes.cache_info = memo.cache_info
    attributes.cache_clear = memo.cache_clear
    attributes.cache_parameters = memo.cache_parameters
    attributes.cache_invalidate = memo.cache_invalidate
    attributes.cache_contains = memo.cache_contains
    attributes.cache_expire = memo.cache_expire
    attributes.cache_key = memo.cache_key
    attributes.__wrapped__ = func
    result: CachedFunction[P, R] = attributes
    return result


@overload
def persist_cache(path: Callable[P, R], /) -> CachedFunction[P, R]: ...


@overload
def persist_cache(
    path: str | os.PathLike[str] | None = None,
    *,
    expiration_days: float | None = None,
    maxsize: int | None = 128,
    typed: bool = False,
    ignore: Iterable[str] = (),
    key: Callable[..., object] | None = None,
    version: str | None = None,
    lock_timeout: float | None = 60.0,
    durable: bool = True,
    secret: bytes | str | None = None,
) -> Callable[[Callable[P, R]], CachedFunction[P, R]]: ...


def persist_cache(
    path: Any = None,
    *,
    expiration_days: float | None = None,
    maxsize: int | None = 128,
    typed: bool = False,
    ignore: Iterable[str] = (),
    key: Callable[..., object] | None = None,
    version: str | None = None,
    lock_timeout: float | None = 60.0,
    durable: bool = True,
    secret: bytes | str | None = None,
) -> Any:
    """Memoize a function into a PersistDict, across calls, restarts and processes.

    Use it bare (``@persist_cache``: the default per-user store, see below) or
    with a store directory and options (``@persist_cache("cache", ...)``).

    - ``expiration_days``: an entry not read for that long is a miss (floats
      allowed: ``1/24`` is an hour).
    - ``maxsize``: entries of the store's in-memory LRU layer (shared by the
      functions on one store; the largest asked for wins; ``0`` turns it off,
      ``None`` leaves it unbounded). The store on disk is not bounded by it.
    - ``typed``: as in functools, ``True`` keeps ``f(1)``, ``f(1.0)`` and
      ``f(True)`` apart.
    - ``ignore``: parameter names left out of the key (``("self",)`` for a
      method shared by all instances; the instance is then never pickled).
    - ``key``: ``key(*args, **kwargs)`` returns what identifies the call; it is
      hashed like arguments. Not with ``ignore``.
    - ``version``: a string mixed into the namespace; change it to start afresh
      (the old entries stay until ``cache_clear()`` of that version or expiry).
    - ``lock_timeout``: seconds to wait for another thread or process that is
      computing the same call, before computing it here too (``None``: wait as
      long as it lives).
    - ``durable``: ``False`` skips the fsync of each stored result (a crash of
      the process loses nothing; a power loss may lose the last results, which
      are then computed again). Functions sharing a store in one process must
      agree on it.
    - ``secret``: sign every stored result (default ``$PERSISTDICT_SECRET``); a
      result that does not verify is never unpickled, it is a miss.

    The default store is ``$PERSISTDICT_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/persistdict`` or ``~/.cache/persistdict``, read at the
    first call. The wrapper has ``f.cache_info()``, ``f.cache_clear()``,
    ``f.cache_parameters()``, ``f.cache_invalidate(*args, **kwargs)``,
    ``f.cache_contains(*args, **kwargs)``, ``f.cache_expire()``,
    ``f.cache_key(*args, **kwargs)`` and ``f.__wrapped__``.
    """
    names = _check_options(expiration_days, maxsize, lock_timeout, ignore)
    options: dict[str, Any] = {
        "expiration_days": expiration_days,
        "maxsize": maxsize,
        "typed": typed,
        "ignore": names,
        "key": key,
        "version": version,
        "lock_timeout": lock_timeout,
        "durable": bool(durable),
        "secret": secret,
    }
    if isinstance(path, (classmethod, staticmethod)) or (
        callable(path) and not isinstance(path, (str, os.PathLike))
    ):
        func: Any = path
        return _decorate(func, {"path": None, **options})
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"Expected first argument to be a store path (str or os.PathLike), "
            f"a function, or None, not {type(path).__name__}"
        )

    def decorating(func: Callable[P, R]) -> CachedFunction[P, R]:
        return _decorate(func, {"path": path, **options})

    return decorating
