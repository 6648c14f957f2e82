"""Security: private files, refused foreign stores, signed values, encrypted keys.

The threat: values are unpickled, so whoever can write a store's files can run
code in every process that reads it. These tests play that attacker with py-lmdb
and raw file edits, and check what persistdict promises in SECURITY.md.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import pickle
import stat
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb
import pytest
import xxhash

from persistdict import (
    PersistDict,
    SignatureError,
    UnsafeStoreError,
)

SECRET = b"s3cr3t-signing-key-for-tests"
SRC = str(Path(__file__).resolve().parents[1] / "src")


class Evil:
    """A value whose unpickling touches a marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def _raw_edit(path: Path, edit: Callable[[Any, dict[str, Any]], None]) -> None:
    """Change a (closed) store with py-lmdb directly, as an attacker would."""
    env = lmdb.open(str(path), max_dbs=8)
    try:
        dbs = {"atimes": env.open_db(b"atimes")}
        dbs["values"] = env.open_db(None)  # the rows are in the main database
        with env.begin(write=True) as txn:
            edit(txn, dbs)
    finally:
        env.close()


# An entry's id begins with a byte below 0x20; the main database's other keys
# are the names of the named databases and the insertion order (0xff + place).
def _is_entry(key: bytes) -> bool:
    return key[0] < 0x20


# A row (in the main database): a metadata header (flags, seq, ctime, written and
# three lengths, then what they measure: nothing for a str key), then the record.
_ROW_HEADER = struct.Struct("<BQddIHI")


def _record_start(row: bytes) -> int:
    return _ROW_HEADER.size + sum(_ROW_HEADER.unpack_from(row)[4:])


def _records(path: Path) -> dict[bytes, bytes]:
    """Each entry's record (its row without the metadata)."""
    env = lmdb.open(str(path), max_dbs=8, readonly=True)
    try:
        with env.begin() as txn:
            return {
                entry_id: row[_record_start(row) :]
                for entry_id, row in txn.cursor()
                if _is_entry(entry_id)
            }
    finally:
        env.close()


def _run(code: str, env: dict[str, str] | None = None) -> str:
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = SRC
    full_env.pop("PERSISTDICT_SECRET", None)
    full_env.update(env or {})
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(autouse=True)
def _no_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERSISTDICT_SECRET", raising=False)


# -- permissions ------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_store_directory_is_0700_and_every_file_0600_whatever_the_umask(
    tmp_path: Path, umask: int
) -> None:
    path = tmp_path / "store"
    _run(
        f"""
        import os
        os.umask({umask})
        from persistdict import PersistDict, persist_cache
        with PersistDict({str(path)!r}) as d:
            d["k"] = "v"
        @persist_cache({str(path)!r})
        def f(x):
            return x
        f(1)
        """
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    files = sorted(path.iterdir())
    assert {f.name for f in files} >= {"data.mdb", "lock.mdb"}
    for item in files:
        assert stat.S_IMODE(item.stat().st_mode) == 0o600, item


needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown needs root"
)


@needs_root
@pytest.mark.parametrize("owned", [".", "data.mdb", "lock.mdb"])
def test_store_owned_by_another_user_is_refused(tmp_path: Path, owned: str) -> None:
    path = tmp_path / "store"
    with PersistDict(path) as d:
        d["k"] = "v"
    os.chown(path / owned, 65534, 65534)
    with pytest.raises(UnsafeStoreError, match="uid 65534") as info:
        PersistDict(path)
    assert isinstance(info.value, PermissionError)
    assert "allow_unsafe_permissions=True" in str(info.value)
    with PersistDict(path, allow_unsafe_permissions=True) as d:
        assert d["k"] == "v"


@pytest.mark.parametrize(
    ("item", "mode"),
    [
        (".", 0o777),
        (".", 0o770),
        (".", 0o702),
        ("data.mdb", 0o666),
        ("data.mdb", 0o620),
        ("lock.mdb", 0o602),
    ],
)
def test_store_writable_by_others_is_refused(
    tmp_path: Path, item: str, mode: int
) -> None:
    path = tmp_path / "store"
    with PersistDict(path) as d:
        d["k"] = "v"
    (path / item).chmod(mode)
    before = (path / "data.mdb").read_bytes()
    with pytest.raises(UnsafeStoreError, match="written by other users"):
        PersistDict(path)
    assert (path / "data.mdb").read_bytes() == before  # refused before any write
    with PersistDict(path, allow_unsafe_permissions=True) as d:
        assert d["k"] == "v"


def test_an_empty_directory_writable_by_others_gets_no_store(tmp_path: Path) -> None:
    path = tmp_path / "shared"
    path.mkdir()
    path.chmod(0o777)
    with pytest.raises(UnsafeStoreError):
        PersistDict(path)
    assert list(path.iterdir()) == []


def test_a_second_handle_rechecks_permissions(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with PersistDict(path):
        path.chmod(0o777)
        with pytest.raises(UnsafeStoreError):
            PersistDict(path)
        path.chmod(0o700)


# -- signed values ------------------------------------------------------------------


def test_secret_signs_every_record(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with PersistDict(path, secret=SECRET) as d:
        d.update({"a": 1, ("t", 2): [1, 2], "x" * 600: b"long key", 3: None})
        d.setdefault("s", {"d": 1})
        assert d[("t", 2)] == [1, 2]
    records = _records(path)
    assert len(records) == 5
    for entry_id, record in records.items():
        payload = record[33:]
        # The signing key is derived from the secret (any length works).
        key = hashlib.blake2b(
            SECRET, digest_size=64, person=b"persistdict.key"
        ).digest()
        mac = hashlib.blake2b(key=key, digest_size=32)
        # A long key's id (0x1e + hash + counter) is signed as store formats 2
        # and 3 wrote it: 0xff + hash + counter.
        signed_id = b"\xff" + entry_id[1:] if entry_id[0] == 0x1E else entry_id
        mac.update(len(entry_id).to_bytes(4, "big") + signed_id + payload)
        assert record[0] == 1
        assert hmac.compare_digest(record[1:33], mac.digest())


def test_secret_from_the_environment_signs_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store"
    monkeypatch.setenv("PERSISTDICT_SECRET", SECRET.decode())
    with PersistDict(path) as d:
        d["k"] = "from the environment"
    assert all(record[0] == 1 for record in _records(path).values())
    monkeypatch.delenv("PERSISTDICT_SECRET")
    with PersistDict(path, secret=SECRET) as d:
        assert d["k"] == "from the environment"
    with PersistDict(path) as d, pytest.raises(SignatureError, match="secret="):
        d["k"]


def test_a_wrong_secret_is_rejected_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "store"
    with PersistDict(path, secret=SECRET) as d:
        d["k"] = "v"
    caplog.set_level(logging.ERROR, logger="persistdict")
    with PersistDict(path, secret=b"another secret") as d:
        with pytest.raises(SignatureError):
            d["k"]
        with pytest.raises(SignatureError):
            d.get("k")
        with pytest.raises(SignatureError):
            list(d.items())
        with pytest.raises(SignatureError):
            list(d.values())
        with pytest.raises(SignatureError):
            d.copy()
        assert "k" in d  # keys and membership stay readable
        assert list(d) == ["k"]
    assert any("did not verify" in r.getMessage() for r in caplog.records)


def _flip_payload_byte(txn: Any, dbs: dict[str, Any]) -> None:
    record = bytearray(txn.get(b"\x01k", db=dbs["values"]))
    record[-1] ^= 0x01
    txn.put(b"\x01k", bytes(record), db=dbs["values"])


def test_a_flipped_byte_in_a_signed_record_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with PersistDict(path, secret=SECRET) as d:
        d["k"] = "value"
        d["other"] = "fine"
    _raw_edit(path, _flip_payload_byte)
    with PersistDict(path, secret=SECRET) as d:
        with pytest.raises(SignatureError, match="signature"):
            d["k"]
        assert d["other"] == "fine"


@pytest.mark.parametrize("how", ["keep-signature", "unsigned-record", "moved-record"])
def test_a_planted_pickle_is_never_unpickled_with_a_secret(
    tmp_path: Path, how: str
) -> None:
    path = tmp_path / "store"
    marker = tmp_path / "code-ran"
    with PersistDict(path, secret=SECRET) as d:
        d["k"] = "innocent"
        d["planted"] = "signed by us, for another key"
    evil = pickle.dumps(Evil(marker))

    def plant(txn: Any, dbs: dict[str, Any]) -> None:
        row = txn.get(b"\x01k", db=dbs["values"])
        header = row[: _ROW_HEADER.size]
        if how == "keep-signature":  # the attacker cannot sign: keeps the old MAC
            new = row[: _ROW_HEADER.size + 33] + evil
        elif how == "unsigned-record":  # downgrade to an unsigned, checksummed record
            new = header + b"\x00" + xxhash.xxh3_64_digest(evil, seed=2) + evil
        else:  # a validly signed row of another key, moved under this one
            new = txn.get(b"\x01planted", db=dbs["values"])
        txn.put(b"\x01k", new, db=dbs["values"])

    _raw_edit(path, plant)
    with PersistDict(path, secret=SECRET) as d:
        for read in (
            lambda: d["k"],
            lambda: d.get("k"),
            lambda: dict(d.items()),
            lambda: d.pop("k"),
        ):
            with pytest.raises(SignatureError):
                read()
    assert not marker.exists()


def test_without_a_secret_write_access_is_code_execution(tmp_path: Path) -> None:
    """The threat model, shown: a checksum is no defence against an attacker."""
    path = tmp_path / "store"
    marker = tmp_path / "code-ran"
    with PersistDict(path) as d:
        d["k"] = "innocent"
    evil = pickle.dumps(Evil(marker))

    def plant(txn: Any, dbs: dict[str, Any]) -> None:
        header = txn.get(b"\x01k", db=dbs["values"])[: _ROW_HEADER.size]
        record = b"\x00" + xxhash.xxh3_64_digest(evil, seed=2) + evil
        txn.put(b"\x01k", header + record, db=dbs["values"])

    _raw_edit(path, plant)
    with PersistDict(path) as d:
        d["k"]
    assert marker.exists()  # this is why SECURITY.md says: use secret=


def test_editing_the_raw_data_file_of_a_signed_store_is_rejected(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store"
    secret_value = b"RAW-FILE-VALUE-" * 10
    with PersistDict(path, secret=SECRET) as d:
        d["k"] = secret_value
        d["other"] = 42
    data = bytearray((path / "data.mdb").read_bytes())
    at = data.find(secret_value)
    assert at > 0
    while at >= 0:  # copy-on-write leaves older copies on free pages: edit all
        data[at + 5] ^= 0x20
        at = data.find(secret_value, at + 1)
    (path / "data.mdb").write_bytes(bytes(data))
    with PersistDict(path, secret=SECRET) as d:
        with pytest.raises(SignatureError):
            d["k"]
        assert d["other"] == 42


def test_the_decorator_recomputes_a_record_that_does_not_verify(tmp_path: Path) -> None:
    path = tmp_path / "store"
    calls = tmp_path / "calls"
    program = f"""
        import logging, sys
        logging.basicConfig(stream=sys.stdout, level=logging.ERROR)
        from persistdict import persist_cache
        @persist_cache({str(path)!r})
        def f(x):
            with open({str(calls)!r}, "a") as fh:
                fh.write("call\\n")
            return x * 2
        print("RESULT", f(21))
    """
    env = {"PERSISTDICT_SECRET": SECRET.decode()}
    assert "RESULT 42" in _run(program, env)
    assert "RESULT 42" in _run(program, env)
    assert calls.read_text().count("call") == 1  # the second run was a hit

    def tamper(txn: Any, dbs: dict[str, Any]) -> None:
        for entry_id, record in list(txn.cursor(db=dbs["values"])):
            if _is_entry(entry_id):
                record = record[:-1] + bytes([record[-1] ^ 1])
                txn.put(entry_id, record, db=dbs["values"])

    _raw_edit(path, tamper)
    out = _run(program, env)
    assert "RESULT 42" in out
    assert "did not verify" in out  # logged
    assert calls.read_text().count("call") == 2  # a miss: recomputed
    assert "RESULT 42" in _run(program, env)
    assert calls.read_text().count("call") == 2  # and stored again, signed


def test_a_pickled_handle_carries_an_explicit_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with PersistDict(tmp_path / "a", secret=SECRET) as d:
        assert SECRET in pickle.dumps(d)  # SECURITY.md: treat such pickles as secrets
    monkeypatch.setenv("PERSISTDICT_SECRET", SECRET.decode())
    with PersistDict(tmp_path / "b") as d:
        assert SECRET not in pickle.dumps(d)  # the receiver reads its own environment


def test_a_planted_key_pickle_is_never_unpickled_with_a_secret(tmp_path: Path) -> None:
    path = tmp_path / "store"
    marker = tmp_path / "code-ran"
    with PersistDict(path, secret=SECRET) as d:
        d[("tuple", "key")] = "v"
    evil = pickle.dumps(Evil(marker))

    def plant(txn: Any, dbs: dict[str, Any]) -> None:
        for entry_id, row in list(txn.cursor(db=dbs["values"])):
            if not _is_entry(entry_id):
                continue
            flags, seq, ctime, written, full, note, original = _ROW_HEADER.unpack_from(
                row
            )
            assert flags & 1  # bit 0: the original key's bytes follow
            start = _ROW_HEADER.size + full + note
            record = row[start + original :]
            header = _ROW_HEADER.pack(flags, seq, ctime, written, full, note, len(evil))
            new = header + row[_ROW_HEADER.size : start] + evil + record
            txn.put(entry_id, new, db=dbs["values"])

    _raw_edit(path, plant)
    with PersistDict(path, secret=SECRET) as d:
        try:
            list(d)
        except SignatureError:
            pass  # refusing is right; running the pickle is not
    assert not marker.exists()


def test_a_long_passphrase_in_the_environment_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERSISTDICT_SECRET", "correct horse battery staple " * 4)
    with PersistDict(tmp_path / "store") as d:
        d["k"] = "v"
        assert d["k"] == "v"


# -- encryption through serializers ---------------------------------------------------


class _ToyCipher:
    """Deterministic authenticated encryption from the stdlib, for this test only.

    SIV-like: the IV is an HMAC of the plaintext (so equal keys encrypt equally,
    which key lookups need), the keystream is HMAC-SHA256(key, iv || counter),
    and the IV doubles as the tag. Not for real use: the README shows a real one.
    """

    def __init__(self, key: bytes) -> None:
        self.enc_key = hmac.new(key, b"enc", hashlib.sha256).digest()
        self.mac_key = hmac.new(key, b"mac", hashlib.sha256).digest()

    def _stream(self, iv: bytes, n: int) -> bytes:
        blocks = (n + 31) // 32
        return b"".join(
            hmac.new(self.enc_key, iv + i.to_bytes(8, "big"), hashlib.sha256).digest()
            for i in range(blocks)
        )[:n]

    def encrypt(self, plain: bytes) -> bytes:
        iv = hmac.new(self.mac_key, plain, hashlib.sha256).digest()[:16]
        return iv + bytes(
            a ^ b for a, b in zip(plain, self._stream(iv, len(plain)), strict=True)
        )

    def decrypt(self, blob: bytes) -> bytes:
        iv, body = blob[:16], blob[16:]
        plain = bytes(
            a ^ b for a, b in zip(body, self._stream(iv, len(body)), strict=True)
        )
        expected = hmac.new(self.mac_key, plain, hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(iv, expected):
            raise ValueError("ciphertext does not authenticate")
        return plain


def test_no_plaintext_key_or_value_in_the_files_with_encrypting_serializers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store"
    cipher = _ToyCipher(b"k" * 32)
    options: dict[str, Any] = {
        "key_serializer": lambda key: cipher.encrypt(pickle.dumps(key, protocol=5)),
        "key_unserializer": lambda blob: pickle.loads(cipher.decrypt(blob)),
        "value_serializer": lambda value: cipher.encrypt(
            pickle.dumps(value, protocol=5)
        ),
        "value_unserializer": lambda blob: pickle.loads(cipher.decrypt(blob)),
    }
    secret_key = "patient-0042-diagnosis-TOPSECRETKEY"
    tuple_key = ("account", "TOPSECRETTUPLE-991")
    long_key = "TOPSECRETLONGKEY-" * 40  # > 511 bytes: stored under a hash
    secret_value = "the value is HUNTER2-TOPSECRETVALUE"
    with PersistDict(path, **options) as d:
        d[secret_key] = secret_value
        d[tuple_key] = {"balance": "TOPSECRETNESTED-123"}
        d[long_key] = [secret_value]
        d["temporary-TOPSECRETGONE"] = "TOPSECRETGONEVALUE"
        del d["temporary-TOPSECRETGONE"]  # free pages must not leak it either
        d.update({f"bulk-TOPSECRETBULK-{i}": i for i in range(100)})
    with PersistDict(path, **options) as d:  # round-trips
        assert d[secret_key] == secret_value
        assert set(d) >= {secret_key, tuple_key, long_key}
        assert d[long_key] == [secret_value]
    raw = b"".join(item.read_bytes() for item in path.iterdir() if item.is_file())
    assert len(raw) > 0
    for needle in (
        b"TOPSECRET",
        secret_key.encode(),
        b"HUNTER2",
        b"patient",
        b"account",
        b"balance",
        b"bulk-",
    ):
        assert needle not in raw, needle
    assert pickle.dumps(secret_key, protocol=5) not in raw


@pytest.mark.parametrize("keep", ["header", "nothing"])
def test_a_row_cut_short_raises_signature_error_and_the_decorator_recomputes(
    tmp_path: Path, keep: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A damaged store: rows cut to their metadata, or to nothing. Reads raise
    # SignatureError (logged) like any record that does not verify, never an
    # IndexError, so that persist_cache counts them as misses.
    from persistdict import persist_cache

    path = tmp_path / "store"
    calls: list[int] = []

    @persist_cache(path)
    def double(x: int) -> int:
        calls.append(x)
        return x * 2

    d = PersistDict(path)
    d["small"] = [1, 2]
    d["big"] = bytes(20_000)  # unpickled from a view of its row
    assert double(21) == 42
    assert double(21) == 42
    assert calls == [21]
    # Cut in place, through this process's environment (a second one cannot be
    # opened); the commit makes every memory layer look at the store again.
    env = d._env
    with env.env.begin(write=True) as txn:
        for entry_id, row in list(txn.cursor(db=env.values)):
            if not _is_entry(entry_id):
                continue
            kept = row[: _record_start(row)] if keep == "header" else b""
            txn.put(entry_id, kept, db=env.values)
    with caplog.at_level(logging.ERROR, "persistdict"):
        for key in ("small", "big"):
            with pytest.raises(SignatureError):
                d[key]
            with pytest.raises(SignatureError):
                d.get(key)
        assert "did not verify" in caplog.text
    assert double(21) == 42
    assert calls == [21, 21]  # a miss: recomputed, and stored again
    assert double(21) == 42
    assert calls == [21, 21]
    # Writing over a damaged entry, or deleting it, repairs the store.
    d["small"] = [3]
    assert d["small"] == [3]
    del d["big"]
    assert "big" not in d
    keys = list(d)
    assert keys.count("small") == 1
    assert len(keys) == len(d) == 2  # with the memoized call
    d.close()


@pytest.mark.parametrize("keep", [0, 10, 30])
def test_a_row_cut_within_its_header_is_a_clear_error_everywhere(
    tmp_path: Path, keep: int
) -> None:
    # Every path that reads a row's metadata (iteration of keys that are not
    # their own ids, metadata(), a read) says the row is damaged, with what to
    # do, instead of raising struct.error or IndexError; expiration, which
    # cannot know its age, keeps it; a delete removes it.
    path = tmp_path / "store"
    with PersistDict(path, expiration_days=30) as d:
        d[("t", 1)] = "tuple key"
        d["s"] = "str key"

    def cut(txn: Any, dbs: dict[str, Any]) -> None:
        for entry_id, row in list(txn.cursor(db=dbs["values"])):
            if _is_entry(entry_id) and entry_id[0] != 0x01:  # not the str key
                txn.put(entry_id, row[:keep], db=dbs["values"])

    _raw_edit(path, cut)
    with PersistDict(path, expiration_days=30) as d:  # (the sweep at open too)
        for use in (list, lambda d: d.metadata(("t", 1)), lambda d: d[("t", 1)]):
            with pytest.raises(SignatureError, match=r"damaged|did not verify"):
                use(d)
        assert len(d) == 2  # not expired: its age is unknown
        assert d.expire() == 0
        assert d["s"] == "str key"
        del d[("t", 1)]  # removes the damaged entry
        assert list(d.items()) == [("s", "str key")]
        assert len(d) == 1
