"""Turning keys and values into bytes, and back.

Keys get a *canonical* encoding: equal keys (as a ``dict`` sees them) give equal
bytes in every process, whatever ``PYTHONHASHSEED``. ``1``, ``1.0`` and ``True``
are one key, as in a dict; a frozenset is encoded with its elements sorted by
their own encoding, so set iteration order never leaks into the bytes.

The encoding is the LMDB key ("id") of the entry when it fits LMDB's 511-byte
limit; a longer one is stored under ``HASHED + xxh3_128(encoding) + counter``
with the full encoding kept in the entry's metadata, so a hash collision is
detected by comparison and never returns the wrong value.

Values are stored as a record: one flag byte, a check (an xxh3-64 checksum, or a
keyed BLAKE2b signature when the store has a ``secret``), then the payload that
the value serializer produced. The check covers the entry's id too, so a record
copied under another key does not verify.
"""

from __future__ import annotations

import pickle
import struct
import sys

import xxhash

from ._exceptions import SignatureError

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ._meta import Buffer

__all__ = [
    "HASHED",
    "MAX_ID",
    "Codec",
    "default_dumps",
    "default_loads",
    "encode_key",
    "is_immutable",
    "long_key_digest",
]

# LMDB's default maximum key size is 511 bytes.
MAX_ID = 511

# First byte of an id: which kind of key it encodes.
_T_OTHER = b"\x00"  # pickle of a key of another type (matched by its pickle bytes)
_T_STR = b"\x01"
_T_BYTES = b"\x02"
_T_INT = b"\x03"
_T_FLOAT = b"\x04"
_T_NONE = b"\x05"
_T_TUPLE = b"\x06"
_T_FROZENSET = b"\x07"
_T_COMPLEX = b"\x08"
_T_CUSTOM = b"\x10"  # output of a user's key_serializer
# A key longer than MAX_ID is stored under HASHED + its hash + a counter. (Store
# formats 2 and 3 used 0xff; the main database's last keys are now the insertion
# order's, see _env. Signatures still cover such an id as 0xff + the rest, so
# records signed then verify now: see Codec._sign.)
HASHED = b"\x1e"
_SIGNED_HASHED = b"\xff"

_pack_len = struct.Struct(">I").pack


def long_key_digest(encoded: bytes) -> bytes:
    """The 16-byte hash under which a key longer than MAX_ID is stored."""
    return xxhash.xxh3_128_digest(encoded)


def _encode_number(key: int | float | complex) -> bytes:
    # Equal numbers are one dict key (1 == 1.0 == True == 1+0j): encode by value.
    if isinstance(key, complex):
        if key.imag:
            return _T_COMPLEX + repr(key).encode()
        key = key.real
    if isinstance(key, float):
        if key.is_integer():
            key = int(key)
        else:
            return _T_FLOAT + repr(key).encode()
    return _T_INT + str(int(key)).encode()


def _encode_part(key: Any) -> bytes:
    cls = type(key)
    if cls is str:
        return _T_STR + str.encode(key, "utf-8", "surrogatepass")
    if cls is bytes:
        return _T_BYTES + bytes(key)
    if cls is int or cls is bool or cls is float or cls is complex:
        return _encode_number(key)
    if key is None:
        return _T_NONE
    if cls is tuple:
        return _T_TUPLE + b"".join(_framed(part) for part in key)
    if cls is frozenset:
        return _T_FROZENSET + b"".join(sorted(_framed(part) for part in key))
    hash(key)  # an unhashable key raises TypeError, exactly as in a dict
    try:
        return _T_OTHER + pickle.dumps(key, protocol=5)
    except (pickle.PicklingError, TypeError, AttributeError):
        return _T_OTHER + _cloudpickle_dumps(key)


def _framed(part: Any) -> bytes:
    encoded = _encode_part(part)
    return _pack_len(len(encoded)) + encoded


def encode_key(key: Any) -> tuple[bytes, bytes | None]:
    """Return ``(canonical encoding, original key bytes or None)``.

    The original is kept only when the key cannot be rebuilt, exactly, from its
    encoding (``decode_key``): a str, bytes or int key is rebuilt for free.
    """
    cls = type(key)
    if cls is str:
        return _T_STR + key.encode("utf-8", "surrogatepass"), None
    encoded = _encode_part(key)
    if cls is bytes or cls is int:
        return encoded, None
    try:
        original = pickle.dumps(key, protocol=5)
    except (pickle.PicklingError, TypeError, AttributeError):
        original = _cloudpickle_dumps(key)
    return encoded, original


def decode_key(encoded: bytes, original: Buffer | None) -> Any:
    """Rebuild a key from what ``encode_key`` returned."""
    if original is not None:
        return pickle.loads(original)
    tag = encoded[:1]
    if tag == _T_STR:
        return encoded[1:].decode("utf-8", "surrogatepass")
    if tag == _T_BYTES:
        return encoded[1:]
    if tag == _T_INT:
        return int(encoded[1:])
    raise ValueError(f"cannot rebuild a key from its encoding tagged {tag!r}")


_IMMUTABLE_SCALARS = frozenset(
    {
        str,
        bytes,
        int,
        float,
        bool,
        complex,
        type(None),
        range,
    }
)
# Immutable types of modules that are slow to import, matched by module and name
# and then looked up in sys.modules (a value of the type exists only once its
# module is imported), so that importing persistdict imports none of them.
_IMMUTABLE_BY_NAME = frozenset(
    {
        ("datetime", "datetime"),
        ("datetime", "date"),
        ("datetime", "time"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
        ("decimal", "Decimal"),
        ("fractions", "Fraction"),
        ("uuid", "UUID"),
    }
)


def is_immutable(value: Any) -> bool:
    """True when ``value`` can be shared between readers without copying."""
    cls = type(value)
    if cls in _IMMUTABLE_SCALARS:
        return True
    if cls is tuple or cls is frozenset:
        return all(is_immutable(item) for item in value)
    module, name = cls.__module__, cls.__qualname__
    return (module, name) in _IMMUTABLE_BY_NAME and getattr(
        sys.modules.get(module), name, None
    ) is cls


# Types whose pickle refers to no class or function (protocol 5).
_NO_GLOBALS = frozenset({str, bytes, bytearray, int, float, bool, type(None)})


def default_dumps(value: Any) -> bytes:
    """Pickle a value: plain pickle when it will load anywhere, else cloudpickle.

    Plain pickle writes functions and classes by reference, which fails for
    lambdas and local objects and, for those of ``__main__``, would not load in
    another process; cloudpickle writes those by value but costs a few
    microseconds more, so plain data (the common case) does not pay for it.
    """
    try:
        data = pickle.dumps(value, protocol=5)
    except (pickle.PicklingError, TypeError, AttributeError):
        return _cloudpickle_dumps(value)
    if type(value) in _NO_GLOBALS:
        return data  # refers to no class: no need to search (37 us for 100 KB)
    # A reference into __main__ (rarely: that text). find, not ``in``: ``in``
    # first tries its operand as an int, and raises and clears a TypeError
    # with a formatted message (~70 ns) before it searches.
    if data.find(b"__main__") >= 0:
        return _cloudpickle_dumps(value)
    return data


def _cloudpickle_dumps(value: Any) -> bytes:
    import cloudpickle  # only what plain pickle cannot write needs it

    return bytes(cloudpickle.dumps(value, protocol=5))


default_loads: Callable[[bytes], Any] = pickle.loads

_xxh64 = xxhash.xxh3_64_digest

# Record layout: flag byte, then an 8-byte checksum or a 32-byte signature.
_VIEW_FROM = 16384  # bytes of a record from which open() gives a memoryview
_F_CHECKSUM = 0
_F_SIGNED = 1
_CHECK_LEN = {_F_CHECKSUM: 8, _F_SIGNED: 32}


class Codec:
    """Values to records and back, with a checksum or a signature."""

    __slots__ = ("_secret", "_views", "dumps", "loads")

    def __init__(
        self,
        dumps: Callable[[Any], bytes],
        loads: Callable[[bytes], Any],
        secret: bytes | None,
    ) -> None:
        self.dumps = dumps
        # Given a bytes payload, or a memoryview of one when _views (see open).
        self.loads: Callable[[Any], Any] = loads
        self._secret = secret
        # pickle.loads reads a memoryview as well as bytes: a large payload is
        # then not copied out of its record first (a user's unserializer gets
        # bytes, as documented).
        self._views = loads is pickle.loads

    def _sign(self, entry_id: bytes, payload: bytes) -> bytes:
        import hashlib  # only stores with a secret need it

        mac = hashlib.blake2b(key=self._secret or b"", digest_size=32)
        mac.update(_pack_len(len(entry_id)))
        if entry_id[:1] == HASHED:  # (see HASHED)
            mac.update(_SIGNED_HASHED)
            mac.update(entry_id[1:])
        else:
            mac.update(entry_id)
        mac.update(payload)
        return mac.digest()

    def seal(self, entry_id: bytes, payload: bytes) -> bytes:
        """The record stored for ``payload`` under ``entry_id``."""
        return self.check(entry_id, payload) + payload

    def check(self, entry_id: bytes, payload: bytes) -> bytes:
        """What precedes ``payload`` in its record: a flag byte, then a checksum
        or a signature (to join with the payload without another copy of it)."""
        if self._secret is None:
            return b"\x00" + _xxh64(payload, len(entry_id))
        return b"\x01" + self._sign(entry_id, payload)

    def open(self, entry_id: bytes, record: bytes, start: int = 0) -> Buffer:
        """The payload of the record at ``record[start:]``, after its checksum or
        signature verified (``start`` skips a row's metadata without a copy).

        A large payload comes as a memoryview of ``record`` when ``loads`` is
        pickle's (no copy of it before unpickling); otherwise as bytes.
        """
        if self._secret is None and len(record) > start and record[start] == 0:
            # The common case.
            if self._views and len(record) > _VIEW_FROM:
                payload: Buffer = memoryview(record)[start + 9 :]
            else:
                payload = record[start + 9 :]
            if record[start + 1 : start + 9] == _xxh64(payload, len(entry_id)):
                return payload
        return self._open_checked(entry_id, record, start)

    def _open_checked(self, entry_id: bytes, record: bytes, start: int) -> Buffer:
        flag = record[start] if len(record) > start else -1
        if flag == _F_CHECKSUM and self._secret is None:
            payload = record[start + 9 :]
            if record[start + 1 : start + 9] == _xxh64(payload, len(entry_id)):
                return payload
            raise SignatureError(
                "a stored record failed its checksum: the store's file was "
                "damaged or changed outside persistdict; delete the entry"
            )
        if flag == _F_SIGNED and self._secret is not None:
            import hmac  # only stores with a secret need it

            payload = record[start + 33 :]
            signature = record[start + 1 : start + 33]
            if hmac.compare_digest(signature, self._sign(entry_id, payload)):
                return payload
            raise SignatureError(
                "a stored record failed its signature check and was not "
                "unpickled: it was written with another secret or changed "
                "outside persistdict"
            )
        if flag == _F_SIGNED:
            raise SignatureError(
                "this record is signed but the store was opened without a "
                "secret: pass secret= (or set $PERSISTDICT_SECRET)"
            )
        if flag == _F_CHECKSUM:
            raise SignatureError(
                "this record is not signed but the store was opened with a "
                "secret: it was not unpickled (it may have been written by "
                "someone without the secret)"
            )
        raise SignatureError("a stored record has an unknown format")
