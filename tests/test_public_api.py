"""The public surface: a sorted, complete __all__, names shown as persistdict.X."""

from __future__ import annotations

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
