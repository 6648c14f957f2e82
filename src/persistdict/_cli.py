"""The ``persistdict`` command line: look inside a store, expire, clear, compact.

Usage::

    persistdict info PATH [--json]
        What the store holds: entries, bytes stored and on disk, map size, oldest
        and newest creation and access times, the recorded expiration setting,
        and for a memoization store its functions with their entry counts.

    persistdict ls PATH [--limit N] [--sort key|size|ctime|atime] [--reverse]
                        [--function NAME] [--json]
        One row per entry: key (or function and call hash), size, created,
        accessed. Without --sort, insertion order. size/ctime/atime sort the
        largest or newest first; --reverse turns any order around.

    persistdict show PATH KEY [--json]
        The value of KEY (repr, shortened for people; --json prints the value
        as JSON when it is JSON data, and its full repr). KEY is read as a
        Python literal when it is one (42, 'a b', (1, 2), b'x'), else as a
        str; if that finds nothing, the text as a str, then as the unique
        prefix of a str key or of a memoized call's hash (as ``ls`` shows it).

    persistdict expire PATH [--days N] [--json]
        Remove the entries not accessed for N days (default: the expiration
        the store recorded) and print how many went.

    persistdict clear PATH [--function NAME] [--yes] [--json]
        Remove one memoized function's entries (every version of it), or
        everything after asking (--yes: without asking).

    persistdict compact PATH [--json]
        Rewrite data.mdb without its free pages, so the file shrinks. Refuses
        while another process has the store open; openers wait meanwhile.

``info``, ``ls`` and ``show`` open the store read-only and never change it.
Errors are one line on stderr: exit status 1, or 2 for a usage error.
"""

from __future__ import annotations

import argparse
import ast
import datetime as _dt
import errno
import fcntl
import json
import logging
import os
import pickle
import pickletools
import pprint
import re
import shutil
import stat
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import lmdb

from . import __version__
from ._codec import HASHED, encode_key
from ._dict import PersistDict, _count
from ._env import (
    _REGISTRY,
    DB_NAMES,
    MAX_READERS,
    ORDER_FROM,
    ORDER_TAG,
    Env,
    Txn,
    _check_data_file,
    _check_ownership,
    is_entry_id,
)
from ._exceptions import PersistDictError, SignatureError
from ._meta import MetaRecord, unpack_row

__all__ = ["main"]

PROG = "persistdict"
_DAY = 86400.0
_SCAN_BATCH = 4096  # entries read per read transaction while listing
_PREVIEW = 48  # characters of a key shown by ls
_VALUE_PREVIEW = 2000  # characters of a value's repr shown by show
_HASH_SHOWN = 12  # hex digits of a memoized call's hash shown by ls
_PROGRESS_DELAY = 0.3  # seconds before progress shows: quick operations show none
_PROGRESS_EVERY = 0.1  # seconds between updates of the progress line
# "{module}:{qualname}:{version}:" + 32 hex digits: a persist_cache entry.
_MEMO_KEY = re.compile(r"([^:]+):([^:]+):([^:]*):([0-9a-f]{32})")
_u64 = struct.Struct(">Q")
# Tags of the canonical key encoding (persistdict._codec).
_T_OTHER, _T_STR, _T_BYTES, _T_INT, _T_FLOAT = 0x00, 0x01, 0x02, 0x03, 0x04
_T_NONE, _T_TUPLE, _T_FROZENSET, _T_COMPLEX, _T_CUSTOM = 0x05, 0x06, 0x07, 0x08, 0x10


class _Exit(Exception):  # noqa: N818 - control flow, carries the exit status
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def die(msg: str, code: int = 1) -> NoReturn:
    """Print one line on stderr and stop with a non-zero exit status."""
    line = " ".join(str(msg).split())
    print(f"{PROG}: error: {line}", file=sys.stderr)
    raise _Exit(code)


# ---------------------------------------------------------------- formatting


def human_size(n: int) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    if n < 1024:
        return f"{n} B"
    value = n / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def human_ago(timestamp: float, now: float) -> str:
    """A time as people say it: ``"just now"``, ``"5 min ago"``, ``"3 days ago"``."""
    delta = now - timestamp
    if delta < -2:
        return "in the future"
    if delta < 2:
        return "just now"
    if delta < 60:
        return f"{int(delta)} s ago"
    if delta < 3600:
        return f"{int(delta // 60)} min ago"
    if delta < _DAY:
        return f"{int(delta // 3600)} h ago"
    days = int(delta // _DAY)
    if days < 365:
        return "1 day ago" if days == 1 else f"{days} days ago"
    return f"{delta / (365.25 * _DAY):.1f} years ago"


def iso(timestamp: float) -> str:
    return (
        _dt.datetime.fromtimestamp(timestamp, tz=_dt.timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _days_text(days: float) -> str:
    return f"{days:g} day" + ("" if days == 1 else "s")


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: str) -> str:
    """Aligned columns; ``right`` lists (by index, as digits) right-aligned ones."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in (headers, *rows):
        cells = [
            cell.rjust(widths[i]) if str(i) in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _emit_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


class Progress:
    """A one-line counter on stderr, only when stderr is a terminal."""

    def __init__(self, label: str, total: int | None = None) -> None:
        self.label = label
        self.total = total
        self.count = 0
        self.enabled = sys.stderr.isatty()
        self._shown = False
        self._next = time.monotonic() + _PROGRESS_DELAY

    def add(self, n: int = 1) -> None:
        self.count += n
        if not self.enabled or time.monotonic() < self._next:
            return
        self._next = time.monotonic() + _PROGRESS_EVERY
        total = f" of {self.total:,}" if self.total else ""
        sys.stderr.write(f"\r{self.label}: {self.count:,}{total}")
        sys.stderr.flush()
        self._shown = True

    def done(self) -> None:
        if self._shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self._shown = False


# ---------------------------------------------------------------- keys, not unpickled


def _pickled_class(data: bytes) -> str:
    """The class a pickle builds, read from its opcodes (nothing is executed)."""
    strings: list[str] = []
    try:
        for op, arg, _pos in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST") and isinstance(arg, str):
                return arg.replace(" ", ".")
            if op.name == "STACK_GLOBAL" and len(strings) >= 2:
                return f"{strings[-2]}.{strings[-1]}"
            if isinstance(arg, str):
                strings.append(arg)
    except ValueError:  # a truncated or odd pickle: describe it vaguely
        pass
    return "object"


def _frames(body: bytes) -> Iterator[bytes]:
    pos = 0
    while pos + 4 <= len(body):
        (length,) = struct.unpack_from(">I", body, pos)
        yield body[pos + 4 : pos + 4 + length]
        pos += 4 + length


def describe_key(encoded: bytes) -> tuple[str, Any]:
    """(Python-literal-like text, JSON form) of a canonical key encoding.

    Works from the bytes alone: nothing is unpickled or imported, so listing a
    store never runs its code and never needs the user's modules.
    """
    tag, body = (encoded[0], encoded[1:]) if encoded else (-1, b"")
    if tag == _T_STR:
        text = body.decode("utf-8", "surrogatepass")
        return repr(text), text
    if tag == _T_BYTES:
        return repr(body), repr(body)
    if tag == _T_INT:
        return body.decode(), int(body)
    if tag == _T_FLOAT:
        return body.decode(), float(body)
    if tag == _T_NONE:
        return "None", None
    if tag == _T_COMPLEX:
        return body.decode(), body.decode()
    if tag in (_T_TUPLE, _T_FROZENSET):
        parts = [describe_key(part) for part in _frames(body)]
        texts = [text for text, _ in parts]
        values = [value for _, value in parts]
        if tag == _T_FROZENSET:
            return "frozenset({" + ", ".join(texts) + "})", values
        if len(texts) == 1:
            return f"({texts[0]},)", values
        return "(" + ", ".join(texts) + ")", values
    if tag == _T_OTHER:
        text = f"<{_pickled_class(body)} object>"
        return text, text
    if tag == _T_CUSTOM:
        text = f"<key_serializer bytes {body[:8].hex()}{'…' if len(body) > 8 else ''}>"
        return text, text
    text = f"<unknown key encoding {encoded[:8].hex()}>"
    return text, text


# ---------------------------------------------------------------- reading a store


@dataclass(slots=True)
class Entry:
    """One entry, read from its metadata (its value is never unpickled)."""

    key_text: str
    key_json: Any
    str_key: str | None
    size: int
    ctime: float
    atime: float
    expired: bool
    function: str | None = None  # "module:qualname" of a persist_cache entry
    version: str | None = None
    call: str | None = None  # the 32-hex-digit call hash
    preview: str | None = None  # persist_cache's text of the call, e.g. "fib(n=30)"

    def shown_key(self) -> str:
        if self.function is not None and self.call is not None:
            prefix = f"{self.version}:" if self.version else ""
            return prefix + self.call[:_HASH_SHOWN]
        return shorten(self.key_text, _PREVIEW)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key": self.key_json,
            "key_repr": self.key_text,
            "size": self.size,
            "ctime": iso(self.ctime),
            "atime": iso(self.atime),
        }
        if self.function is not None:
            out["function"] = self.function
            out["version"] = self.version or None
            out["call"] = self.call
            out["call_preview"] = self.preview
        return out


def _entry(
    entry_id: bytes, meta: MetaRecord, atime: float, expire_seconds: float, now: float
) -> Entry:
    encoded = meta.full if entry_id[:1] == HASHED and meta.full else entry_id
    text, value = describe_key(encoded)
    expired = bool(expire_seconds) and now - atime > expire_seconds
    str_key = value if encoded[:1] == bytes([_T_STR]) else None
    entry = Entry(text, value, str_key, meta.size, meta.ctime, atime, expired)
    if str_key is not None:
        match = _MEMO_KEY.fullmatch(str_key)
        if match:
            module, qualname, version, call = match.groups()
            entry.function = f"{module}:{qualname}"
            entry.version = version
            entry.call = call
            entry.preview = meta.note
    return entry


class Store:
    """A store opened for the command line, with what it recorded about itself."""

    def __init__(self, path: Path, *, write: bool) -> None:
        self.path = path
        self.write = write
        probe = PersistDict(path, readonly=not write, cache_size=0)
        try:
            self.settings = probe._live().settings_snapshot()
            days = self.settings.get("expiration_days")
            self.expiration_days: float | None = (
                float(days) if isinstance(days, (int, float)) and days > 0 else None
            )
            # Opened with the recorded expiration, so that expired entries are
            # missing here as they are for the program that uses the store.
            # (Before the probe closes: both share one environment.)
            self.dict = PersistDict(
                path,
                None if write else self.expiration_days,
                readonly=not write,
                cache_size=0,
            )
        finally:
            probe.close()

    @property
    def env(self) -> Env:
        return self.dict._live()

    def close(self) -> None:
        self.dict.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def entries(
        self, *, label: str = "reading", include_expired: bool = False
    ) -> list[Entry]:
        """Every entry in insertion order, read in batches of short transactions."""
        env = self.env
        expire_seconds = (self.expiration_days or 0.0) * _DAY
        now = time.time()
        total = env.read(lambda txn: _count(txn, env))
        progress = Progress(label, total)
        out: list[Entry] = []
        position: bytes | None = None

        def batch(txn: Txn) -> list[tuple[bytes, bytes, MetaRecord | None, float]]:
            # Rows are buffers here: their metadata is unpacked, values not copied.
            # The places of the insertion order (see _env), from ``position``.
            cursor = txn.cursor(env.values)
            if position is None:
                ok = cursor.set_range(ORDER_FROM)
            else:
                ok = cursor.set_range(position)
                if ok and cursor.key() == position:
                    ok = cursor.next()
            rows: list[tuple[bytes, bytes, MetaRecord | None, float]] = []
            while ok and cursor.key()[0] == ORDER_TAG and len(rows) < _SCAN_BATCH:
                seq_key, entry_id = bytes(cursor.key()), bytes(cursor.value())
                row = txn.get(entry_id, db=env.values)
                if row is None:
                    rows.append((seq_key, entry_id, None, 0.0))
                else:
                    atime = self.dict._atime(env, txn, entry_id, row)
                    rows.append((seq_key, entry_id, unpack_row(row), atime))
                ok = cursor.next()
            return rows

        try:
            while True:
                rows = env.read(batch, buffers=True)
                if not rows:
                    break
                position = rows[-1][0]
                for _seq, entry_id, meta, atime in rows:
                    if meta is None:
                        continue
                    entry = _entry(entry_id, meta, atime, expire_seconds, now)
                    if include_expired or not entry.expired:
                        out.append(entry)
                progress.add(len(rows))
                if len(rows) < _SCAN_BATCH:
                    break
        finally:
            progress.done()
        return out


def store_dir(text: str) -> Path:
    """The store directory named on the command line, checked before opening."""
    path = Path(text).expanduser()
    if not path.exists():
        die(f"no store at {path}: the path does not exist")
    if not path.is_dir():
        die(
            f"{path} is a file, not a store: a store is a directory holding "
            "data.mdb (pass the directory)"
        )
    data_file = path / "data.mdb"
    if not data_file.exists():
        die(f"{path} is not a persistdict store: it has no data.mdb")
    if data_file.is_file() and data_file.stat().st_size == 0:
        die(f"{path} is not a persistdict store: its data.mdb is empty")
    if not os.access(path, os.R_OK | os.X_OK) or not os.access(data_file, os.R_OK):
        die(f"{path} cannot be read: permission denied")
    return path.resolve()


def _writable(path: Path, what: str) -> None:
    for item in (path, path / "data.mdb", path / "lock.mdb"):
        if item.exists() and not os.access(item, os.W_OK):
            die(
                f"cannot {what} {path}: {item} is read-only (permission denied); "
                "run this as the store's owner or make it writable"
            )


def read_meta_page(data_file: Path) -> tuple[int, int, int, int]:
    """(page size, map size, last page number, txn id) of the newest meta page."""
    with data_file.open("rb") as fh:
        head = fh.read(2 * 65536)
    psize = struct.unpack_from("<I", head, 40)[0]
    best = (0, 0, 0)
    for offset in (0, psize):
        if len(head) < offset + 152:
            continue
        mapsize = struct.unpack_from("<Q", head, offset + 32)[0]
        last_pg, txnid = struct.unpack_from("<QQ", head, offset + 136)
        if txnid >= best[2]:
            best = (mapsize, last_pg, txnid)
    return psize, best[0], best[1], best[2]


def _device_inode(st: os.stat_result) -> tuple[str, str]:
    major, minor = os.major(st.st_dev), os.minor(st.st_dev)
    return f"{major:02x}:{minor:02x}", str(st.st_ino)


def lock_holders(lock_file: Path) -> set[int]:
    """Pids holding LMDB's open-environment lock on ``lock_file`` (Linux).

    Every process with an LMDB environment open holds a shared ``fcntl`` lock
    on byte 0 of ``lock.mdb`` for as long as the environment stays open.
    """
    try:
        device, inode = _device_inode(lock_file.stat())
        with open("/proc/locks", encoding="ascii") as fh:
            lines = fh.read().splitlines()
    except OSError:  # no lock file yet, or not Linux
        return set()
    pids = set()
    for line in lines:
        fields = line.split()
        # "1: POSIX  ADVISORY  READ 1234 fe:00:5678 0 0" (a waiter has "->")
        if "->" in fields or len(fields) < 8:
            continue
        if fields[5] == f"{device}:{inode}" and fields[6] == "0":
            pids.add(int(fields[4]))
    return pids


def mappers(data_file: Path) -> set[int]:
    """Pids that map ``data_file`` (Linux; the processes we may read)."""
    try:
        device, inode = _device_inode(data_file.stat())
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:  # not Linux
        return set()
    found = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    fields = line.split(maxsplit=5)
                    if len(fields) >= 5 and fields[4] == inode and fields[3] == device:
                        found.add(pid)
                        break
        except OSError:  # gone meanwhile, or another user's process
            continue
    return found


def store_users(path: Path) -> list[int]:
    """Other processes that have the store open: those holding LMDB's lock, and
    (in case one lost it) those mapping its data file."""
    users = lock_holders(path / "lock.mdb") | mappers(path / "data.mdb")
    users.discard(os.getpid())
    return sorted(users)


# ---------------------------------------------------------------- subcommands


def _memo_functions(entries: list[Entry]) -> dict[str, dict[str, Any]]:
    functions: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if entry.function is None:
            continue
        info = functions.setdefault(
            entry.function,
            {"entries": 0, "size": 0, "versions": set(), "atime": 0.0},
        )
        info["entries"] += 1
        info["size"] += entry.size
        info["versions"].add(entry.version or "")
        info["atime"] = max(info["atime"], entry.atime)
    return functions


def cmd_info(args: argparse.Namespace) -> int:
    path = store_dir(args.path)
    data_file = path / "data.mdb"
    with Store(path, write=False) as store:
        entries = store.entries(label="reading entries", include_expired=True)
        env = store.env

        def pages(txn: Txn) -> int:
            used = 0
            # (None: the main database, where the rows are.)
            for db in (None, env.atimes, env.internal):
                st = txn.stat(db) if db is not None else env.env.stat()
                used += st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
            return used

        used_pages = env.read(pages)
    psize, map_size, _last_pg, _txnid = read_meta_page(data_file)
    now = time.time()
    live = [e for e in entries if not e.expired]
    expired = len(entries) - len(live)
    functions = _memo_functions(live)
    others = store_users(path)
    on_disk = data_file.stat().st_size
    used = (used_pages + 2) * psize  # + the two meta pages
    kind = (
        "empty"
        if not live
        else "memoization"
        if len(functions) and all(e.function for e in live)
        else "mixed"
        if functions
        else "dict"
    )
    created = store.settings.get("created")
    info: dict[str, Any] = {
        "path": str(path),
        "kind": kind,
        "entries": len(live),
        "expired_not_removed": expired,
        "stored_bytes": sum(e.size for e in live),
        "used_bytes": used,
        "file_bytes": on_disk,
        "reclaimable_bytes": max(on_disk - used, 0),
        "map_size": map_size,
        "expiration_days": store.expiration_days,
        "created": iso(created) if isinstance(created, (int, float)) else None,
        "oldest_ctime": iso(min(e.ctime for e in live)) if live else None,
        "newest_ctime": iso(max(e.ctime for e in live)) if live else None,
        "oldest_atime": iso(min(e.atime for e in live)) if live else None,
        "newest_atime": iso(max(e.atime for e in live)) if live else None,
        "open_by_pids": others,
        "functions": [
            {
                "function": name,
                "entries": f["entries"],
                "size": f["size"],
                "versions": sorted(f["versions"]),
                "last_access": iso(f["atime"]),
            }
            for name, f in sorted(functions.items())
        ],
    }
    if args.json:
        _emit_json(info)
        return 0
    rows: list[tuple[str, str]] = [("store", str(path))]
    kind_text = {
        "memoization": f"memoization store ({len(functions)} functions)",
        "mixed": f"dict with memoized entries ({len(functions)} functions)",
        "dict": "dict",
        "empty": "empty",
    }[kind]
    rows.append(("kind", kind_text))
    entries_text = f"{len(live):,}"
    if expired:
        entries_text += f" (+{expired:,} expired, not yet removed: run expire)"
    rows.append(("entries", entries_text))
    rows.append(("stored", f"{human_size(info['stored_bytes'])} in values"))
    reclaim = info["reclaimable_bytes"]
    rows.append(
        (
            "file",
            f"{human_size(on_disk)} on disk, {human_size(used)} in use"
            + (f" ({human_size(reclaim)} reclaimable by compact)" if reclaim else ""),
        )
    )
    rows.append(("map size", human_size(map_size)))
    rows.append(
        (
            "expiration",
            _days_text(store.expiration_days)
            if store.expiration_days
            else "none recorded",
        )
    )
    if isinstance(created, (int, float)):
        rows.append(("created", human_ago(created, now)))
    if live:
        rows.append(
            (
                "entries made",
                f"oldest {human_ago(min(e.ctime for e in live), now)}, "
                f"newest {human_ago(max(e.ctime for e in live), now)}",
            )
        )
        rows.append(
            (
                "last access",
                f"oldest {human_ago(min(e.atime for e in live), now)}, "
                f"newest {human_ago(max(e.atime for e in live), now)}",
            )
        )
    if others:
        rows.append(
            (
                "open by",
                f"{len(others)} other process(es): pids " + ", ".join(map(str, others)),
            )
        )
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    if functions:
        print()
        print(
            table(
                ["FUNCTION", "VERSIONS", "ENTRIES", "SIZE", "LAST ACCESS"],
                [
                    [
                        name,
                        ",".join(v or "-" for v in sorted(f["versions"])),
                        f"{f['entries']:,}",
                        human_size(f["size"]),
                        human_ago(f["atime"], now),
                    ]
                    for name, f in sorted(functions.items())
                ],
                right="23",
            )
        )
    return 0


def _matching_functions(entries: list[Entry], name: str) -> list[str]:
    """Functions named by ``name``: qualname, module:qualname, module.qualname,
    or the whole namespace with its version."""
    found = set()
    for entry in entries:
        if entry.function is None:
            continue
        module, qualname = entry.function.split(":", 1)
        names = {
            qualname,
            entry.function,
            f"{module}.{qualname}",
            f"{entry.function}:{entry.version}",
            f"{entry.function}:{entry.version}:",
        }
        if name in names:
            found.add(entry.function)
    return sorted(found)


def _function_names(entries: list[Entry]) -> str:
    names = sorted({e.function for e in entries if e.function})
    if not names:
        return "this store has no memoized functions"
    shown = ", ".join(names[:10]) + (", …" if len(names) > 10 else "")
    return f"functions in this store: {shown}"


_SORTS: dict[str, tuple[Callable[[Entry], Any], bool]] = {
    "key": (lambda e: e.str_key if e.str_key is not None else e.key_text, False),
    "size": (lambda e: e.size, True),
    "ctime": (lambda e: e.ctime, True),
    "atime": (lambda e: e.atime, True),
}


def cmd_ls(args: argparse.Namespace) -> int:
    path = store_dir(args.path)
    with Store(path, write=False) as store:
        entries = store.entries(label="reading entries")
    if args.function is not None:
        functions = set(_matching_functions(entries, args.function))
        if not functions:
            die(f"no function named {args.function!r}; {_function_names(entries)}")
        entries = [e for e in entries if e.function in functions]
    if args.sort is not None:
        key, newest_first = _SORTS[args.sort]
        entries.sort(key=key, reverse=newest_first)
    if args.reverse:
        entries.reverse()
    total = len(entries)
    if args.limit is not None:
        entries = entries[: args.limit]
    if args.json:
        _emit_json([e.as_json() for e in entries])
        return 0
    if not entries:
        print("(no entries)")
        return 0
    now = time.time()
    memo = any(e.function for e in entries)
    headers = ["KEY", "SIZE", "CREATED", "ACCESSED"]
    rows = [
        [
            e.shown_key(),
            human_size(e.size),
            human_ago(e.ctime, now),
            human_ago(e.atime, now),
        ]
        for e in entries
    ]
    if memo:
        headers = ["FUNCTION", "CALL", *headers[1:], "ARGUMENTS"]
        rows = [
            [e.function or "", *row, shorten(e.preview or "", _PREVIEW)]
            for e, row in zip(entries, rows, strict=True)
        ]
    print(table(headers, rows, right="2" if memo else "1"))
    if total > len(entries):
        print(f"({len(entries):,} of {total:,} entries shown; --limit to see more)")
    return 0


def _literal(node: ast.AST) -> Any:
    """ast.literal_eval, plus ``frozenset(...)`` (which ``ls`` prints)."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "frozenset"
        and not node.keywords
        and len(node.args) <= 1
    ):
        return frozenset(_literal(node.args[0]) if node.args else ())
    if isinstance(node, ast.Tuple):
        return tuple(_literal(item) for item in node.elts)
    if isinstance(node, ast.List):
        return [_literal(item) for item in node.elts]
    if isinstance(node, ast.Set):
        return {_literal(item) for item in node.elts}
    return ast.literal_eval(node)


def parse_key(text: str) -> Any:
    """KEY as a Python literal when it is one, else the text itself."""
    try:
        return _literal(ast.parse(text.strip(), mode="eval").body)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text  # not a literal (a name, a memo key, ...): a str key


def _find_key(store: Store, text: str) -> tuple[Any, bool]:
    """(the stored key KEY names, whether it was matched by prefix)."""
    d = store.dict
    key = parse_key(text)
    try:
        hash(key)
    except TypeError:
        die(
            f"KEY {text} is a {type(key).__name__}, which cannot be a dict key "
            "(unhashable); a tuple (1, 2) or a frozenset can"
        )
    if key in d:
        return key, False
    if text in d:
        return text, False
    candidates = d._keys_with_prefix(text)
    # The CALL column of ls: "[version:]hash-prefix".
    call = re.fullmatch(r"(?:([^:]*):)?([0-9a-f]{6,32})", text)
    if not candidates and call:
        version, digits = call.groups()
        candidates = [
            e.str_key
            for e in store.entries(label="searching")
            if e.call is not None
            and e.call.startswith(digits)
            and (version is None or e.version == version)
            and e.str_key
        ]
    if len(candidates) == 1:
        return candidates[0], True
    if len(candidates) > 1:
        shown = ", ".join(repr(c) for c in candidates[:3])
        die(
            f"KEY {text!r} is ambiguous: {len(candidates)} keys start with it "
            f"({shown}{', …' if len(candidates) > 3 else ''}); give more of it"
        )
    die(
        f"no key {key!r} in {store.path} "
        f"(run 'persistdict ls {store.path}' to list the keys)"
    )


def _json_value(value: Any) -> tuple[bool, Any]:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):  # not JSON data: repr only
        return False, None
    return True, value


def cmd_show(args: argparse.Namespace) -> int:
    path = store_dir(args.path)
    with Store(path, write=False) as store:
        key, by_prefix = _find_key(store, args.key)
        d = store.dict
        meta = d.metadata(key)
        preview = d._note(key)
        try:
            value = d[key]
        except KeyError:
            die(f"the entry {key!r} was removed while it was being read")
        except SignatureError as exc:
            die(f"cannot read the value of {key!r}: {exc}")
        except (
            # What unpickling a value written by a custom value_serializer, or
            # one whose class cannot be imported here, raises.
            ImportError,
            AttributeError,
            EOFError,
            IndexError,
            TypeError,
            ValueError,
            pickle.UnpicklingError,
        ) as exc:
            die(
                f"cannot read the value of {key!r}: {type(exc).__name__}: {exc} "
                "(was it written with a custom value_serializer, or by a class "
                "this Python cannot import?)"
            )
    encoded_text, key_json = describe_key(encode_key(key)[0])
    full_repr = repr(value)
    memo = _MEMO_KEY.fullmatch(key) if isinstance(key, str) else None
    if args.json:
        ok, json_value = _json_value(value)
        out: dict[str, Any] = {
            "key": key_json,
            "key_repr": encoded_text,
            "size": meta.size,
            "ctime": iso(meta.ctime.timestamp()),
            "atime": iso(meta.atime.timestamp()),
            "type": f"{type(value).__module__}.{type(value).__qualname__}",
            "repr": full_repr,
        }
        if memo:
            out["function"] = f"{memo[1]}:{memo[2]}"
            out["version"] = memo[3] or None
            out["call"] = memo[4]
            out["call_preview"] = preview
        if ok:
            out["value"] = json_value
        _emit_json(out)
        return 0
    now = time.time()
    rows = [("key", encoded_text + ("  (matched by prefix)" if by_prefix else ""))]
    if memo:
        rows.append(
            (
                "function",
                f"{memo[1]}:{memo[2]}" + (f" (version {memo[3]})" if memo[3] else ""),
            )
        )
        if preview:
            rows.append(("call", preview))
    rows += [
        (
            "type",
            f"{type(value).__module__}.{type(value).__qualname__}".removeprefix(
                "builtins."
            ),
        ),
        ("size", human_size(meta.size)),
        (
            "created",
            f"{human_ago(meta.ctime.timestamp(), now)} ({iso(meta.ctime.timestamp())})",
        ),
        (
            "accessed",
            f"{human_ago(meta.atime.timestamp(), now)} ({iso(meta.atime.timestamp())})",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    for name, text in rows:
        print(f"{name.ljust(width)}  {text}")
    shown = (
        pprint.pformat(value, width=88, compact=True)
        if len(full_repr) <= 20_000
        else full_repr
    )
    if len(shown) > _VALUE_PREVIEW:
        shown = (
            shown[:_VALUE_PREVIEW]
            + f"… ({len(shown) - _VALUE_PREVIEW:,} more characters; --json prints all)"
        )
    print("value:")
    print(shown)
    return 0


def cmd_expire(args: argparse.Namespace) -> int:
    path = store_dir(args.path)
    _writable(path, "expire entries of")
    with Store(path, write=True) as store:
        days = args.days if args.days is not None else store.expiration_days
        if days is None:
            die(
                f"{path} records no expiration setting: pass --days N to remove "
                "the entries not accessed for N days"
            )
        progress = Progress("removing expired entries")

        def count(entry_id: bytes, meta: Any) -> bool:
            progress.add()
            return True

        d = store.dict
        # This handle alone looks at entries through a window of ``days``; the
        # store's recorded setting is left as it was.
        d._expire_seconds = days * _DAY
        try:
            removed = d._expire_where(count)
        finally:
            progress.done()
    if args.json:
        _emit_json({"path": str(path), "days": days, "removed": removed})
    else:
        print(
            f"removed {removed:,} entr{'y' if removed == 1 else 'ies'} not accessed "
            f"for {_days_text(days)}"
        )
    return 0


def _confirm(question: str) -> bool:
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def cmd_clear(args: argparse.Namespace) -> int:
    path = store_dir(args.path)
    _writable(path, "clear")
    with Store(path, write=True) as store:
        entries = store.entries(label="reading entries", include_expired=True)
        d = store.dict
        if args.function is not None:
            functions = _matching_functions(entries, args.function)
            if not functions:
                die(f"no function named {args.function!r}; {_function_names(entries)}")
            if len(functions) > 1:
                die(
                    f"{args.function!r} names {len(functions)} functions "
                    f"({', '.join(functions)}): pass module:qualname"
                )
            function = functions[0]
            size = sum(e.size for e in entries if e.function == function)
            namespaces = sorted(
                {f"{function}:{e.version}:" for e in entries if e.function == function}
            )
            removed = sum(d._delete_prefix(ns) for ns in namespaces)
            what = f"of {function}"
        else:
            size = sum(e.size for e in entries)
            if not entries:
                removed = 0
            elif not args.yes and not _confirm(
                f"remove all {len(entries):,} entries ({human_size(size)}) from {path}?"
            ):
                die("nothing removed (answer y, or pass --yes)")
            else:
                removed = len(d)
                d.clear()
            function = None
            what = "in all"
    if args.json:
        _emit_json(
            {"path": str(path), "function": function, "removed": removed, "size": size}
        )
    else:
        print(
            f"removed {removed:,} entr{'y' if removed == 1 else 'ies'} "
            f"({human_size(size)}) {what}"
        )
    return 0


def _db_counts(env: lmdb.Environment) -> dict[bytes, int]:
    counts = {}
    with env.begin() as txn:
        names = []
        rows = places = 0  # in the main database (see _env)
        for key in txn.cursor().iternext(values=False):
            if is_entry_id(key):
                rows += 1
            elif key[0] == ORDER_TAG:
                places += 1
            else:
                names.append(key)
        # (b"values", b"order": earlier formats', moved at the next writable open)
        if not set(DB_NAMES) <= set(names) <= {*DB_NAMES, b"values", b"order"}:
            die(
                f"{env.path()} is an LMDB environment but not a persistdict store "
                f"(its databases are {names[:6]!r})"
            )
        counts[b""] = rows
        counts[b"\x1f"] = places
        for name in names:
            db = env.open_db(name, txn=txn, create=False)
            counts[name] = int(txn.stat(db)["entries"])
    return counts


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_raw(path: Path, map_size: int, *, lock: bool) -> lmdb.Environment:
    return lmdb.open(
        str(path),
        map_size=map_size,
        subdir=True,
        readonly=True,
        lock=lock,
        max_dbs=len(DB_NAMES) + 2,  # + earlier formats' databases
        max_readers=MAX_READERS,
        max_spare_txns=0,
    )


def cmd_compact(args: argparse.Namespace) -> int:
    path = store_dir(args.path)
    if os.path.realpath(path) in _REGISTRY:
        die(
            f"{path} is open in this process: close it (d.close()) before compacting it"
        )
    _writable(path, "compact")
    _check_ownership(path, False)
    data_file = path / "data.mdb"
    lock_file = path / "lock.mdb"
    _check_data_file(data_file)
    # Every process that has the store open holds a shared fcntl lock on byte 0
    # of lock.mdb, and an opener waits for it: holding it exclusively proves
    # nobody else has the store open and keeps newcomers out until the swap is
    # done. (Closing any descriptor of lock.mdb drops this process's locks on
    # it, hence one descriptor, and environments opened without a lock file.)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
            users = store_users(path)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            users = store_users(path) or [0]
        if users:
            who = (
                "another process"
                if users == [0]
                else f"{len(users)} other process(es) (pids "
                + ", ".join(map(str, users))
                + ")"
            )
            die(
                f"{path} is open in {who}: compacting would swap the file under "
                "them; close the other processes first, then run compact again"
            )
        before = data_file.stat().st_size
        _psize, map_size, _last_pg, _txnid = read_meta_page(data_file)
        tmp = Path(tempfile.mkdtemp(prefix=".compact-", dir=path))
        try:
            if sys.stderr.isatty():
                sys.stderr.write(f"compacting {human_size(before)}…")
                sys.stderr.flush()
            env = _open_raw(path, map_size, lock=False)
            try:
                counts = _db_counts(env)
                env.copy(str(tmp), compact=True)
            finally:
                env.close()
            copy = tmp / "data.mdb"
            env = _open_raw(tmp, map_size, lock=False)
            try:
                copied = _db_counts(env)
            finally:
                env.close()
            if copied != counts:
                die(
                    f"the compacted copy of {path} does not hold the same entries "
                    f"({copied} instead of {counts}); the store was left as it was"
                )
            os.chmod(copy, stat.S_IMODE(data_file.stat().st_mode))
            _fsync(copy)
            os.replace(copy, data_file)
            _fsync(path, directory=True)
        finally:
            if sys.stderr.isatty():
                sys.stderr.write("\r\033[K")
            shutil.rmtree(tmp, ignore_errors=True)
        # The copy restarts transaction ids at 1: open it once with the lock
        # file while still holding byte 0, so LMDB re-initialises the lock file
        # from the new meta pages before any waiting opener attaches to it.
        env = _open_raw(path, map_size, lock=True)
        try:
            if _db_counts(env) != counts:
                die(f"{path} does not read back as compacted; check it with info")
        finally:
            env.close()
    finally:
        os.close(fd)
    after = data_file.stat().st_size
    if args.json:
        _emit_json({"path": str(path), "before": before, "after": after})
    else:
        saved = before - after
        print(
            f"compacted {path}: {human_size(before)} -> {human_size(after)} "
            f"({human_size(max(saved, 0))} freed)"
        )
    return 0


# ---------------------------------------------------------------- main


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 (1/24 is an hour), got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Look inside a persistdict store, expire it, clear it, compact it.",
        epilog=(
            "PATH is a store directory (the one given to PersistDict or "
            "@persist_cache; the default store of a bare @persist_cache is "
            "$PERSISTDICT_CACHE_DIR, else $XDG_CACHE_HOME/persistdict or "
            "~/.cache/persistdict). info, ls and "
            "show open it read-only."
        ),
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("info", parents=[common], help="what a store holds")
    p.add_argument("path", metavar="PATH")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("ls", parents=[common], help="list entries")
    p.add_argument("path", metavar="PATH")
    p.add_argument(
        "--limit", type=_positive_int, metavar="N", help="show at most N entries"
    )
    p.add_argument(
        "--sort",
        choices=sorted(_SORTS),
        help="order by key, or size/ctime/atime (largest or newest first); "
        "default: insertion order",
    )
    p.add_argument("--reverse", action="store_true", help="reverse the order")
    p.add_argument(
        "--function",
        metavar="NAME",
        help="only this memoized function's entries (qualname or module:qualname)",
    )
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser(
        "show",
        parents=[common],
        help="print one value",
        description=(
            "Print the value of KEY. KEY is read as a Python literal when it is "
            "one (42, 'a b', (1, 2), b'x', None), else as a str; so the str '42' "
            "is written \"'42'\". If that finds nothing, the text is tried as a "
            "str, then as the unique prefix of a str key or of a memoized call's "
            "hash (the CALL column of ls)."
        ),
    )
    p.add_argument("path", metavar="PATH")
    p.add_argument("key", metavar="KEY", help="a Python literal, or a str")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser(
        "expire", parents=[common], help="remove entries not accessed for N days"
    )
    p.add_argument("path", metavar="PATH")
    p.add_argument(
        "--days",
        type=_positive_days,
        metavar="N",
        help="days without access (floats allowed); default: the store's setting",
    )
    p.set_defaults(func=cmd_expire)

    p = sub.add_parser(
        "clear", parents=[common], help="remove everything, or one function's entries"
    )
    p.add_argument("path", metavar="PATH")
    p.add_argument(
        "--function",
        metavar="NAME",
        help="only this memoized function's entries, every version (no question asked)",
    )
    p.add_argument(
        "--yes", "-y", action="store_true", help="clear everything without asking"
    )
    p.set_defaults(func=cmd_clear)

    p = sub.add_parser(
        "compact",
        parents=[common],
        help="shrink the file (refuses while other processes have the store open)",
    )
    p.add_argument("path", metavar="PATH")
    p.set_defaults(func=cmd_compact)
    return parser


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{PROG}: {record.levelname.lower()}: " + " ".join(
            record.getMessage().split()
        )


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    logger = logging.getLogger("persistdict")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    handler.setLevel(logging.WARNING)
    # The core raises after logging an error: the exception's line says it.
    handler.addFilter(lambda record: record.levelno < logging.ERROR)
    logger.addHandler(handler)
    try:
        func: Callable[[argparse.Namespace], int] = args.func
        return func(args)
    except _Exit as exc:
        return exc.code
    except BrokenPipeError:
        # The reader went away (ls | head): stop quietly, as a C tool would.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except PersistDictError as exc:
        return _fail(str(exc))
    except lmdb.Error as exc:
        return _fail(f"{args.path}: LMDB error: {exc}")
    except OSError as exc:
        where = exc.filename or args.path
        reason = exc.strerror or str(exc)
        hint = (
            " (the store or its directory is read-only for you)"
            if isinstance(exc, PermissionError)
            else ""
        )
        return _fail(f"{where}: {reason}{hint}")
    finally:
        logger.removeHandler(handler)


def _fail(msg: str) -> int:
    try:
        die(msg)
    except _Exit as exc:
        return exc.code
