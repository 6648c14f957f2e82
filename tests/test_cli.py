"""The ``persistdict`` command line, in-process through ``main([...])`` and as the
installed script, on stores made by PersistDict and by persist_cache."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import stat
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persistdict import PersistDict, _cli
from persistdict._cli import describe_key, main, parse_key
from persistdict._codec import encode_key

SRC = str(Path(__file__).resolve().parents[1] / "src")

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Run:
    """``cli("ls", path, ...)`` -> (exit status, stdout, stderr)."""

    def run(*args: object) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("persistdict: error: "), err
    assert "Traceback" not in err
    return lines[0]


def make_dict_store(path: Path, **options: Any) -> Path:
    with PersistDict(path, **options) as d:
        d["alice"] = {"age": 31, "langs": ["python", "rust"]}
        d["bob"] = list(range(1000))
        d[(1, "a")] = 1.5
        d[42] = "forty-two"
        d["42"] = "the str"
        d[frozenset({1, 2})] = {3, 4}
        d[None] = b"nothing"
    return path


MEMO_CODE = """
import sys
from persistdict._memo import persist_cache

@persist_cache(sys.argv[1])
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)

@persist_cache(sys.argv[1], version="2")
def square(x, y=1):
    return x * x * y

fib(20)
for i in range(5):
    square(i)
"""


@pytest.fixture(scope="module")
def memo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store filled by @persist_cache in another process (21 fib + 5 square)."""
    path = tmp_path_factory.mktemp("memo") / "store"
    env = dict(
        os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    subprocess.run(
        [sys.executable, "-c", MEMO_CODE, str(path)], check=True, env=env, timeout=60
    )
    return path


@pytest.fixture
def memo_store(memo_template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "memo"
    shutil.copytree(memo_template, path)
    return path


def snapshot(path: Path) -> tuple[str, int]:
    data = (path / "data.mdb").read_bytes()
    return hashlib.sha256(data).hexdigest(), (path / "data.mdb").stat().st_mtime_ns


# ---------------------------------------------------------------- info


def test_info_on_a_dict_store(tmp_path: Path, cli: Run) -> None:
    store = make_dict_store(tmp_path / "s", expiration_days=30)
    code, out, err = cli("info", store)
    assert (code, err) == (0, "")
    assert "kind          dict" in out
    assert "entries       7\n" in out
    assert "expiration    30 days" in out
    code, out, _ = cli("info", store, "--json")
    info = json.loads(out)
    assert info["entries"] == 7
    assert info["kind"] == "dict"
    assert info["expiration_days"] == 30
    assert info["file_bytes"] == (store / "data.mdb").stat().st_size
    assert info["functions"] == []
    assert info["stored_bytes"] > 1000  # bob's list


def test_info_on_a_memo_store_lists_functions(memo_store: Path, cli: Run) -> None:
    code, out, err = cli("info", memo_store)
    assert (code, err) == (0, "")
    assert "memoization store (2 functions)" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line}
    assert lines["__main__:fib"][1:3] == ["-", "21"]
    assert lines["__main__:square"][1:3] == ["2", "5"]
    info = json.loads(cli("info", memo_store, "--json")[1])
    assert {f["function"]: f["entries"] for f in info["functions"]} == {
        "__main__:fib": 21,
        "__main__:square": 5,
    }


# ---------------------------------------------------------------- ls


def test_ls_previews_keys_without_unpickling(tmp_path: Path, cli: Run) -> None:
    store = make_dict_store(tmp_path / "s")
    code, out, err = cli("ls", store)
    assert (code, err) == (0, "")
    keys = [line.split("  ")[0].strip() for line in out.splitlines()[1:]]
    assert keys == [
        "'alice'",
        "'bob'",
        "(1, 'a')",
        "42",
        "'42'",
        "frozenset({1, 2})",
        "None",
    ]
    rows = json.loads(cli("ls", store, "--json")[1])
    assert [row["key"] for row in rows] == [
        "alice",
        "bob",
        [1, "a"],
        42,
        "42",
        [1, 2],
        None,
    ]
    assert {"size", "ctime", "atime", "key_repr"} <= rows[0].keys()


def test_ls_sort_limit_reverse(tmp_path: Path, cli: Run) -> None:
    store = make_dict_store(tmp_path / "s")
    rows = json.loads(cli("ls", store, "--sort", "size", "--json")[1])
    sizes = [row["size"] for row in rows]
    assert sizes == sorted(sizes, reverse=True)
    assert rows[0]["key"] == "bob"
    rows = json.loads(cli("ls", store, "--sort", "size", "--reverse", "--json")[1])
    assert [row["size"] for row in rows] == sorted(sizes)
    rows = json.loads(cli("ls", store, "--sort", "key", "--limit", "2", "--json")[1])
    assert len(rows) == 2
    code, out, _ = cli("ls", store, "--limit", "3")
    assert code == 0
    assert "(3 of 7 entries shown" in out


def test_ls_memo_store_by_function(memo_store: Path, cli: Run) -> None:
    code, out, _ = cli("ls", memo_store, "--function", "square")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "FUNCTION",
        "CALL",
        "SIZE",
        "CREATED",
        "ACCESSED",
        "ARGUMENTS",
    ]
    assert len(lines) == 1 + 5
    assert all(line.startswith("__main__:square  2:") for line in lines[1:])
    # A preview of each call's arguments, as the decorator recorded it.
    assert sorted(line.split()[-1] for line in lines[1:]) == [
        f"square(x={i})" for i in range(5)
    ]
    rows = json.loads(cli("ls", memo_store, "--function", "__main__:fib", "--json")[1])
    assert len(rows) == 21
    assert {row["function"] for row in rows} == {"__main__:fib"}
    assert all(len(row["call"]) == 32 and row["version"] is None for row in rows)
    assert {row["call_preview"] for row in rows} == {f"fib(n={n})" for n in range(21)}
    code, _, err = cli("ls", memo_store, "--function", "nope")
    assert code == 1
    assert "__main__:fib" in one_error_line(err)


# ---------------------------------------------------------------- show


def test_show_reads_keys_as_literals_or_text(tmp_path: Path, cli: Run) -> None:
    store = make_dict_store(tmp_path / "s")
    code, out, err = cli("show", store, "alice")
    assert (code, err) == (0, "")
    assert "{'age': 31, 'langs': ['python', 'rust']}" in out
    assert "forty-two" in cli("show", store, "42")[1]
    assert "the str" in cli("show", store, "'42'")[1]
    assert "1.5" in cli("show", store, "(1, 'a')")[1]
    assert "b'nothing'" in cli("show", store, "None")[1]
    shown = json.loads(cli("show", store, "alice", "--json")[1])
    assert shown["value"] == {"age": 31, "langs": ["python", "rust"]}
    assert shown["key"] == "alice"
    # Not JSON data: the repr only.
    shown = json.loads(cli("show", store, "frozenset({1, 2})", "--json")[1])
    assert "value" not in shown
    assert shown["repr"] == "{3, 4}"


def test_show_truncates_for_people_not_for_json(tmp_path: Path, cli: Run) -> None:
    with PersistDict(tmp_path / "s") as d:
        d["big"] = "x" * 50_000
    out = cli("show", tmp_path / "s", "big")[1]
    assert len(out) < 3000
    assert "more characters; --json prints all" in out
    assert (
        json.loads(cli("show", tmp_path / "s", "big", "--json")[1])["value"]
        == "x" * 50_000
    )


def test_show_memo_entry_by_call_hash(memo_store: Path, cli: Run) -> None:
    rows = json.loads(cli("ls", memo_store, "--function", "fib", "--json")[1])
    by_value = {}
    for row in rows:
        shown = json.loads(cli("show", memo_store, row["call"][:12], "--json")[1])
        assert shown["function"] == "__main__:fib"
        by_value[shown["value"]] = row
    assert 6765 in by_value  # fib(20)
    assert "call      fib(n=20)" in cli("show", memo_store, by_value[6765]["call"])[1]
    full = by_value[6765]["key"]
    assert json.loads(cli("show", memo_store, full, "--json")[1])["value"] == 6765
    # What the CALL column shows for a versioned function is accepted too.
    out = cli("ls", memo_store, "--function", "square")[1]
    call = out.splitlines()[1].split()[1]
    assert call.startswith("2:")
    assert json.loads(cli("show", memo_store, call, "--json")[1])["version"] == "2"
    code, _, err = cli("show", memo_store, "__main__:fib")
    assert code == 1
    assert "ambiguous" in one_error_line(err)


def test_show_missing_and_unhashable_keys(tmp_path: Path, cli: Run) -> None:
    store = make_dict_store(tmp_path / "s")
    code, out, err = cli("show", store, "carol")
    assert (code, out) == (1, "")
    assert "no key 'carol'" in one_error_line(err)
    code, _, err = cli("show", store, "[1, 2]")
    assert code == 1
    assert "unhashable" in one_error_line(err)


def test_read_commands_never_change_the_store(
    tmp_path: Path, memo_store: Path, cli: Run
) -> None:
    store = make_dict_store(tmp_path / "s", expiration_days=30)
    with PersistDict(store) as d:
        atime = d.metadata("alice").atime
    memo_key = json.loads(cli("ls", memo_store, "--json")[1])[0]["key"]
    for path, key in ((store, "alice"), (memo_store, memo_key)):
        before = snapshot(path)
        for args in (["info"], ["ls"], ["ls", "--sort", "atime"], ["show", key]):
            assert cli(args[0], path, *args[1:], "--json")[0] == 0
            assert cli(args[0], path, *args[1:])[0] == 0
        assert snapshot(path) == before
    with PersistDict(store) as d:
        assert d.metadata("alice").atime == atime


@given(
    key=st.recursive(
        st.one_of(
            st.text(),
            st.integers(),
            st.binary(),
            st.none(),
            st.floats(allow_nan=False, allow_infinity=False),
        ),
        lambda inner: (
            st.tuples(inner)
            | st.tuples(inner, inner)
            | st.frozensets(inner, max_size=3)
        ),
        max_leaves=6,
    )
)
@settings(max_examples=200)
def test_ls_key_text_is_a_literal_that_show_accepts(key: Any) -> None:
    text, _ = describe_key(encode_key(key)[0])
    assert parse_key(text) == key


def test_key_text_is_taken_as_a_literal_or_as_text() -> None:
    assert parse_key("42") == 42
    assert parse_key("'42'") == "42"
    assert parse_key("(1, 'a')") == (1, "a")
    assert parse_key("frozenset({1, (2, frozenset())})") == frozenset(
        {1, (2, frozenset())}
    )
    assert parse_key("alice") == "alice"
    assert parse_key("mod:f::3fa2") == "mod:f::3fa2"
    assert parse_key("print(1)") == "print(1)"
    assert parse_key("frozenset(x)") == "frozenset(x)"


def test_signed_and_custom_serialized_values(
    tmp_path: Path, cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    with PersistDict(tmp_path / "signed", secret=b"s3cret") as d:
        d["k"] = [1, 2]
    code, out, err = cli("show", tmp_path / "signed", "k")
    assert (code, out) == (1, "")
    assert "PERSISTDICT_SECRET" in one_error_line(err)
    monkeypatch.setenv("PERSISTDICT_SECRET", "s3cret")
    assert json.loads(cli("show", tmp_path / "signed", "k", "--json")[1])["value"] == [
        1,
        2,
    ]
    monkeypatch.delenv("PERSISTDICT_SECRET")
    with PersistDict(
        tmp_path / "zipped",
        value_serializer=lambda v: zlib.compress(pickle.dumps(v)),
        value_unserializer=lambda b: pickle.loads(zlib.decompress(b)),
    ) as d:
        d["k"] = "v" * 100
    assert cli("ls", tmp_path / "zipped")[0] == 0
    code, out, err = cli("show", tmp_path / "zipped", "k")
    assert (code, out) == (1, "")
    assert "custom value_serializer" in one_error_line(err)


# ---------------------------------------------------------------- expire, clear


def test_expire_uses_the_recorded_setting_or_days(tmp_path: Path, cli: Run) -> None:
    store = make_dict_store(tmp_path / "s")
    code, _, err = cli("expire", store)
    assert code == 1
    assert "pass --days N" in one_error_line(err)
    code, out, _ = cli("expire", store, "--days", "1")
    assert (code, out) == (0, "removed 0 entries not accessed for 1 day\n")
    time.sleep(0.05)  # let the entries age past 1e-6 days (86 ms) ...
    with PersistDict(store) as d:
        d["fresh"] = 1
    time.sleep(0.1)  # ... and let "fresh" age too, less
    out = json.loads(cli("expire", store, "--days", "1e-6", "--json")[1])
    assert out["removed"] >= 7
    with PersistDict(store) as d:
        assert set(d) <= {"fresh"}
    # A store that records its expiration is expired by it.
    other = make_dict_store(tmp_path / "t", expiration_days=1e-6)
    time.sleep(0.1)
    code, out, _ = cli("expire", other)
    assert (code, out) == (0, "removed 7 entries not accessed for 1e-06 days\n")


def test_expire_leaves_the_recorded_setting(tmp_path: Path, cli: Run) -> None:
    store = make_dict_store(tmp_path / "s", expiration_days=30)
    assert cli("expire", store, "--days", "2")[0] == 0
    assert json.loads(cli("info", store, "--json")[1])["expiration_days"] == 30


def test_clear_one_function_keeps_the_others(memo_store: Path, cli: Run) -> None:
    code, out, err = cli("clear", memo_store, "--function", "fib")
    assert (code, err) == (0, "")
    assert out.startswith("removed 21 entries")
    rows = json.loads(cli("ls", memo_store, "--json")[1])
    assert {row["function"] for row in rows} == {"__main__:square"}
    assert len(rows) == 5
    code, _, err = cli("clear", memo_store, "--function", "fib")
    assert code == 1
    assert "no function named 'fib'" in one_error_line(err)


def test_clear_everything_asks_first(
    tmp_path: Path, cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_dict_store(tmp_path / "s")
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    code, out, err = cli("clear", store)
    assert (code, out) == (1, "")
    assert "remove all 7 entries" in err
    assert "nothing removed" in err
    assert len(json.loads(cli("ls", store, "--json")[1])) == 7
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    code, out, _ = cli("clear", store)
    assert code == 0
    assert out.startswith("removed 7 entries")
    make_dict_store(store)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # never read
    assert json.loads(cli("clear", store, "--yes", "--json")[1])["removed"] == 7
    with PersistDict(store) as d:
        assert len(d) == 0


# ---------------------------------------------------------------- compact


def test_compact_shrinks_a_store_and_keeps_every_entry(
    tmp_path: Path, cli: Run
) -> None:
    path = tmp_path / "s"
    with PersistDict(path, durable=False) as d:
        d.update({f"k{i}": f"{i}".encode() * 1000 for i in range(2000)})
        for i in range(0, 2000, 20):
            d[(i, "tuple")] = {"i": i}
        d._delete_many([f"k{i}" for i in range(1900)])
        kept = d.copy()
    assert len(kept) == 200
    before = (path / "data.mdb").stat().st_size
    code, out, err = cli("compact", path)
    assert (code, err) == (0, "")
    after = (path / "data.mdb").stat().st_size
    assert after < before / 4, (before, after)
    assert out.startswith(f"compacted {path.resolve()}: ")
    assert stat.S_IMODE((path / "data.mdb").stat().st_mode) == 0o600
    assert [p.name for p in path.iterdir() if p.name.startswith(".compact")] == []
    with PersistDict(path) as d:
        assert d.copy() == kept
        assert list(d) == list(kept)  # insertion order too
        d["after"] = 1  # and it takes writes
        assert d["after"] == 1
    info = json.loads(cli("info", path, "--json")[1])
    assert info["entries"] == 201


def test_compact_refuses_while_another_process_has_the_store_open(
    tmp_path: Path, cli: Run
) -> None:
    store = make_dict_store(tmp_path / "s")
    code = "import sys\nfrom persistdict import PersistDict\n" + (
        "d = PersistDict(sys.argv[1])\nprint(len(d), flush=True)\nsys.stdin.read()\n"
    )
    env = dict(
        os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(store)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "7"
        before = snapshot(store)
        code_, out, err = cli("compact", store)
        assert (code_, out) == (1, "")
        line = one_error_line(err)
        assert "close the other processes first" in line
        assert str(child.pid) in line
        assert snapshot(store) == before
        info = json.loads(cli("info", store, "--json")[1])
        assert info["open_by_pids"] == [child.pid]
    finally:
        child.communicate(timeout=30)  # closes its stdin: it exits
    assert cli("compact", store)[0] == 0
    assert json.loads(cli("info", store, "--json")[1])["open_by_pids"] == []


def test_compact_refuses_a_store_open_in_this_process(tmp_path: Path, cli: Run) -> None:
    with PersistDict(tmp_path / "s") as d:
        d["a"] = 1
        code, _, err = cli("compact", tmp_path / "s")
        assert code == 1
        assert "open in this process" in one_error_line(err)
        assert d["a"] == 1


# ---------------------------------------------------------------- errors


def _garbage(path: Path) -> None:
    path.mkdir()
    (path / "data.mdb").write_bytes(os.urandom(64 * 1024))


def _truncated(path: Path) -> None:
    with PersistDict(path) as d:
        d.update({i: b"x" * 4000 for i in range(200)})
    with (path / "data.mdb").open("r+b") as fh:
        fh.truncate(3 * 4096)


def _zero(path: Path) -> None:
    path.mkdir()
    (path / "data.mdb").write_bytes(b"")


def _foreign(path: Path) -> None:
    env = lmdb.open(str(path), max_dbs=2)
    with env.begin(write=True) as txn:
        txn.put(b"hello", b"world")
    env.close()


def _not_a_store(path: Path) -> None:
    path.mkdir()
    (path / "notes.txt").write_text("hi")


def _a_file(path: Path) -> None:
    path.write_text("not a directory")


BROKEN: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing": (lambda path: None, "does not exist"),  # nothing made
    "file": (_a_file, "is a file, not a store"),
    "not-a-store": (_not_a_store, "has no data.mdb"),
    "garbage": (_garbage, "not an LMDB data file"),
    "truncated": (_truncated, "is truncated"),
    "empty-data": (_zero, "data.mdb is empty"),
    "foreign-lmdb": (_foreign, "not a persistdict store"),
}
COMMANDS = [
    ["info"],
    ["ls"],
    ["show", "k"],
    ["expire", "--days", "1"],
    ["clear", "--yes"],
    ["compact"],
]


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_paths_give_one_line_and_are_left_alone(
    tmp_path: Path, cli: Run, kind: str
) -> None:
    make, message = BROKEN[kind]
    path = tmp_path / "s"
    make(path)
    files = sorted(p.name for p in path.iterdir()) if path.is_dir() else None
    contents = (
        (path / "data.mdb").read_bytes() if (path / "data.mdb").exists() else None
    )
    for command in COMMANDS:
        code, out, err = cli(command[0], path, *command[1:])
        assert (code, out) == (1, ""), (command, out, err)
        assert message in one_error_line(err), (command, err)
    assert path.exists() == (kind != "missing")
    if files is not None:
        assert sorted(p.name for p in path.iterdir()) == files
    if contents is not None:
        assert (path / "data.mdb").read_bytes() == contents


def test_a_store_others_can_write_is_refused(tmp_path: Path, cli: Run) -> None:
    store = make_dict_store(tmp_path / "s")
    store.chmod(0o770)
    for command in COMMANDS:
        code, _, err = cli(command[0], store, *command[1:])
        assert code == 1, command
        assert "can be written by other users" in one_error_line(err)


def _read_only_runner(store: Path) -> Callable[..., tuple[int, str, str]]:
    """Run the CLI on ``store`` made read-only for it: by mode as a normal user,
    through a read-only bind mount as root (whom modes do not stop)."""
    if os.geteuid() != 0:

        def run_chmod(*args: str) -> tuple[int, str, str]:
            return _run_script(*args)

        for item in store.iterdir():
            item.chmod(0o400)
        store.chmod(0o500)
        return run_chmod
    unshare = shutil.which("unshare")
    script = (
        'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    )
    if unshare is None:
        pytest.skip("root without unshare(1): cannot make a read-only store")
    probe = subprocess.run(
        [unshare, "-m", "sh", "-c", script, "sh", str(store), "true"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"root cannot mount here: {probe.stderr.decode().strip()}")

    def run_mounted(*args: str) -> tuple[int, str, str]:
        prefix = [unshare, "-m", "sh", "-c", script, "sh", str(store)]
        return _run_script(*args, prefix=prefix)

    return run_mounted


def test_a_read_only_store_is_read_and_not_changed(tmp_path: Path) -> None:
    store = make_dict_store(tmp_path / "s")
    run = _read_only_runner(store)
    try:
        code, out, err = run("ls", str(store), "--json")
        assert code == 0, err
        assert len(json.loads(out)) == 7
        assert "not writable" in err  # the core's warning, one line
        assert len(err.strip().splitlines()) == 1
        code, out, err = run("show", str(store), "alice")
        assert code == 0, err
        for command in (["clear", "--yes"], ["expire", "--days", "1"], ["compact"]):
            code, out, err = run(command[0], str(store), *command[1:])
            assert (code, out) == (1, ""), (command, err)
            assert "read-only" in one_error_line(err), err
    finally:
        store.chmod(0o700)
        for item in store.iterdir():
            item.chmod(0o600)
    with PersistDict(store) as d:
        assert len(d) == 7


# ---------------------------------------------------------------- usage, progress


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["frobnicate", "x"],
        ["ls"],
        ["ls", "x", "--sort", "colour"],
        ["ls", "x", "--limit", "-1"],
        ["expire", "x", "--days", "0"],
        ["show", "x"],
    ],
)
def test_usage_errors_exit_2(args: list[str], cli: Run) -> None:
    code, out, err = cli(*args)
    assert (code, out) == (2, "")
    assert "usage: persistdict" in err
    assert "Traceback" not in err


def test_help_says_how_keys_are_read(cli: Run) -> None:
    code, out, _ = cli("show", "--help")
    assert code == 0
    assert "Python literal" in out


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with PersistDict(tmp_path / "s", durable=False) as d:
        d.update({i: i for i in range(5000)})
    monkeypatch.setattr(_cli, "_PROGRESS_DELAY", 0.0)
    monkeypatch.setattr(_cli, "_PROGRESS_EVERY", 0.0)
    assert main(["ls", str(tmp_path / "s"), "--limit", "1"]) == 0
    assert capsys.readouterr().err == ""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["ls", str(tmp_path / "s"), "--limit", "1"]) == 0
    shown = terminal.getvalue()
    assert "\rreading entries: 4,096 of 5,000" in shown
    assert shown.endswith("\r\033[K")  # the line is wiped at the end


# ---------------------------------------------------------------- the installed script


def _script() -> list[str]:
    script = Path(sys.executable).with_name("persistdict")
    if script.exists():
        return [str(script)]
    found = shutil.which("persistdict")
    return [found] if found else [sys.executable, "-m", "persistdict"]


def _run_script(*args: str, prefix: list[str] | None = None) -> tuple[int, str, str]:
    env = dict(
        os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    proc = subprocess.run(
        [*(prefix or []), *_script(), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_the_installed_script(memo_store: Path, tmp_path: Path) -> None:
    code, out, err = _run_script("ls", str(memo_store), "--function", "fib", "--json")
    assert (code, err) == (0, "")
    assert len(json.loads(out)) == 21
    _garbage(tmp_path / "g")
    code, out, err = _run_script("info", str(tmp_path / "g"))
    assert (code, out) == (1, "")
    assert "not an LMDB data file" in one_error_line(err)
    code, out, err = _run_script("show", str(memo_store), "0")
    assert code == 1
    assert "no key 0" in one_error_line(err)
