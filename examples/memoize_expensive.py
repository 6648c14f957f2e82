"""Memoize a slow function on disk: the second run of this script is instant.

Run it twice::

    python examples/memoize_expensive.py
    python examples/memoize_expensive.py

The first run calls a simulated slow API (0.5 s per city); the second finds
every answer in the store and prints ``misses=0``. The entries live in the
default per-user store (``$PERSISTDICT_CACHE_DIR``, else ``~/.cache/persistdict``)
unless a directory is given::

    python examples/memoize_expensive.py /tmp/weather-cache

``--clear`` removes this function's entries first, to see a cold run again.
"""

from __future__ import annotations

import sys
import time

from persistdict import persist_cache

STORE = next((arg for arg in sys.argv[1:] if not arg.startswith("--")), None)


@persist_cache(STORE, expiration_days=7)
def forecast(city: str, days: int = 3) -> dict[str, object]:
    """Pretend to ask a weather service: slow, and the same answer for a while."""
    time.sleep(0.5)
    base = sum(map(ord, city)) % 15
    return {"city": city, "days": days, "highs": [base + i for i in range(days)]}


def main() -> None:
    if "--clear" in sys.argv:
        forecast.cache_clear()
    start = time.perf_counter()
    for city in ("Lisbon", "Oslo", "Nairobi", "Lima"):
        print(forecast(city))
    print(forecast("Oslo", days=3))  # the same call as forecast("Oslo")
    elapsed = time.perf_counter() - start
    print(f"5 calls in {elapsed:.2f} s; {forecast.cache_info()}")


if __name__ == "__main__":
    main()
