"""What is at the path: new stores, garbage, truncated files, permissions."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import lmdb
import pytest

from persistdict import PersistDict, StoreCorruptedError, UnsafeStoreError

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_new_store_is_private(store_path: Path) -> None:
    with PersistDict(store_path) as d:
        d["a"] = 1
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o700
    for name in ("data.mdb", "lock.mdb"):
        assert stat.S_IMODE((store_path / name).stat().st_mode) == 0o600


def test_a_file_at_the_path_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"garbage")
    with pytest.raises(StoreCorruptedError, match="is a file"):
        PersistDict(path)
    assert path.read_bytes() == b"garbage"


@pytest.mark.parametrize(
    "content",
    [os.urandom(3 * 4096), b"\0" * 8192, b"short"],
    ids=["random", "zeros", "short"],
)
def test_garbage_data_file_is_a_clear_error(store_path: Path, content: bytes) -> None:
    store_path.mkdir(mode=0o700)
    (store_path / "data.mdb").write_bytes(content)
    with pytest.raises(StoreCorruptedError, match=r"data\.mdb|LMDB"):
        PersistDict(store_path)
    assert (store_path / "data.mdb").read_bytes() == content


def test_truncated_data_file_is_refused_without_a_crash(
    store_path: Path, run_py: Any
) -> None:
    with PersistDict(store_path) as d:
        d.update({i: os.urandom(3000) for i in range(200)})
    data = store_path / "data.mdb"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 3])
    # In a subprocess: a SIGBUS would kill it, and we would see the signal.
    proc = run_py(
        """
import sys
from persistdict import PersistDict, StoreCorruptedError
try:
    PersistDict(sys.argv[1])
except StoreCorruptedError as exc:
    print("refused:", exc)
""",
        str(store_path),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "refused:" in proc.stdout
    assert "truncated" in proc.stdout


@pytest.mark.parametrize(
    "their_key",
    [b"their-key", (7).to_bytes(8, "big"), b"\x01like an id", b"\xff" * 20],
    ids=["text", "packed-int", "id-like", "hash-like"],
)
def test_foreign_lmdb_environment_is_not_taken_over(
    tmp_path: Path, their_key: bytes
) -> None:
    # Also when its keys look like entry ids (the rows of a store share the
    # main database with its named databases' records).
    path = tmp_path / "other"
    env = lmdb.open(str(path), mode=0o700)
    with env.begin(write=True) as txn:
        txn.put(their_key, b"their-value")
    env.close()
    path.chmod(0o700)
    with pytest.raises(StoreCorruptedError, match="not a persistdict store"):
        PersistDict(path)
    env = lmdb.open(str(path))
    with env.begin() as txn:
        assert txn.get(their_key) == b"their-value"
        assert txn.get(b"order") is None  # nothing was created
    env.close()


def test_store_of_an_earlier_format_is_refused_untouched(tmp_path: Path) -> None:
    # Format 1 kept metadata in a database of its own, named "meta".
    path = tmp_path / "old"
    env = lmdb.open(str(path), mode=0o700, max_dbs=8)
    with env.begin(write=True) as txn:
        for name in (b"values", b"meta", b"order", b"internal", b"settings"):
            env.open_db(name, txn=txn)
    values = env.open_db(b"values")
    with env.begin(write=True) as txn:
        txn.put(b"\x01k", b"an old row", db=values)
    env.close()
    with pytest.raises(StoreCorruptedError, match=r"store format 1.*delete"):
        PersistDict(path)
    env = lmdb.open(str(path), max_dbs=8)
    with env.begin() as txn:
        assert txn.get(b"\x01k", db=env.open_db(b"values", txn=txn)) == b"an old row"
        assert txn.get(b"atimes") is None  # nothing was created
    env.close()


def _to_format_2(path: Path) -> None:
    """Rewrite a (closed) store as format 2 wrote it: the same rows, in a
    database named "values" instead of the main database."""
    env = lmdb.open(str(path), max_dbs=8)
    with env.begin(write=True) as txn:
        internal = env.open_db(b"internal", txn=txn)
        values = env.open_db(b"values", txn=txn)
        rows = [
            (key, row)
            for key, row in txn.cursor()
            if key[0] < 0x20 or key[0] == 0xFF  # an entry, not a database's name
        ]
        for key, row in rows:
            txn.delete(key)
            txn.put(key, row, db=values)
        txn.put(b"format", (2).to_bytes(8, "big"), db=internal)
    env.close()


def test_a_format_2_store_is_moved_to_format_3_with_every_entry(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store"
    long_key = "k" * 600  # stored under its hash
    expected: dict[Any, Any] = {"a": 1, b"b": [2], (3, "c"): {"d": 4}, long_key: 5}
    with PersistDict(path, expiration_days=30) as d:
        d.update(expected)
        d._set_with_note("noted", "v", "a note")
        expected["noted"] = "v"
        before = {key: d.metadata(key) for key in expected}
    _to_format_2(path)
    with pytest.raises(StoreCorruptedError, match=r"format 2.*without readonly"):
        PersistDict(path, readonly=True)
    with PersistDict(path, expiration_days=30) as d:
        assert list(d.items()) == list(expected.items())  # order kept
        assert {key: d.metadata(key).ctime for key in expected} == {
            key: meta.ctime for key, meta in before.items()
        }
        assert d._note("noted") == "a note"
        assert d.expire() == 0
        d["e"] = 6
        del d["a"]
        assert list(d) == [b"b", (3, "c"), long_key, "noted", "e"]
    env = lmdb.open(str(path), max_dbs=8, readonly=True)
    with env.begin() as txn:
        assert txn.get(b"values") is None  # the old database is gone
    env.close()
    with PersistDict(path, readonly=True) as d:
        assert d[long_key] == 5
        assert len(d) == 5


def test_an_empty_values_database_left_in_a_format_3_store_is_dropped(
    tmp_path: Path,
) -> None:
    # An earlier persistdict creates its databases, "values" among them, before
    # it finds a newer format and refuses the store.
    path = tmp_path / "store"
    with PersistDict(path) as d:
        d["k"] = 1
    env = lmdb.open(str(path), max_dbs=8)
    env.open_db(b"values")
    env.close()
    with PersistDict(path, readonly=True) as d:
        assert d["k"] == 1
    with PersistDict(path) as d:
        assert dict(d) == {"k": 1}
    env = lmdb.open(str(path), max_dbs=8, readonly=True)
    with env.begin() as txn:
        assert txn.get(b"values") is None
    env.close()


def test_two_processes_opening_a_format_2_store_move_it_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store"
    with PersistDict(path) as d:
        d.update({f"k{i}": i for i in range(2000)})
    _to_format_2(path)
    program = (
        "import sys; from persistdict import PersistDict\n"
        "d = PersistDict(sys.argv[1])\n"
        "assert len(d) == 2000 and d['k1999'] == 1999, len(d)\n"
        "print(sum(d.values()))\n"
    )
    children = [
        subprocess.Popen(
            [sys.executable, "-c", program, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": SRC},
        )
        for _ in range(2)
    ]
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        assert out.strip() == str(sum(range(2000)))
    with PersistDict(path) as d:
        assert list(d) == [f"k{i}" for i in range(2000)]


def test_store_writable_by_others_is_refused(store_path: Path) -> None:
    with PersistDict(store_path) as d:
        d["a"] = 1
    store_path.chmod(0o777)
    with pytest.raises(UnsafeStoreError, match="other users"):
        PersistDict(store_path)
    with PersistDict(store_path, allow_unsafe_permissions=True) as d:
        assert d["a"] == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")
def test_store_of_another_user_is_refused(store_path: Path) -> None:
    with PersistDict(store_path) as d:
        d["a"] = 1
    os.chown(store_path / "data.mdb", 65534, 65534)
    with pytest.raises(UnsafeStoreError, match="belongs to uid 65534"):
        PersistDict(store_path)
    with PersistDict(store_path, allow_unsafe_permissions=True) as d:
        assert d["a"] == 1


def test_read_only_directory_opens_with_readonly(
    tmp_path: Path, store_path: Path, run_py: Any
) -> None:
    with PersistDict(store_path) as d:
        d["a"] = 1
    code = """
import sys
from persistdict import PersistDict, ReadOnlyError
d = PersistDict(sys.argv[1], readonly=True)
print(d["a"])
try:
    d["b"] = 2
except ReadOnlyError:
    print("refused")
"""
    if os.geteuid() != 0:
        store_path.chmod(0o500)
        try:
            assert run_py(code, str(store_path)).stdout.split() == ["1", "refused"]
        finally:
            store_path.chmod(0o700)
        return
    # root may write anywhere: a read-only bind mount is read-only for root too.
    mounted = tmp_path / "ro"
    mounted.mkdir(mode=0o700)
    binds = [
        ["mount", "--bind", str(store_path), str(mounted)],
        ["mount", "-o", "remount,ro,bind", str(mounted)],
    ]
    for cmd in binds:
        if subprocess.run(cmd, capture_output=True, check=False).returncode:
            subprocess.run(["umount", str(mounted)], capture_output=True, check=False)
            pytest.skip("cannot make a read-only mount here")
    try:
        assert not os.access(mounted, os.W_OK)
        assert run_py(code, str(mounted)).stdout.split() == ["1", "refused"]
    finally:
        subprocess.run(["umount", str(mounted)], check=True)


def test_lmdb_keeps_its_locks_while_a_store_is_open(
    store_path: Path, run_py: Any
) -> None:
    # Closing any descriptor of lock.mdb drops a process's fcntl locks on it:
    # nothing in persistdict may do that while the environment is open.
    d = PersistDict(store_path)
    for i in range(5):
        d[i] = i
        assert d[i] == i
    probe = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
    print("free")
except OSError:
    print("held")
"""
    lock_file = str(store_path / "lock.mdb")
    assert run_py(probe, lock_file).stdout.strip() == "held"
    d.close()
    assert run_py(probe, lock_file).stdout.strip() == "free"


@pytest.mark.skipif(not os.path.exists("/proc/self/mounts"), reason="Linux only")
def test_file_system_type_of_a_virtual_file_system() -> None:
    # No block device under /proc (an anonymous device): the mount table says.
    from persistdict._env import _filesystem_type

    assert _filesystem_type("/proc") == "proc"


def test_a_taken_insertion_place_is_never_reused(store_path: Path) -> None:
    # A new key's place comes from what this process remembers when no commit
    # came between; were that ever stale, the database decides.
    with PersistDict(store_path) as d:
        d["a"], d["b"] = 1, 2
        env = d._live()
        env.next_seq = (env.env.info()["last_txnid"], 1)  # "b"'s place
        d["c"] = 3
        d.update({"d": 4, "e": 5})
        assert list(d) == ["a", "b", "c", "d", "e"]
        del d["e"]
        assert list(d) == ["a", "b", "c", "d"]
        assert len(d) == 4
