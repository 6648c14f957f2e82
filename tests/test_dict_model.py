"""Model-based test: random operation sequences on a PersistDict and a dict agree."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from persistdict import PersistDict

scalar_keys = st.one_of(
    st.text(max_size=8),
    st.integers(min_value=-5, max_value=5),
    st.sampled_from([0.0, -0.0, 1.0, 2.5, True, False, None, b"", b"k", 1 + 0j]),
    st.integers(0, 3).map(lambda i: "L" * 600 + str(i)),  # over LMDB's key limit
)
keys = st.one_of(
    scalar_keys,
    st.tuples(scalar_keys, scalar_keys),
    st.frozensets(st.integers(0, 4) | st.text(max_size=2), max_size=3),
)
values = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
    st.tuples(st.integers(), st.text(max_size=3)),
)


def typed(obj: Any) -> Any:
    """A structure that tells 1 from 1.0 from True, to compare kept key objects."""
    if isinstance(obj, tuple):
        return ("tuple", tuple(typed(item) for item in obj))
    if isinstance(obj, frozenset):
        return ("frozenset", frozenset(obj), frozenset(type(i).__name__ for i in obj))
    return (type(obj).__name__, obj)


def outcome(fn: Any, *args: Any) -> Any:
    """(result) or (exception type) of a call, to compare two implementations."""
    try:
        return ("ok", fn(*args))
    except (KeyError, TypeError) as exc:
        return ("raised", type(exc))


class DictModel(RuleBasedStateMachine):
    inserted = Bundle("inserted")

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp())
        self.d = PersistDict(self.tmp / "store", durable=False)
        self.model: dict[Any, Any] = {}

    def teardown(self) -> None:
        self.d.close()
        shutil.rmtree(self.tmp)

    @rule(target=inserted, key=keys, value=values)
    def setitem(self, key: Any, value: Any) -> Any:
        self.d[key] = value
        self.model[key] = value
        return key

    @rule(key=st.one_of(inserted, keys))
    def getitem(self, key: Any) -> None:
        assert outcome(self.d.__getitem__, key) == outcome(self.model.__getitem__, key)

    @rule(key=st.one_of(inserted, keys), default=values)
    def get(self, key: Any, default: Any) -> None:
        assert self.d.get(key, default) == self.model.get(key, default)
        assert self.d.get(key) == self.model.get(key)

    @rule(key=st.one_of(inserted, keys))
    def contains(self, key: Any) -> None:
        assert (key in self.d) == (key in self.model)

    @rule(key=st.one_of(inserted, keys))
    def delitem(self, key: Any) -> None:
        assert outcome(self.d.__delitem__, key) == outcome(self.model.__delitem__, key)

    @rule(key=st.one_of(inserted, keys), use_default=st.booleans(), default=values)
    def pop(self, key: Any, use_default: bool, default: Any) -> None:
        if use_default:
            assert self.d.pop(key, default) == self.model.pop(key, default)
        else:
            assert outcome(self.d.pop, key) == outcome(self.model.pop, key)

    @rule()
    def popitem(self) -> None:
        got, expected = outcome(self.d.popitem), outcome(self.model.popitem)
        assert got == expected
        if got[0] == "ok":
            assert typed(got[1][0]) == typed(expected[1][0])

    @rule(key=st.one_of(inserted, keys), default=values)
    def setdefault(self, key: Any, default: Any) -> None:
        assert self.d.setdefault(key, default) == self.model.setdefault(key, default)

    @rule(items=st.lists(st.tuples(keys, values), max_size=5), as_pairs=st.booleans())
    def update(self, items: list[tuple[Any, Any]], as_pairs: bool) -> None:
        arg: Any = items if as_pairs else dict(items)
        self.d.update(arg)
        self.model.update(arg)

    @rule(kwargs=st.dictionaries(st.sampled_from(["a", "b", "c"]), values, max_size=3))
    def update_kwargs(self, kwargs: dict[str, Any]) -> None:
        self.d.update(**kwargs)
        self.model.update(**kwargs)

    @rule(other=st.dictionaries(keys, values, max_size=3))
    def ior(self, other: dict[Any, Any]) -> None:
        self.d |= other
        self.model |= other

    @rule(other=st.dictionaries(keys, values, max_size=3))
    def or_(self, other: dict[Any, Any]) -> None:
        assert (self.d | other) == (self.model | other)
        assert (other | self.d) == (other | self.model)

    @precondition(lambda self: len(self.model) < 30)
    @rule()
    def clear_sometimes(self) -> None:
        # Clearing often would keep the store nearly empty: only when small.
        if len(self.model) % 3 == 0:
            self.d.clear()
            self.model.clear()

    @rule()
    def reopen(self) -> None:
        self.d.close()
        self.d = PersistDict(self.tmp / "store", durable=False)

    @rule()
    def second_handle_agrees(self) -> None:
        other = PersistDict(self.tmp / "store", durable=False, cache_size=0)
        try:
            assert other.copy() == self.model
        finally:
            other.close()

    @invariant()
    def same_contents(self) -> None:
        assert len(self.d) == len(self.model)
        assert [typed(k) for k in self.d] == [typed(k) for k in self.model]
        assert list(self.d.values()) == list(self.model.values())
        assert list(self.d.items()) == list(self.model.items())
        assert [typed(k) for k in reversed(self.d)] == [
            typed(k) for k in reversed(self.model)
        ]
        assert self.d == self.model
        assert self.d.copy() == self.model
        assert dict(self.d) == self.model
        assert {**self.d} == self.model
        assert self.d.keys() == self.model.keys()
        assert self.d.items() == self.model.items()
        assert bool(self.d) == bool(self.model)


DictModel.TestCase.settings = settings(
    settings.get_profile(settings._current_profile or "default"),  # type: ignore[attr-defined]
    stateful_step_count=30,
)
TestDictModel = DictModel.TestCase
