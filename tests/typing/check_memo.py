"""Static checks of persist_cache's types: run by mypy (files = src, tests/typing)."""

from __future__ import annotations

from collections.abc import Callable
from typing import assert_type

from persistdict._memo import CachedFunction, CacheInfo, CacheParameters, persist_cache


@persist_cache
def bare(x: int, y: str = "a") -> list[str]:
    return [y] * x


@persist_cache("cache", expiration_days=1.5, maxsize=None, version="2")
def called(x: int) -> float:
    return x / 2


@persist_cache("cache", ignore=("verbose",))
async def fetch(url: str, *, verbose: bool = False) -> bytes:
    return url.encode()


as_callable: Callable[[int, str], list[str]] = bare
as_cached: CachedFunction[[int, str], list[str]] = bare
assert_type(bare(1), list[str])
assert_type(bare(1, y="b"), list[str])
assert_type(called(3), float)
assert_type(bare.cache_info(), CacheInfo)
assert_type(bare.cache_info().hits, int)
assert_type(bare.cache_parameters(), CacheParameters)
assert_type(bare.cache_contains(1, "b"), bool)
assert_type(bare.cache_invalidate(1), bool)
assert_type(bare.cache_key(1), str)
assert_type(bare.cache_expire(), int)
assert_type(bare.cache_clear(), None)


async def use_fetch() -> None:
    assert_type(await fetch("u"), bytes)
    assert_type(await fetch("u", verbose=True), bytes)


bare("x")  # type: ignore[arg-type]
bare.cache_key(1, 2)  # type: ignore[arg-type]
called(1, 2)  # type: ignore[call-arg]


class Client:
    @persist_cache("cache", ignore=("self",))
    def get(self, key: str) -> int:
        return len(key)


assert_type(Client().get("k"), int)
assert_type(Client.get.cache_info(), CacheInfo)
Client().get(1)  # type: ignore[arg-type]
