"""The public surface: a sorted, complete __all__, names shown as persistdict.X."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import persistdict


def test_all_is_sorted_and_complete() -> None:
    assert list(persistdict.__all__) == sorted(persistdict.__all__)
    public = {
        name
        for name in vars(persistdict)
        if not name.startswith("_")
        and not isinstance(getattr(persistdict, name), type(persistdict))
    }
    assert public <= set(persistdict.__all__)
    for name in persistdict.__all__:
        assert hasattr(persistdict, name)


def test_exports_name_the_package() -> None:
    for name in persistdict.__all__:
        obj = getattr(persistdict, name)
        if isinstance(obj, type) or callable(obj):
            assert obj.__module__ == "persistdict", name


def test_exception_tree() -> None:
    assert issubclass(persistdict.StoreClosedError, ValueError)
    assert issubclass(persistdict.UnsafeStoreError, PermissionError)
    for name in persistdict.__all__:
        obj = getattr(persistdict, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, persistdict.PersistDictError)


def test_importing_persistdict_imports_no_langchain() -> None:
    import subprocess
    import sys

    code = (
        "import sys, persistdict\n"
        "print(any(m.startswith('langchain') for m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


# Modules that opening a store and reading and writing plain keys must not import
# (start-up time): each is imported where a rarer feature needs it.
_NOT_AT_START = (
    "inspect",
    "logging",
    "hashlib",
    "hmac",
    "datetime",
    "decimal",
    "fractions",
    "uuid",
    "platform",
    "cloudpickle",
    "cachetools",
    "typing",
    "pathlib",
    "threading",
)


def test_plain_use_imports_no_heavy_module(tmp_path: Path, run_py: Any) -> None:
    # Creating a store records its settings through lmdb-dict (YAML, dataclasses):
    # the child opens an existing one, as a program does from its second run on.
    persistdict.PersistDict(tmp_path / "store").close()
    code = (
        "import json, sys\n"
        "import persistdict\n"
        "d = persistdict.PersistDict(sys.argv[1])\n"
        "d['a'] = 1\n"
        "assert d['a'] == 1\n"
        "loaded = [m for m in json.loads(sys.argv[2]) if m in sys.modules]\n"
        "\n"
        "@persistdict.persist_cache(sys.argv[1])\n"
        "def double(x):\n"
        "    return 2 * x\n"
        "\n"
        "assert double(2) == double(2) == 4\n"
        "assert double.cache_info().hits == 1\n"
        "print(json.dumps([loaded, repr(persistdict.CacheInfo)]))\n"
    )
    out = run_py(code, str(tmp_path / "store"), json.dumps(_NOT_AT_START))
    loaded, cache_info = json.loads(out.stdout)
    assert loaded == []
    assert cache_info == "<class 'persistdict.CacheInfo'>"


def test_lazy_names_are_listed() -> None:
    assert set(persistdict.__all__) <= set(dir(persistdict))
