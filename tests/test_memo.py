"""@persist_cache in one process: the functools protocol, options, errors, threads,
asyncio, methods."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from persistdict import PersistDict, SignatureError
from persistdict._memo import CacheInfo, persist_cache


def test_matches_lru_cache_on_a_call_sequence(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []

    def add(x: int, y: int = 1) -> int:
        calls.append((x, y))
        return x + y

    mine = persist_cache(tmp_path / "db", maxsize=None)(add)
    reference = functools.lru_cache(maxsize=None)(add)
    sequence = [(1,), (1,), (2, 3), (1,), (2, 3), (4,), (4, 2), (1,)]
    for args in sequence:
        assert mine(*args) == reference(*args)
    ref = reference.cache_info()
    assert mine.cache_info() == CacheInfo(ref.hits, ref.misses, None, ref.currsize)
    mine.cache_clear()
    reference.cache_clear()
    ref = reference.cache_info()
    assert mine.cache_info() == CacheInfo(ref.hits, ref.misses, None, ref.currsize)


@given(
    st.lists(st.tuples(st.integers(0, 3), st.sampled_from([None, 1, 2])), max_size=20)
)
def test_hit_and_miss_counts_match_lru_cache(tmp_path_factory: Any, calls: Any) -> None:
    path = tmp_path_factory.mktemp("db")

    def g(x: int, y: int | None = None) -> tuple[int, int | None]:
        return (x, y)

    mine = persist_cache(path, maxsize=None)(g)
    reference = functools.lru_cache(maxsize=None)(g)
    for x, y in calls:
        # functools sees g(x) and g(x, None) as two calls, persist_cache as one:
        # compare on the normalised call.
        expected = reference(x, y)
        assert mine(x, y) == expected
        assert mine(x=x, y=y) == expected
    ref = reference.cache_info()
    assert mine.cache_info()[:2] == (ref.hits + len(calls), ref.misses)
    assert mine.cache_info().currsize == ref.currsize


def test_wrapper_metadata_like_functools(tmp_path: Path) -> None:
    def documented(a: int, b: str = "x") -> str:
        """Docs."""
        return b * a

    wrapped = persist_cache(tmp_path / "db")(documented)
    reference = functools.lru_cache(documented)
    for name in (
        "__name__",
        "__qualname__",
        "__doc__",
        "__module__",
        "__annotations__",
    ):
        assert getattr(wrapped, name) == getattr(reference, name)
    assert wrapped.__wrapped__ is documented
    assert inspect.signature(wrapped) == inspect.signature(documented)
    params = wrapped.cache_parameters()
    assert params["maxsize"] == 128
    assert params["typed"] is False
    assert params["path"] == str(tmp_path / "db")
    params["maxsize"] = 1  # type: ignore[typeddict-item]
    assert wrapped.cache_parameters()["maxsize"] == 128


def test_stacked_decorators_keep_their_own_helpers(tmp_path: Path) -> None:
    inner = persist_cache(tmp_path / "a")(lambda x: x)
    outer = persist_cache(tmp_path / "b")(inner)
    assert outer.cache_info is not inner.cache_info
    outer(1)
    assert outer.cache_info().misses == 1
    assert inner.cache_info().misses == 1
    outer(1)
    assert outer.cache_info().hits == 1
    assert inner.cache_info().hits == 0


def test_none_is_cached_and_exceptions_are_not(tmp_path: Path) -> None:
    calls = []

    @persist_cache(tmp_path / "db")
    def nothing(x: int) -> None:
        calls.append(x)
        if x < 0:
            raise ValueError("negative")

    assert nothing(1) is None
    assert nothing(1) is None
    assert calls == [1]
    for _ in range(2):
        with pytest.raises(ValueError, match="negative"):
            nothing(-1)
    assert calls == [1, -1, -1]
    assert not nothing.cache_contains(-1)


def test_unserializable_result_is_returned_logged_not_stored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    @persist_cache(tmp_path / "db")
    def make_lock(x: int) -> Any:
        return threading.Lock()

    with caplog.at_level(logging.WARNING, logger="persistdict"):
        lock = make_lock(1)
    assert hasattr(lock, "acquire")
    assert "cannot be serialized" in caplog.text
    assert not make_lock.cache_contains(1)
    assert make_lock.cache_info().currsize == 0


def test_generators_are_rejected(tmp_path: Path) -> None:
    def gen() -> Any:
        yield 1

    async def agen() -> Any:
        yield 1

    for func in (gen, agen):
        with pytest.raises(TypeError, match="generator"):
            persist_cache(tmp_path / "db")(func)


def test_forms_and_bad_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSISTDICT_CACHE_DIR", str(tmp_path / "default"))

    @persist_cache
    def bare(x: int) -> int:
        return x

    assert bare(2) == 2
    assert (tmp_path / "default" / "data.mdb").exists()
    assert bare.cache_parameters()["path"] is None
    with pytest.raises(TypeError, match="Expected first argument"):
        persist_cache(3)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="expiration_days"):
        persist_cache(tmp_path, expiration_days=0)
    with pytest.raises(ValueError, match="maxsize"):
        persist_cache(tmp_path, maxsize=-1)
    with pytest.raises(ValueError, match="not parameters"):
        persist_cache(tmp_path, ignore=("nope",))(bare.__wrapped__)
    with pytest.raises(TypeError, match="below @classmethod"):
        persist_cache(classmethod(bare.__wrapped__))  # type: ignore[call-overload]


def test_default_dir_is_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from persistdict._paths import default_cache_dir

    monkeypatch.delenv("PERSISTDICT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    path = default_cache_dir()
    assert path == tmp_path / "xdg" / "persistdict"
    assert path.stat().st_mode & 0o777 == 0o700
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "persistdict"


def test_helpers(tmp_path: Path) -> None:
    calls = []

    @persist_cache(tmp_path / "db")
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    @persist_cache(tmp_path / "db")
    def cube(x: int) -> int:
        return x**3

    assert not square.cache_contains(3)
    assert square(3) == 9
    assert cube(3) == 27
    assert square.cache_contains(x=3)
    assert square.cache_key(3) == square.cache_key(x=3)
    assert square.cache_key(3).startswith(square.cache_parameters()["namespace"])
    assert square.cache_key(3) != cube.cache_key(3)
    assert square.cache_invalidate(3) is True
    assert square.cache_invalidate(3) is False
    assert square(3) == 9
    assert calls == [3, 3]
    square.cache_clear()
    assert square.cache_info() == CacheInfo(0, 0, 128, 0)
    assert cube.cache_info().currsize == 1  # the other function kept its entry
    assert square.cache_expire() == 0


def test_version_keeps_entries_apart(tmp_path: Path) -> None:
    def v(x: int) -> str:
        return "old"

    old = persist_cache(tmp_path / "db")(v)
    new = persist_cache(tmp_path / "db", version="2")(lambda x: "new")
    old(1)
    assert new.cache_parameters()["version"] == "2"
    assert new(1) == "new"


def test_ignore_self_shares_across_instances(tmp_path: Path) -> None:
    calls = []

    class Client:
        def __init__(self) -> None:
            self.lock = threading.Lock()  # cannot be pickled: must never be

        @persist_cache(tmp_path / "db", ignore=("self",))
        def fetch(self, x: int) -> int:
            calls.append(x)
            return x + 1

    assert Client().fetch(1) == 2
    assert Client().fetch(1) == 2
    assert Client().fetch(x=1) == 2
    assert calls == [1]
    assert Client.fetch.cache_info().hits == 2


def test_typed(tmp_path: Path) -> None:
    @persist_cache(tmp_path / "db", typed=True)
    def kind(x: Any) -> str:
        return type(x).__name__

    assert [kind(1), kind(1.0), kind(True)] == ["int", "float", "bool"]

    @persist_cache(tmp_path / "db")
    def loose(x: Any) -> str:
        return type(x).__name__

    assert [loose(1), loose(1.0), loose(True)] == ["int", "int", "int"]


def test_unhashable_arguments(tmp_path: Path) -> None:
    @persist_cache(tmp_path / "db")
    def total(values: list[int], weights: dict[str, int]) -> int:
        return sum(values) + sum(weights.values())

    assert total([1, 2], {"a": 1, "b": 2}) == 6
    assert total([1, 2], {"b": 2, "a": 1}) == 6
    assert total.cache_info().hits == 1


def test_threads_run_the_body_once(tmp_path: Path) -> None:
    calls = []
    started = threading.Event()
    release = threading.Event()

    @persist_cache(tmp_path / "db")
    def slow(x: int) -> int:
        calls.append(x)
        started.set()
        release.wait(10)
        return x * 2

    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(slow(4))) for _ in range(8)
    ]
    threads[0].start()
    assert started.wait(10)
    for t in threads[1:]:
        t.start()
    release.set()
    for t in threads:
        t.join(10)
    assert results == [8] * 8
    assert calls == [4]
    info = slow.cache_info()
    assert (info.hits, info.misses) == (7, 1)


def test_threads_recover_when_the_leader_raises(tmp_path: Path) -> None:
    calls = []
    started = threading.Event()
    release = threading.Event()

    @persist_cache(tmp_path / "db")
    def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            started.set()
            release.wait(10)
            raise RuntimeError("first call fails")
        return x

    outcomes: list[object] = []

    def call() -> None:
        try:
            outcomes.append(flaky(1))
        except RuntimeError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    threads[0].start()
    assert started.wait(10)
    for t in threads[1:]:
        t.start()
    release.set()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    assert sum(isinstance(o, RuntimeError) for o in outcomes) == 1
    assert outcomes.count(1) == 3
    assert len(calls) == 2


def test_async_functions_store_results_and_run_once(tmp_path: Path) -> None:
    calls = []

    @persist_cache(tmp_path / "db")
    async def fetch(x: int) -> int:
        calls.append(x)
        await asyncio.sleep(0.05)
        return x * 10

    assert inspect.iscoroutinefunction(fetch)

    async def main() -> list[int]:
        return list(await asyncio.gather(*(fetch(2) for _ in range(5))))

    assert asyncio.run(main()) == [20] * 5
    assert asyncio.run(main()) == [20] * 5
    assert calls == [2]
    assert fetch.cache_info()[:2] == (9, 1)
    store = PersistDict(tmp_path / "db")
    assert store[fetch.cache_key(2)] == 20  # the result, not a coroutine


def test_async_waiters_recover_when_the_leader_fails(tmp_path: Path) -> None:
    calls = []

    @persist_cache(tmp_path / "db")
    async def flaky(x: int) -> int:
        calls.append(x)
        await asyncio.sleep(0.02)
        if len(calls) == 1:
            raise RuntimeError("first call fails")
        return x

    async def main() -> list[object]:
        return list(
            await asyncio.gather(*(flaky(1) for _ in range(3)), return_exceptions=True)
        )

    outcomes = asyncio.run(main())
    assert sum(isinstance(o, RuntimeError) for o in outcomes) == 1
    assert outcomes.count(1) == 2
    assert len(calls) == 2


def test_fork_child_uses_the_cache(tmp_path: Path) -> None:
    @persist_cache(tmp_path / "db")
    def double(x: int) -> int:
        return x * 2

    double(1)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports by exit code
        code = 0 if double(1) == 2 and double(5) == 10 else 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert double.cache_contains(5)


def test_each_entry_keeps_a_preview_of_its_call(tmp_path: Path) -> None:
    from persistdict._memo import persist_cache as cache

    class Client:
        @cache(tmp_path / "s", ignore=("self", "api_key"))
        def ask(self, prompt: str, api_key: str, n: int = 1) -> str:
            return prompt * n

    assert Client().ask("hi", api_key="secret-token", n=2) == "hihi"
    key = Client.ask.cache_key(Client(), "hi", api_key="other", n=2)
    # Ignored arguments are neither in the key nor in the preview.
    with PersistDict(tmp_path / "s") as store:
        assert store._note(key) == "ask(prompt='hi', n=2)"


def test_durable_false_and_secret_reach_the_store(tmp_path: Path) -> None:
    calls: list[int] = []

    @persist_cache(tmp_path / "s", durable=False, secret=b"k" * 40)
    def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    assert double(2) == 4
    assert double(2) == 4
    assert calls == [2]
    params = double.cache_parameters()
    assert params["durable"] is False
    assert params["signed"] is True
    assert "secret" not in params  # never shown
    key = double.cache_key(2)
    with PersistDict(tmp_path / "s", durable=False, secret=b"k" * 40) as d:
        assert d[key] == 4
    with (
        PersistDict(tmp_path / "s", durable=False, secret=b"other") as d,
        pytest.raises(SignatureError),
    ):
        d[key]


def test_a_result_signed_with_another_secret_is_recomputed(tmp_path: Path) -> None:
    calls: list[int] = []

    def make(secret: bytes) -> Any:
        @persist_cache(tmp_path / "s", secret=secret)
        def double(x: int) -> int:
            calls.append(x)
            return 2 * x

        return double

    assert make(b"first")(3) == 6
    assert make(b"second")(3) == 6  # does not verify: a miss, computed again
    assert calls == [3, 3]
