"""Per-entry metadata, kept in the same row as the entry's value.

Each entry is one row of the ``values`` database, keyed by the entry's id and
written in one put::

    flags    u8    bit 0: an original key follows; bit 1: the id is a hash;
                   bit 2: a note follows
    seq      u64   insertion order (the key of the entry in the ``order`` database)
    ctime    f64   seconds since the epoch, when the key was first stored
    written  f64   seconds since the epoch, when the value was last written
    full     u32   length of the full key encoding (hashed ids only)
    note     u16   length of the UTF-8 note (persist_cache's preview of the call,
                   for the command line)
    original u32   length of the original key's bytes
    ...            the full key encoding, the note, the original key's bytes,
                   then the value's record (checksum or signature, payload)

Reads are recorded apart, in the ``atimes`` database (id -> f64), by the
access-time flushes; an entry's access time is the later of ``written`` and
that. So a write puts one row (two for a new key: its ``order`` entry), and
recording reads never rewrites values.
"""

from __future__ import annotations

import struct
from collections import namedtuple

from ._exceptions import SignatureError

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    import datetime as _dt
    from typing import NamedTuple

__all__ = [
    "HEADER_SIZE",
    "Buffer",
    "EntryMetadata",
    "MetaRecord",
    "pack_row",
    "record_start",
    "repack_row",
    "row_seq",
    "row_written",
    "unpack_atime",
    "unpack_row",
]

Buffer = bytes | memoryview  # a row: a copy, or a buffer of a read transaction
_HEADER = struct.Struct("<BQddIHI")
HEADER_SIZE = _HEADER.size  # 35: where the record starts when flags is 0
_SEQ = struct.Struct("<Q")
_TIME = struct.Struct("<d")
_LENGTHS = struct.Struct("<IHI")
_SEQ_OFFSET = 1
_WRITTEN_OFFSET = 17
_LENGTHS_OFFSET = 25
_F_ORIGINAL = 1
_F_HASHED = 2
_F_NOTE = 4
MAX_NOTE = 1000  # bytes of UTF-8


if TYPE_CHECKING:

    class EntryMetadata(NamedTuple):
        ctime: _dt.datetime
        atime: _dt.datetime
        size: int

else:
    # The same named tuple, made without typing.
    class EntryMetadata(namedtuple("EntryMetadata", ("ctime", "atime", "size"))):
        __slots__ = ()


EntryMetadata.__doc__ = """What ``PersistDict.metadata(key)`` returns: a named tuple

``ctime``: when the key was first stored (UTC datetime); ``atime``: when the
entry was last read or written (UTC, accurate to about a second); ``size``:
bytes stored for the value (after serialization, with its check).
"""


class MetaRecord:
    """The metadata part of a row, unpacked."""

    __slots__ = ("ctime", "full", "note", "original", "seq", "size", "start", "written")

    def __init__(
        self,
        seq: int,
        ctime: float,
        written: float,
        size: int,
        full: bytes | None,
        original: bytes | None,
        note: str | None,
        start: int,
    ) -> None:
        self.seq = seq
        self.ctime = ctime
        self.written = written
        self.size = size  # bytes of the value's record
        self.full = full
        self.original = original
        self.note = note
        self.start = start  # where the value's record starts in the row


def pack_row(
    seq: int,
    ctime: float,
    written: float,
    check: bytes,
    payload: bytes,
    full: bytes | None,
    original: bytes | None,
    note: str | None = None,
) -> bytes:
    """The row stored for an entry: its metadata, then its value's record (the
    ``check`` from ``Codec.check``, then the ``payload``), in one copy."""
    if full is None and original is None and note is None:  # the common case
        return b"".join((_HEADER.pack(0, seq, ctime, written, 0, 0, 0), check, payload))
    flags = (
        (_F_ORIGINAL if original is not None else 0)
        | (_F_HASHED if full is not None else 0)
        | (_F_NOTE if note is not None else 0)
    )
    note_bytes = b""
    if note is not None:
        note_bytes = note.encode("utf-8", "replace")[:MAX_NOTE]
        note_bytes = note_bytes.decode("utf-8", "ignore").encode()  # no cut character
    full = full or b""
    original = original or b""
    header = _HEADER.pack(
        flags, seq, ctime, written, len(full), len(note_bytes), len(original)
    )
    return b"".join((header, full, note_bytes, original, check, payload))


def repack_row(
    row: Buffer, written: float, check: bytes, payload: bytes, note: str | None
) -> bytes:
    """``row`` with a new value: the same metadata (insertion place, creation
    time, key; the note too unless ``note`` is given), a new write time.
    A row cut short raises SignatureError (see damaged_row)."""
    if note is not None:
        old = unpack_row(row)
        return pack_row(
            old.seq, old.ctime, written, check, payload, old.full, old.original, note
        )
    start = record_start(row)
    if len(row) < start:
        raise damaged_row()
    return b"".join(
        (
            row[:_WRITTEN_OFFSET],
            _TIME.pack(written),
            row[_WRITTEN_OFFSET + 8 : start],
            check,
            payload,
        )
    )


def damaged_row() -> SignatureError:
    return SignatureError(
        "a stored row is damaged (shorter than its metadata says): the store's "
        "file was changed outside persistdict; delete the entry (del d[key]) or "
        "the store"
    )


def record_start(row: Buffer) -> int:
    """Where the value's record starts in ``row`` (SignatureError for a row cut
    short within its header)."""
    try:
        if not row[0]:
            return HEADER_SIZE
        full_len, note_len, original_len = _LENGTHS.unpack_from(row, _LENGTHS_OFFSET)
    except (IndexError, struct.error):
        raise damaged_row() from None
    return int(HEADER_SIZE + full_len + note_len + original_len)


def unpack_row(row: Buffer) -> MetaRecord:
    """The metadata of ``row`` (a ``bytes`` or a buffer of a read transaction;
    SignatureError for a row shorter than its metadata says)."""
    try:
        flags, seq, ctime, written, full_len, note_len, original_len = (
            _HEADER.unpack_from(row)
        )
    except struct.error:
        raise damaged_row() from None
    start = HEADER_SIZE
    full = bytes(row[start : start + full_len]) if flags & _F_HASHED else None
    start += full_len
    note = None
    if flags & _F_NOTE:
        note = bytes(row[start : start + note_len]).decode("utf-8", "replace")
    start += note_len
    original = bytes(row[start : start + original_len]) if flags & _F_ORIGINAL else None
    start += original_len
    size = len(row) - start
    if size < 0:
        raise damaged_row()
    return MetaRecord(seq, ctime, written, size, full, original, note, start)


def row_seq(row: Buffer) -> int:
    try:
        return int(_SEQ.unpack_from(row, _SEQ_OFFSET)[0])
    except struct.error:
        raise damaged_row() from None


def row_written(row: Buffer) -> float:
    """When the row's value was written, without unpacking the rest."""
    try:
        return float(_TIME.unpack_from(row, _WRITTEN_OFFSET)[0])
    except struct.error:
        raise damaged_row() from None


def unpack_atime(raw: Buffer) -> float:
    return float(_TIME.unpack_from(raw)[0])


def to_datetime(timestamp: float) -> _dt.datetime:
    import datetime as _dt  # imported where used: only metadata() needs it

    return _dt.datetime.fromtimestamp(timestamp, tz=_dt.timezone.utc)
