"""PersistLLMCache and PersistByteStore beyond LangChain's standard suites.

Answers round-trip exactly (chat messages with tool calls and usage too), keys are
stable, an answer JSON cannot carry is not cached, clear() is scoped, byte-store
prefixes are exact; and a real LLM and chat model use the cache through
``set_llm_cache``.
"""

import datetime
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip(
    "langchain_core", reason="langchain-core is not installed: pip install -e '.[test]'"
)

from langchain_core.caches import BaseCache
from langchain_core.globals import set_llm_cache
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.llms import LLM
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import (
    ChatGeneration,
    ChatGenerationChunk,
    ChatResult,
    Generation,
    GenerationChunk,
)

from persistdict.integrations.langchain import (
    LLM_KEY_PREFIX,
    PersistByteStore,
    PersistLLMCache,
    llm_cache_key,
)

TOOL_CALL_MESSAGE = AIMessage(
    content=[{"type": "text", "text": "Let me look that up."}],
    id="run-1",
    tool_calls=[{"name": "search", "args": {"q": "lmdb", "n": 3}, "id": "call-1"}],
    usage_metadata={"input_tokens": 12, "output_tokens": 7, "total_tokens": 19},
    response_metadata={"model_name": "fake-1", "finish_reason": "tool_calls"},
)

ANSWERS: list[list[Generation]] = [
    [
        Generation(
            text="plain", generation_info={"finish_reason": "stop", "n": [1, 2.5]}
        )
    ],
    [GenerationChunk(text="chunk"), Generation(text="second")],
    [ChatGeneration(message=TOOL_CALL_MESSAGE, generation_info={"logprobs": None})],
    [ChatGenerationChunk(message=AIMessageChunk(content="streamed", id="run-2"))],
    [ChatGeneration(message=AIMessage(content="héllo \U0001f600 \x00 end"))],
    [],
]


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[PersistLLMCache]:
    with PersistLLMCache(tmp_path / "llm") as cache:
        yield cache


@pytest.fixture
def byte_store(tmp_path: Path) -> Iterator[PersistByteStore]:
    with PersistByteStore(tmp_path / "bytes") as store:
        yield store


# ------------------------------------------------------------------ LLM cache


def test_importing_persistdict_does_not_import_langchain() -> None:
    code = (
        "import sys, persistdict, persistdict.integrations\n"
        "print(sorted(m for m in sys.modules if m.startswith('langchain')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out == "[]\n"


@pytest.mark.parametrize(
    "answer", ANSWERS, ids=lambda a: "-".join(type(g).__name__ for g in a) or "empty"
)
def test_answers_round_trip_exactly(
    tmp_path: Path, cache: PersistLLMCache, answer: list[Generation]
) -> None:
    cache.update("prompt", "llm", answer)
    for got in (
        cache.lookup("prompt", "llm"),
        PersistLLMCache(tmp_path / "llm").lookup("prompt", "llm"),
    ):
        assert got == answer
        assert got is not None
        assert [type(g) for g in got] == [type(g) for g in answer]


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(
    prompt=st.text(),
    llm_string=st.text(),
    text=st.text(),
    info=st.none() | st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=4),
    chat=st.booleans(),
)
def test_any_json_answer_round_trips(
    tmp_path_factory: pytest.TempPathFactory,
    prompt: str,
    llm_string: str,
    text: str,
    info: dict[str, Any] | None,
    chat: bool,
) -> None:
    answer: list[Generation] = [
        ChatGeneration(message=AIMessage(content=text), generation_info=info)
        if chat
        else Generation(text=text, generation_info=info)
    ]
    with PersistLLMCache(tmp_path_factory.mktemp("llm")) as cache:
        cache.update(prompt, llm_string, answer)
        assert cache.lookup(prompt, llm_string) == answer


def test_a_lookup_returns_a_snapshot(cache: PersistLLMCache) -> None:
    cache.update("p", "l", [Generation(text="a", generation_info={"k": [1]})])
    first = cache.lookup("p", "l")
    assert first is not None
    assert first[0].generation_info is not None
    first[0].generation_info["k"].append(2)
    assert cache.lookup("p", "l") == [Generation(text="a", generation_info={"k": [1]})]


def test_keys_are_stable_and_unambiguous() -> None:
    key = llm_cache_key("What is LMDB?", "[('_type', 'fake')]")
    # A fixed value: the key must never depend on the process, run or Python hash seed.
    assert key == LLM_KEY_PREFIX + "3061c8dae848d82140c3dc677aa589b3"
    assert llm_cache_key("ab", "c") != llm_cache_key("a", "bc")
    assert llm_cache_key("p", "") != llm_cache_key("", "p")


def test_keys_are_the_same_in_another_process_with_another_hash_seed() -> None:
    code = (
        "from persistdict.integrations.langchain import llm_cache_key;"
        "print(llm_cache_key('What is LMDB?', \"[('_type', 'fake')]\"))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == llm_cache_key("What is LMDB?", "[('_type', 'fake')]")


def test_prompts_and_llm_strings_are_separate_entries(cache: PersistLLMCache) -> None:
    cache.update("p", "model-a", [Generation(text="a")])
    cache.update("p", "model-b", [Generation(text="b")])
    cache.update("q", "model-a", [Generation(text="c")])
    assert cache.lookup("p", "model-a") == [Generation(text="a")]
    assert cache.lookup("p", "model-b") == [Generation(text="b")]
    assert cache.lookup("q", "model-a") == [Generation(text="c")]
    assert cache.lookup("q", "model-b") is None


@pytest.mark.parametrize(
    "info",
    [
        {"when": datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)},
        {"pair": (1, 2)},
        {"token_logprobs": {1: -0.5}},
        {"x": float("nan")},
        {"raw": b"bytes"},
    ],
    ids=["datetime", "tuple", "int-key", "nan", "bytes"],
)
def test_an_answer_json_cannot_carry_is_not_cached(
    cache: PersistLLMCache, caplog: pytest.LogCaptureFixture, info: dict[str, Any]
) -> None:
    with caplog.at_level(logging.WARNING, logger="persistdict.integrations.langchain"):
        cache.update("p", "l", [Generation(text="t", generation_info=info)])
    assert cache.lookup("p", "l") is None
    assert "LLM answer not cached" in caplog.text


def test_a_foreign_generation_subclass_is_not_cached(
    cache: PersistLLMCache, caplog: pytest.LogCaptureFixture
) -> None:
    class MyGeneration(Generation):
        pass

    with caplog.at_level(logging.WARNING, logger="persistdict.integrations.langchain"):
        cache.update("p", "l", [MyGeneration(text="t")])
    assert cache.lookup("p", "l") is None
    assert "MyGeneration is not a core Generation" in caplog.text


def test_clear_removes_only_the_cache_entries(cache: PersistLLMCache) -> None:
    cache.update("p", "l", [Generation(text="t")])
    cache.store["not-an-answer"] = "kept"
    cache.clear()
    assert cache.lookup("p", "l") is None
    assert cache.store["not-an-answer"] == "kept"
    assert cache.store._keys_with_prefix(LLM_KEY_PREFIX) == []


def test_clear_rejects_arguments(cache: PersistLLMCache) -> None:
    with pytest.raises(TypeError, match="takes no arguments"):
        cache.clear(llm_string="l")


@pytest.mark.parametrize("cls", [PersistLLMCache, PersistByteStore])
@pytest.mark.parametrize("option", ["key_serializer", "key_unserializer"])
def test_key_serializers_are_rejected(tmp_path: Path, cls: type, option: str) -> None:
    with pytest.raises(TypeError, match=f"does not accept {option}="):
        cls(tmp_path / "s", **{option: repr})


def test_options_reach_the_store(tmp_path: Path) -> None:
    import zlib

    with PersistLLMCache(
        tmp_path / "llm",
        expiration_days=1.5,
        value_serializer=lambda text: zlib.compress(text.encode()),
        value_unserializer=lambda data: zlib.decompress(data).decode(),
    ) as cache:
        assert cache.store.expiration_days == 1.5
        cache.update("p" * 10_000, "l", [Generation(text="t" * 10_000)])
        assert cache.lookup("p" * 10_000, "l") == [Generation(text="t" * 10_000)]
        key = llm_cache_key("p" * 10_000, "l")
        assert cache.store.metadata(key).size < 1_000  # compressed


def test_an_entry_signed_with_another_secret_is_a_miss(tmp_path: Path) -> None:
    # The writer and the reader are separate processes, as in real use.
    write = (
        "import sys\n"
        "from langchain_core.outputs import Generation\n"
        "from persistdict.integrations.langchain import PersistLLMCache\n"
        "with PersistLLMCache(sys.argv[1], secret=b'writer-secret') as c:\n"
        "    c.update('p', 'l', [Generation(text='signed')])\n"
    )
    subprocess.run([sys.executable, "-c", write, str(tmp_path / "llm")], check=True)
    with PersistLLMCache(tmp_path / "llm", secret=b"writer-secret") as cache:
        assert cache.lookup("p", "l") == [Generation(text="signed")]
    read = (
        "import sys\n"
        "from persistdict.integrations.langchain import PersistLLMCache\n"
        "with PersistLLMCache(sys.argv[1], secret=b'another-secret') as c:\n"
        "    print(c.lookup('p', 'l'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", read, str(tmp_path / "llm")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == "None\n"


def test_repr_names_the_path(tmp_path: Path, cache: PersistLLMCache) -> None:
    assert repr(cache) == f"PersistLLMCache({str(tmp_path / 'llm')!r})"


# --------------------------------------------- through LangChain's own models


class CountingLLM(LLM):
    """A fake LLM that counts its calls; its answer does not enter the llm_string."""

    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "counting-fake"

    def _call(
        self, prompt: str, stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> str:
        self.calls += 1
        return f"answer #{self.calls} to {prompt!r}"


class ToolCallingChatModel(BaseChatModel):
    """A fake chat model answering with a tool call, usage and metadata."""

    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "tool-calling-fake"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: Any = None,
        run_manager: Any = None,
        **kw: Any,
    ) -> ChatResult:
        self.calls += 1
        return ChatResult(generations=[ChatGeneration(message=TOOL_CALL_MESSAGE)])


@pytest.fixture
def global_cache(cache: PersistLLMCache) -> Iterator[BaseCache]:
    set_llm_cache(cache)
    try:
        yield cache
    finally:
        set_llm_cache(None)


@pytest.mark.usefixtures("global_cache")
def test_set_llm_cache_serves_an_llm_from_the_cache() -> None:
    llm = CountingLLM()
    first = llm.invoke("What is LMDB?")
    assert llm.invoke("What is LMDB?") == first
    assert CountingLLM().invoke("What is LMDB?") == first  # a new model object
    assert llm.calls == 1
    assert llm.invoke("Another question") != first
    assert llm.calls == 2


@pytest.mark.usefixtures("global_cache")
def test_set_llm_cache_serves_a_chat_model_from_the_cache() -> None:
    model = ToolCallingChatModel()
    first = model.invoke("Search for lmdb")
    second = ToolCallingChatModel().invoke("Search for lmdb")
    assert model.calls == 1
    assert isinstance(first, AIMessage)
    assert isinstance(second, AIMessage)
    assert second.content == first.content == TOOL_CALL_MESSAGE.content
    assert second.tool_calls == first.tool_calls == TOOL_CALL_MESSAGE.tool_calls
    # On a hit LangChain itself adds ``total_cost: 0`` to the usage it returns.
    assert second.usage_metadata is not None
    assert TOOL_CALL_MESSAGE.usage_metadata is not None
    assert TOOL_CALL_MESSAGE.usage_metadata.items() <= second.usage_metadata.items()


async def _ainvoke_twice(model: BaseChatModel) -> tuple[BaseMessage, BaseMessage]:
    return await model.ainvoke("Search async"), await model.ainvoke("Search async")


@pytest.mark.usefixtures("global_cache")
def test_async_invocations_use_the_cache() -> None:
    import asyncio

    model = ToolCallingChatModel()
    first, second = asyncio.run(_ainvoke_twice(model))
    assert model.calls == 1
    assert isinstance(second, AIMessage)
    assert second.tool_calls == TOOL_CALL_MESSAGE.tool_calls
    assert first.content == second.content


# ------------------------------------------------------------------ byte store


def test_byte_store_rejects_non_str_keys_and_non_bytes_values(
    byte_store: PersistByteStore,
) -> None:
    with pytest.raises(TypeError, match="keys are str, got int"):
        byte_store.mget([1])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="values are bytes, got str for key 'b'"):
        byte_store.mset([("a", b"ok"), ("b", "text")])  # type: ignore[list-item]
    assert byte_store.mget(["a", "b"]) == [None, None]  # nothing of the batch written


def test_byte_store_stores_bytes_without_pickle(tmp_path: Path) -> None:
    import zlib

    with PersistByteStore(
        tmp_path / "z",
        value_serializer=zlib.compress,
        value_unserializer=zlib.decompress,
    ) as store:
        store.mset([("k", b"x" * 100_000)])
        assert store.mget(["k"]) == [b"x" * 100_000]
        assert store.store.metadata("k").size < 1_000


KEY_TEXT = st.text(alphabet=st.sampled_from("ab\x00\x7fé\U0001f600/:"), max_size=6)


@settings(max_examples=40, deadline=None)
@given(keys=st.sets(KEY_TEXT, max_size=12), prefix=KEY_TEXT)
def test_yield_keys_prefix_is_exact(
    tmp_path_factory: pytest.TempPathFactory, keys: set[str], prefix: str
) -> None:
    with PersistByteStore(tmp_path_factory.mktemp("prefix")) as store:
        store.mset([(k, k.encode()) for k in keys])
        assert sorted(store.yield_keys(prefix=prefix)) == sorted(
            k for k in keys if k.startswith(prefix)
        )
        assert sorted(store.yield_keys()) == sorted(keys)


def test_mdelete_ignores_missing_keys_and_keeps_others(
    byte_store: PersistByteStore,
) -> None:
    byte_store.mset([("a", b"1"), ("ab", b"2"), ("b", b"3")])
    byte_store.mdelete(["a", "missing", "b"])
    assert list(byte_store.yield_keys()) == ["ab"]


def test_cache_backed_embeddings(tmp_path: Path) -> None:
    embeddings_cache = pytest.importorskip(
        "langchain_classic.embeddings",
        reason="CacheBackedEmbeddings lives in langchain-classic",
    )
    from langchain_core.embeddings import DeterministicFakeEmbedding

    class CountingEmbedding(DeterministicFakeEmbedding):
        calls: int = 0

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            self.calls += len(texts)
            return super().embed_documents(texts)

    underlying = CountingEmbedding(size=8)
    with PersistByteStore(tmp_path / "emb") as store:
        embedder = embeddings_cache.CacheBackedEmbeddings.from_bytes_store(
            underlying, store, namespace="fake-8", key_encoder="blake2b"
        )
        first = embedder.embed_documents(["alpha", "beta"])
        again = embedder.embed_documents(["beta", "alpha", "gamma"])
        assert again[:2] == [first[1], first[0]]
        assert underlying.calls == 3
        assert len(list(store.yield_keys(prefix="fake-8"))) == 3
