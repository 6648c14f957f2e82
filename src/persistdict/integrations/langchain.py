"""LangChain integration: an LLM cache and a byte store that live in a PersistDict.

Install with ``pip install "persistdict[langchain]"`` (it brings ``langchain-core``).
This module imports ``langchain_core``; ``import persistdict`` never imports it.

- :class:`PersistLLMCache` is a ``langchain_core.caches.BaseCache``: pass it to
  ``langchain_core.globals.set_llm_cache`` (or to a model's ``cache=``) and every
  process on the same path shares the answers, which survive restarts.
- :class:`PersistByteStore` is a ``langchain_core.stores.ByteStore``, e.g. the store
  behind ``CacheBackedEmbeddings.from_bytes_store``.

Both open a :class:`~persistdict.PersistDict` and accept its options
(``expiration_days``, ``secret``, ``cache_size``, the value serializers, ``durable``,
``map_size`` ...), except the key serializers: both rely on ``str`` keys sorting by
their text in LMDB (prefix scans), which a custom key encoding would break.

How the LLM cache stores an answer
----------------------------------
The key is ``"langchain-llm:" + xxh3_128(prompt, llm_string).hexdigest()``: the same
in every process and every run, whatever ``PYTHONHASHSEED`` (no ``repr`` with an
address in it). The value is a JSON text holding the prompt, the ``llm_string`` and
the generations; a lookup whose stored prompt or ``llm_string`` differs (a hash
collision) is a miss.

Generations are written as JSON with LangChain's stable message API
(``message_to_dict``/``messages_from_dict``), not with pickle and not with
``langchain_core.load``:

- a JSON record rebuilds every object through its constructor, so answers cached under
  one LangChain version load under the next (a pickled pydantic model restores its old
  ``__dict__`` and breaks once a field is added);
- with the default value codec nothing is unpickled on a lookup, so a cache file
  written by someone else cannot run code in the reading process;
- ``langchain_core.load.loads`` is marked beta and warns on first use, which raises
  inside applications that turn warnings into errors.

Every write is checked: the generations decoded from the JSON must equal the ones given.
An answer that JSON cannot carry faithfully (a ``datetime`` or a tuple in
``generation_info``, a ``Generation`` subclass from another package) is not cached, and
a warning names the reason, so a lookup never returns something different from what the
model answered.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import xxhash
from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.messages import message_to_dict, messages_from_dict
from langchain_core.outputs import (
    ChatGeneration,
    ChatGenerationChunk,
    Generation,
    GenerationChunk,
)
from langchain_core.runnables import run_in_executor
from langchain_core.stores import ByteStore

from .._dict import PersistDict
from .._exceptions import SignatureError

__all__ = ["PersistByteStore", "PersistLLMCache"]

logger = logging.getLogger(__name__)

# Every key of the LLM cache starts with this, so clear() removes only the cache's own
# entries (one prefix range in LMDB) even if the store holds other data.
LLM_KEY_PREFIX = "langchain-llm:"
# Version of the JSON record; a record of another version is a miss (and is rewritten).
_RECORD_FORMAT = 1

_FORBIDDEN_OPTIONS = ("key_serializer", "key_unserializer")

_pack_len = struct.Struct(">Q").pack


def _check_options(owner: str, options: dict[str, Any]) -> None:
    for name in _FORBIDDEN_OPTIONS:
        if name in options:
            msg = (
                f"{owner} does not accept {name}=: its str keys must keep their "
                "default encoding for prefix scans. Use the value serializers to "
                "compress or encrypt what is stored."
            )
            raise TypeError(msg)


def _utf8_dumps(text: str) -> bytes:
    # surrogatepass: a prompt may hold lone surrogates (str from decoded bytes).
    return text.encode("utf-8", "surrogatepass")


def _utf8_loads(data: bytes) -> str:
    return data.decode("utf-8", "surrogatepass")


def _bytes_dumps(value: bytes) -> bytes:
    return value


def _bytes_loads(data: bytes) -> bytes:
    return bytes(data)


# ---------------------------------------------------------------- LLM cache


def llm_cache_key(prompt: str, llm_string: str) -> str:
    """The store key of ``(prompt, llm_string)``: stable across processes and runs.

    Both strings are length-prefixed before hashing, so ``("ab", "c")`` and
    ``("a", "bc")`` never share a key.
    """
    p = _utf8_dumps(prompt)
    h = xxhash.xxh3_128()
    h.update(_pack_len(len(p)))
    h.update(p)
    h.update(_utf8_dumps(llm_string))
    return LLM_KEY_PREFIX + h.hexdigest()


# The Generation classes a record can hold, by exact type (a subclass from another
# package may carry fields this record does not know: it is not cached).
_TEXT_KINDS: dict[str, type[Generation]] = {
    "Generation": Generation,
    "GenerationChunk": GenerationChunk,
}
_CHAT_KINDS: dict[str, type[ChatGeneration]] = {
    "ChatGeneration": ChatGeneration,
    "ChatGenerationChunk": ChatGenerationChunk,
}


class _NotCacheableError(ValueError):
    """An answer that a JSON record cannot carry faithfully."""


def _encode_generation(gen: Generation) -> dict[str, Any]:
    kind = type(gen).__name__
    if isinstance(gen, ChatGeneration) and _CHAT_KINDS.get(kind) is type(gen):
        return {
            "kind": kind,
            "message": message_to_dict(gen.message),
            "generation_info": gen.generation_info,
        }
    if _TEXT_KINDS.get(kind) is type(gen):
        return {"kind": kind, "text": gen.text, "generation_info": gen.generation_info}
    msg = f"{type(gen).__module__}.{type(gen).__qualname__} is not a core Generation"
    raise _NotCacheableError(msg)


def _decode_generation(item: dict[str, Any]) -> Generation:
    kind = item["kind"]
    chat_cls = _CHAT_KINDS.get(kind)
    if chat_cls is not None:
        (message,) = messages_from_dict([item["message"]])
        return chat_cls(message=message, generation_info=item["generation_info"])
    return _TEXT_KINDS[kind](text=item["text"], generation_info=item["generation_info"])


def _encode_record(prompt: str, llm_string: str, generations: RETURN_VAL_TYPE) -> str:
    """The JSON text stored for an answer (_NotCacheableError if not exact)."""
    record = {
        "format": _RECORD_FORMAT,
        "prompt": prompt,
        "llm_string": llm_string,
        "generations": [_encode_generation(g) for g in generations],
    }
    try:
        text = json.dumps(record, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:  # not JSON: datetime, bytes, NaN, cycle
        raise _NotCacheableError(str(exc)) from None
    decoded = [_decode_generation(g) for g in json.loads(text)["generations"]]
    if decoded != list(generations):  # tuples, int dict keys ... changed on the way
        msg = "JSON does not round-trip it (a tuple, or a non-str dict key?)"
        raise _NotCacheableError(msg)
    return text


class PersistLLMCache(BaseCache):
    """A LangChain LLM cache in a PersistDict: shared by processes, kept across runs.

    ``PersistLLMCache(database_path, *, expiration_days=None, secret=None, **options)``
    where ``options`` are further :class:`~persistdict.PersistDict` keywords
    (``cache_size``, ``value_serializer``/``value_unserializer``, ``durable`` ...).
    The value serializers receive and return the record's JSON text (``str``), so
    ``value_serializer=lambda s: zlib.compress(s.encode())`` compresses the cache.

    ``expiration_days`` drops answers not looked up for that long. ``secret`` signs
    every record; a record whose signature does not verify is a miss (and is logged).
    ``clear()`` removes every cached answer of this cache, and nothing else in the
    store. The async methods read directly (an LMDB read never waits) and write in a
    thread (a write may wait for another process's write lock and syncs the disk).
    ``close()`` (or ``with``) closes the store.

    Example::

        from langchain_core.globals import set_llm_cache
        from persistdict.integrations.langchain import PersistLLMCache

        set_llm_cache(PersistLLMCache("~/.cache/my-app/llm"))
    """

    def __init__(
        self,
        database_path: str | os.PathLike[str],
        *,
        expiration_days: float | None = None,
        secret: bytes | None = None,
        **persistdict_options: Any,
    ) -> None:
        _check_options(type(self).__name__, persistdict_options)
        persistdict_options.setdefault("value_serializer", _utf8_dumps)
        persistdict_options.setdefault("value_unserializer", _utf8_loads)
        self._store = PersistDict(
            database_path,
            expiration_days,
            secret=secret,
            **persistdict_options,
        )

    @property
    def store(self) -> PersistDict:
        """The PersistDict holding the answers (for ``metadata()``, ``expire()``...)."""
        return self._store

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """The cached generations for ``(prompt, llm_string)``, or ``None``."""
        key = llm_cache_key(prompt, llm_string)
        try:
            text = self._store.get(key)
        except SignatureError:
            return None  # logged by the store; the next update rewrites it
        if text is None:
            return None
        record = json.loads(text)
        if record.get("format") != _RECORD_FORMAT:
            logger.debug("LLM cache record %s has another format: a miss", key)
            return None
        if record["prompt"] != prompt or record["llm_string"] != llm_string:
            logger.debug("LLM cache key %s holds another prompt: a miss", key)
            return None
        return [_decode_generation(g) for g in record["generations"]]

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Store ``return_val`` as the answer to ``(prompt, llm_string)``.

        One LMDB transaction: a concurrent lookup in any process sees the previous
        answer or this one, never a mix. An answer that JSON cannot carry exactly is
        not stored (a warning says why).
        """
        try:
            text = _encode_record(prompt, llm_string, return_val)
        except _NotCacheableError as exc:
            logger.warning(
                "LLM answer not cached: %s. Keep generation_info to JSON types "
                "(str, int, float, bool, None, list, dict with str keys).",
                exc,
            )
            return
        self._store[llm_cache_key(prompt, llm_string)] = text

    def clear(self, **kwargs: Any) -> None:
        """Remove every cached answer (one transaction)."""
        if kwargs:
            msg = f"PersistLLMCache.clear() takes no arguments, got {sorted(kwargs)}"
            raise TypeError(msg)
        self._store._delete_prefix(LLM_KEY_PREFIX)

    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """Async :meth:`lookup` (runs directly: LMDB reads never wait)."""
        return self.lookup(prompt, llm_string)

    async def aupdate(
        self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE
    ) -> None:
        """Async :meth:`update`, run in a thread."""
        await run_in_executor(None, self.update, prompt, llm_string, return_val)

    async def aclear(self, **kwargs: Any) -> None:
        """Async :meth:`clear`, run in a thread."""
        await run_in_executor(None, self.clear, **kwargs)

    def close(self) -> None:
        """Close the store (idempotent)."""
        self._store.close()

    def __enter__(self) -> PersistLLMCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self._store.path)!r})"


# ---------------------------------------------------------------- byte store


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        msg = f"PersistByteStore keys are str, got {type(key).__name__}: {key!r}"
        raise TypeError(msg)
    return key


def _check_value(key: str, value: object) -> bytes:
    if not isinstance(value, bytes):
        msg = (
            f"PersistByteStore values are bytes, got {type(value).__name__} "
            f"for key {key!r}"
        )
        raise TypeError(msg)
    return value


class PersistByteStore(ByteStore):
    """A LangChain ``ByteStore`` (``BaseStore[str, bytes]``) in a PersistDict.

    ``PersistByteStore(database_path, **options)`` where ``options`` are
    :class:`~persistdict.PersistDict` keywords (``expiration_days``, ``secret``,
    ``value_serializer``/``value_unserializer`` working on ``bytes`` ...). Values are
    stored as given (no pickle) unless value serializers are passed.

    ``mset``, ``mget`` and ``mdelete`` are one LMDB transaction each: another process
    sees all of an ``mset`` or none of it. ``yield_keys(prefix=...)`` scans only the
    keys that start with ``prefix`` (str keys are ordered by their text in LMDB).
    Reads (``amget``, ``ayield_keys``) run directly, writes in a thread.
    """

    def __init__(
        self, database_path: str | os.PathLike[str], **persistdict_options: Any
    ) -> None:
        _check_options(type(self).__name__, persistdict_options)
        persistdict_options.setdefault("value_serializer", _bytes_dumps)
        persistdict_options.setdefault("value_unserializer", _bytes_loads)
        self._store = PersistDict(database_path, **persistdict_options)

    @property
    def store(self) -> PersistDict:
        """The PersistDict holding the values."""
        return self._store

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of ``keys`` (``None`` where missing), read in one transaction."""
        return self._store._get_many([_check_key(k) for k in keys], None)

    def mset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        """Set several values in one transaction (all or nothing)."""
        # Checked before writing anything: callers are often untyped.
        items = [
            (_check_key(key), _check_value(key, value))
            for key, value in key_value_pairs
        ]
        self._store.update(items)

    def mdelete(self, keys: Sequence[str]) -> None:
        """Delete ``keys`` in one transaction; missing keys are ignored."""
        self._store._delete_many([_check_key(k) for k in keys])

    def yield_keys(self, *, prefix: str | None = None) -> Iterator[str]:
        """The keys that start with ``prefix`` (all keys if ``None``), in key order."""
        yield from self._store._keys_with_prefix(prefix or "")

    async def amget(self, keys: Sequence[str]) -> list[bytes | None]:
        """Async :meth:`mget` (runs directly: LMDB reads never wait)."""
        return self.mget(keys)

    async def amset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        """Async :meth:`mset`, run in a thread."""
        await run_in_executor(None, self.mset, key_value_pairs)

    async def amdelete(self, keys: Sequence[str]) -> None:
        """Async :meth:`mdelete`, run in a thread."""
        await run_in_executor(None, self.mdelete, keys)

    async def ayield_keys(self, *, prefix: str | None = None) -> AsyncIterator[str]:
        """Async :meth:`yield_keys` (one read of the matching keys)."""
        for key in self._store._keys_with_prefix(prefix or ""):
            yield key

    def close(self) -> None:
        """Close the store (idempotent)."""
        self._store.close()

    def __enter__(self) -> PersistByteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self._store.path)!r})"
