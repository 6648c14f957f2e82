"""LangChain answers and embeddings cached on disk, shared by runs and processes.

Run it with::

    pip install -e ".[langchain]"     # or: pip install "persistdict[langchain]"
    python examples/langchain_cache.py

Part 1 puts a PersistLLMCache behind ``set_llm_cache`` and runs the same small
"application" twice, each time in a new process: the first run calls the model, the
second is served from the cache on disk. The model is a fake that takes half a second
and counts its calls, so no API key is needed.

Part 2 caches embeddings with ``CacheBackedEmbeddings`` over a PersistByteStore. That
class lives in the ``langchain-classic`` package (``pip install langchain-classic``);
without it, part 2 says so and is skipped.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

try:
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from langchain_core.globals import set_llm_cache
    from langchain_core.language_models.llms import LLM
except ImportError:
    sys.exit("This example needs LangChain: pip install 'persistdict[langchain]'")

from persistdict.integrations.langchain import PersistByteStore, PersistLLMCache


class SlowFakeLLM(LLM):
    """Stands for a paid, slow model: answers after half a second."""

    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "slow-fake"

    def _call(
        self, prompt: str, stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> str:
        self.calls += 1
        time.sleep(0.5)
        return f"LMDB keeps {prompt.split()[-1].rstrip('?')} in a memory-mapped B+tree."


def application(cache_dir: str) -> None:
    """One run of an application that asks the model a question."""
    set_llm_cache(PersistLLMCache(cache_dir))
    llm = SlowFakeLLM()
    start = time.perf_counter()
    answer = llm.invoke("Where does LMDB keep data?")
    elapsed = time.perf_counter() - start
    source = "the model" if llm.calls else "the cache"
    print(f"  answer from {source} in {elapsed:.3f} s: {answer}")


class CountingEmbedding(DeterministicFakeEmbedding):
    """A fake embedding model that counts the texts it embeds."""

    calls: int = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += len(texts)
        return super().embed_documents(texts)


def embeddings(store_dir: Path) -> None:
    try:
        from langchain_classic.embeddings import CacheBackedEmbeddings
    except ImportError:
        print(
            "  skipped: CacheBackedEmbeddings is in langchain-classic "
            "(pip install langchain-classic)"
        )
        return
    underlying = CountingEmbedding(size=8)
    with PersistByteStore(store_dir) as store:
        embedder = CacheBackedEmbeddings.from_bytes_store(
            underlying, store, namespace="fake-8", key_encoder="blake2b"
        )
        embedder.embed_documents(["alpha", "beta"])
        print(f"  first batch: {underlying.calls} texts embedded")
        embedder.embed_documents(["alpha", "beta", "gamma"])
        print(f"  second batch: {underlying.calls} texts embedded in all (1 new)")
        print(f"  {len(list(store.yield_keys(prefix='fake-8')))} vectors on disk")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = str(Path(tmp) / "llm-cache")
        print("Part 1: the same application run twice, as two processes")
        for run in (1, 2):
            print(f" run {run}:")
            subprocess.run(
                [sys.executable, __file__, "--application", cache_dir], check=True
            )
        print("Part 2: CacheBackedEmbeddings over a PersistByteStore")
        embeddings(Path(tmp) / "embeddings")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--application"]:
        application(sys.argv[2])
    else:
        main()
