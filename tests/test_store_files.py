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


def _to_earlier_format(path: Path, fmt: int) -> None:
    """Rewrite a (closed) store as an earlier format wrote it: long keys' ids
    beginning with 0xff instead of 0x1e; the insertion order in a database
    named "order", keyed by the bare u64 (formats 2 and 3); the rows in one
    named "values" (format 2), instead of the main database."""

    def old_id(entry_id: bytes) -> bytes:
        return b"\xff" + entry_id[1:] if entry_id[0] == 0x1E else entry_id

    env = lmdb.open(str(path), max_dbs=8)
    with env.begin(write=True) as txn:
        internal = env.open_db(b"internal", txn=txn)
        atimes = env.open_db(b"atimes", txn=txn)
        order = env.open_db(b"order", txn=txn)
        values = env.open_db(b"values", txn=txn) if fmt == 2 else None
        for key, value in list(txn.cursor(db=atimes)):
            txn.delete(key, db=atimes)
            txn.put(old_id(key), value, db=atimes)
        for key, value in list(txn.cursor()):
            if key[0] == 0xFF:  # a place: 0xff + u64
                txn.delete(key)
                txn.put(key[1:], old_id(value), db=order)
            elif key[0] < 0x20:  # a row
                txn.delete(key)
                txn.put(old_id(key), value, db=values)
        txn.put(b"format", fmt.to_bytes(8, "big"), db=internal)
    env.close()


@pytest.mark.parametrize("secret", [None, "s3cr3t"], ids=["checksums", "signed"])
@pytest.mark.parametrize("fmt", [2, 3])
def test_a_store_of_format_2_or_3_is_moved_to_format_4_with_every_entry(
    tmp_path: Path, fmt: int, secret: str | None
) -> None:
    path = tmp_path / "store"
    long_key = "k" * 600  # stored under its hash
    expected: dict[Any, Any] = {"a": 1, b"b": [2], (3, "c"): {"d": 4}, long_key: 5}
    with PersistDict(path, expiration_days=30, secret=secret) as d:
        d.update(expected)
        d._set_with_note("noted", "v", "a note")
        expected["noted"] = "v"
        assert d[long_key] == 5  # an access time for a long key's id
        d._env.flush_atimes()
        before = {key: d.metadata(key) for key in expected}
    _to_earlier_format(path, fmt)
    with pytest.raises(StoreCorruptedError, match=rf"format {fmt}.*without readonly"):
        PersistDict(path, readonly=True)
    with PersistDict(path, expiration_days=30, secret=secret) as d:
        # (signed records of long keys verify after their ids changed: a
        # signature covers such an id as formats 2 and 3 wrote it, as
        # test_security's test_secret_signs_every_record pins)
        assert d.metadata(long_key).atime == before[long_key].atime
        assert list(d.items()) == list(expected.items())  # order kept
        assert list(reversed(d)) == list(reversed(expected))
        assert len(d) == len(expected)
        assert {key: d.metadata(key).ctime for key in expected} == {
            key: meta.ctime for key, meta in before.items()
        }
        assert d._note("noted") == "a note"
        assert d.expire() == 0
        d["e"] = 6
        del d["a"]
        assert list(d) == [b"b", (3, "c"), long_key, "noted", "e"]
        assert d.popitem() == ("e", 6)
    env = lmdb.open(str(path), max_dbs=8, readonly=True)
    with env.begin() as txn:
        assert txn.get(b"values") is None  # the old databases are gone
        assert txn.get(b"order") is None
    env.close()
    with PersistDict(path, readonly=True, secret=secret) as d:
        assert d[long_key] == 5
        assert len(d) == 4


@pytest.mark.parametrize("name", [b"values", b"order"])
def test_an_empty_database_of_an_earlier_format_left_in_a_store_is_dropped(
    tmp_path: Path, name: bytes
) -> None:
    # An earlier persistdict creates its databases, "values" or "order" among
    # them, before it finds a newer format and refuses the store.
    path = tmp_path / "store"
    with PersistDict(path) as d:
        d.update({"k": 1, "j": 2})
    env = lmdb.open(str(path), max_dbs=8)
    env.open_db(name)
    env.close()
    with PersistDict(path, readonly=True) as d:
        assert d["k"] == 1
        assert len(d) == 2  # (the leftover's record is not an entry)
    with PersistDict(path) as d:
        assert dict(d) == {"k": 1, "j": 2}
    env = lmdb.open(str(path), max_dbs=8, readonly=True)
    with env.begin() as txn:
        assert txn.get(name) is None
    env.close()


@pytest.mark.parametrize("fmt", [2, 3])
def test_two_processes_opening_a_store_of_an_earlier_format_move_it_once(
    tmp_path: Path, fmt: int
) -> None:
    path = tmp_path / "store"
    with PersistDict(path) as d:
        d.update({f"k{i}": i for i in range(2000)})
    _to_earlier_format(path, fmt)
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
        assert len(d) == 2000


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


FILE_SIZE_LIMIT = """
import os, resource, signal, sys
from persistdict import PersistDict, StoreWriteError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails
path = sys.argv[1]
d = PersistDict(path)
d["small"] = 1
size = os.path.getsize(os.path.join(path, "data.mdb"))
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 65536, resource.RLIM_INFINITY))
for write in (
    lambda: d.__setitem__("big", os.urandom(1 << 20)),
    lambda: d.update({"big": os.urandom(1 << 20), "other": 2}),
):
    try:
        write()
    except StoreWriteError as exc:
        print("StoreWriteError:", exc)
print(sorted(d), d["small"])
"""


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_write_the_file_system_refuses_says_so_and_stores_nothing(
    store_path: Path, run_py: Any
) -> None:
    out = run_py(FILE_SIZE_LIMIT, str(store_path)).stdout.splitlines()
    assert len(out) == 3, out
    for line in out[:2]:
        assert line.startswith("StoreWriteError: could not write to the store")
        assert "nothing of this write was stored" in line
    assert out[2] == "['small'] 1"
    with PersistDict(store_path) as d:
        assert dict(d) == {"small": 1}
