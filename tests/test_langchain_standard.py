"""LangChain's own standard test suites, against PersistLLMCache and PersistByteStore.

The suites come from the ``langchain-tests`` package (in the ``[test]`` extra); each
test gets a new, empty store on ``tmp_path``.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

lc_tests = pytest.importorskip(
    "langchain_tests.integration_tests",
    reason="langchain-tests is not installed: pip install -e '.[test]'",
)

from persistdict.integrations.langchain import (  # noqa: E402
    PersistByteStore,
    PersistLLMCache,
)

# The async suites' tests are coroutines that pytest-asyncio runs when marked; the mark
# is on the class because a test redefined in a subclass fails the suites' own
# test_no_overrides_DO_NOT_OVERRIDE. That one inherited test is synchronous, and
# pytest-asyncio warns about a mark on a synchronous test: only that warning is ignored.
RUN_IN_EVENT_LOOP = [
    pytest.mark.asyncio,
    pytest.mark.filterwarnings(
        "ignore:The test <Function test_no_overrides_DO_NOT_OVERRIDE> is marked"
        ":pytest.PytestWarning"
    ),
]


class TestSyncCache(lc_tests.SyncCacheTestSuite):
    @pytest.fixture
    def cache(self, tmp_path: Path) -> Iterator[PersistLLMCache]:
        with PersistLLMCache(tmp_path / "llm-cache") as cache:
            yield cache


class TestAsyncCache(lc_tests.AsyncCacheTestSuite):
    pytestmark = RUN_IN_EVENT_LOOP

    @pytest.fixture
    def cache(self, tmp_path: Path) -> Iterator[PersistLLMCache]:
        with PersistLLMCache(tmp_path / "llm-cache") as cache:
            yield cache


class TestSyncByteStore(lc_tests.BaseStoreSyncTests[bytes]):
    @pytest.fixture
    def kv_store(self, tmp_path: Path) -> Iterator[PersistByteStore]:
        with PersistByteStore(tmp_path / "byte-store") as store:
            yield store

    @pytest.fixture
    def three_values(self) -> tuple[bytes, bytes, bytes]:
        return b"foo", b"bar", b"\x00buzz\xff"


class TestAsyncByteStore(lc_tests.BaseStoreAsyncTests[bytes]):
    pytestmark = RUN_IN_EVENT_LOOP

    @pytest.fixture
    def kv_store(self, tmp_path: Path) -> Iterator[PersistByteStore]:
        with PersistByteStore(tmp_path / "byte-store") as store:
            yield store

    @pytest.fixture
    def three_values(self) -> tuple[bytes, bytes, bytes]:
        return b"foo", b"bar", b"\x00buzz\xff"
