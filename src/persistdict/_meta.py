"""Per-entry metadata: creation time, last access time, size, insertion order.

Each entry has one metadata record, keyed by the entry's id in the ``meta``
database and written in the same transaction as its value::

    seq      u64   insertion order (the key of the entry in the ``order`` database)
    ctime    f64   seconds since the epoch, when the key was first stored
    atime    f64   seconds since the epoch, when the entry was last read or written
    size     u64   bytes of the stored value record
    flags    u8    bit 0: an original key follows; bit 1: the id is a hash;
                   bit 2: a note follows
    full     u32   length of the full key encoding that follows (hashed ids only)
    ...            the full key encoding; if bit 2, a u16 length and a UTF-8 note
                   (persist_cache's preview of the call, for the command line);
                   then the original key's bytes
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import datetime as _dt

__all__ = ["EntryMetadata", "MetaRecord", "pack_meta", "unpack_meta"]

_HEADER = struct.Struct("<QddQBI")
_ATIME = struct.Struct("<d")
_ATIME_OFFSET = 16
_F_ORIGINAL = 1
_F_HASHED = 2
_F_NOTE = 4
_NOTE_LEN = struct.Struct("<H")
MAX_NOTE = 1000  # bytes of UTF-8


class EntryMetadata(NamedTuple):
    """What ``PersistDict.metadata(key)`` returns."""

    ctime: _dt.datetime
    """When the key was first stored (UTC)."""
    atime: _dt.datetime
    """When the entry was last read or written (UTC, accurate to about a second)."""
    size: int
    """Bytes stored for the value (after serialization, with its check)."""


class MetaRecord(NamedTuple):
    seq: int
    ctime: float
    atime: float
    size: int
    full: bytes | None
    original: bytes | None
    note: str | None = None


def pack_meta(
    seq: int,
    ctime: float,
    atime: float,
    size: int,
    full: bytes | None,
    original: bytes | None,
    note: str | None = None,
) -> bytes:
    flags = (
        (_F_ORIGINAL if original is not None else 0)
        | (_F_HASHED if full is not None else 0)
        | (_F_NOTE if note is not None else 0)
    )
    full_bytes = full or b""
    header = _HEADER.pack(seq, ctime, atime, size, flags, len(full_bytes))
    note_bytes = b""
    if note is not None:
        encoded = note.encode("utf-8", "replace")[:MAX_NOTE]
        encoded = encoded.decode("utf-8", "ignore").encode()  # no cut character
        note_bytes = _NOTE_LEN.pack(len(encoded)) + encoded
    return header + full_bytes + note_bytes + (original or b"")


def unpack_meta(raw: bytes) -> MetaRecord:
    seq, ctime, atime, size, flags, full_len = _HEADER.unpack_from(raw)
    start = _HEADER.size
    full = raw[start : start + full_len] if flags & _F_HASHED else None
    start += full_len
    note = None
    if flags & _F_NOTE:
        (note_len,) = _NOTE_LEN.unpack_from(raw, start)
        start += _NOTE_LEN.size
        note = bytes(raw[start : start + note_len]).decode("utf-8", "replace")
        start += note_len
    original = raw[start:] if flags & _F_ORIGINAL else None
    return MetaRecord(seq, ctime, atime, size, full, original, note)


def meta_atime(raw: bytes) -> float:
    """The atime of a packed record, without unpacking the rest."""
    return float(_ATIME.unpack_from(raw, _ATIME_OFFSET)[0])


def with_atime(raw: bytes, atime: float) -> bytes:
    """A packed record with its atime replaced."""
    return raw[:_ATIME_OFFSET] + _ATIME.pack(atime) + raw[_ATIME_OFFSET + 8 :]


def to_datetime(timestamp: float) -> _dt.datetime:
    import datetime as _dt  # imported where used: only metadata() needs it

    return _dt.datetime.fromtimestamp(timestamp, tz=_dt.timezone.utc)
