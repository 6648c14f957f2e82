"""Open each store given and read all of it; report what happened, never crash.

Usage: open_damaged.py STORE...

Prints one JSON object: {store: [outcome, detail]}, outcome being "opened"
(with the number of entries read), or the name of the exception raised.
"""

from __future__ import annotations

import json
import sys

from persistdict import PersistDict, PersistDictError


def main() -> None:
    results: dict[str, list[object]] = {}
    for path in sys.argv[1:]:
        try:
            with PersistDict(path) as d:
                entries = dict(d.items())
            results[path] = ["opened", len(entries)]
        except PersistDictError as exc:
            results[path] = [type(exc).__name__, str(exc)]
    sys.stdout.write(json.dumps(results) + "\n")


if __name__ == "__main__":
    main()
