"""Cache keys: normalisation, canonical bytes, stability across processes."""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from persistdict._keys import CallKey, canonical_bytes, function_namespace


def f(x: Any, y: Any = 1, *, z: Any = None) -> Any:
    return x


def key_of(func: Any = f, *args: Any, typed: bool = False, **kwargs: Any) -> str:
    make = CallKey(
        func, namespace=function_namespace(func, None), typed=typed
    ).make_key_function()
    return make(args, kwargs)


def test_one_call_however_it_is_spelled() -> None:
    keys = {
        key_of(f, 1),
        key_of(f, 1, 1),
        key_of(f, x=1),
        key_of(f, 1, y=1),
        key_of(f, x=1, y=1, z=None),
        key_of(f, y=1, x=1),
    }
    assert len(keys) == 1
    assert key_of(f, 1, 2) not in keys


def test_slow_and_fast_binding_agree() -> None:
    call_key = CallKey(f, namespace="ns:")
    make = call_key.make_key_function()
    for args, kwargs in [((1,), {}), ((1, 2), {"z": 3}), ((), {"x": "a", "y": [1]})]:
        assert make(args, kwargs) == call_key(args, kwargs)


def test_key_has_namespace_prefix_and_128_bit_hash() -> None:
    key = key_of(f, 1)
    namespace = function_namespace(f, None)
    assert namespace.endswith(f":{f.__qualname__}::")
    assert key.startswith(namespace)
    assert len(key) - len(namespace) == 32
    assert function_namespace(f, "v2").endswith(":v2:")


def test_version_cannot_hold_the_separator() -> None:
    with pytest.raises(ValueError, match="':'"):
        function_namespace(f, "a:b")


def test_lambdas_get_distinct_namespaces() -> None:
    def make_double() -> Any:
        return lambda x: x * 2

    def make_triple() -> Any:
        return lambda x: x * 3

    a, b = make_double(), make_triple()
    assert function_namespace(a, None) != function_namespace(b, None)
    assert function_namespace(a, None) == function_namespace(make_double(), None)


def test_untyped_numbers_are_one_call_like_functools() -> None:
    assert key_of(f, 1) == key_of(f, 1.0) == key_of(f, True)
    assert key_of(f, (1, [2.0])) == key_of(f, (1.0, [2]))
    assert key_of(f, 1.5) != key_of(f, 1)
    assert key_of(f, {1: "a"}) == key_of(f, {1.0: "a"})


def test_typed_keeps_number_types_apart() -> None:
    keys = {key_of(f, v, typed=True) for v in (1, 1.0, True)}
    assert len(keys) == 3
    assert key_of(f, 1, typed=True) != key_of(f, 1, typed=False)


def test_containers_keep_their_type_and_order() -> None:
    assert key_of(f, (1, 2)) != key_of(f, [1, 2])
    assert key_of(f, [1, 2]) != key_of(f, [2, 1])
    assert key_of(f, {1, 2}) != key_of(f, frozenset({1, 2}))
    assert key_of(f, b"ab") != key_of(f, bytearray(b"ab"))
    assert key_of(f, "1") != key_of(f, 1)
    assert key_of(f, ("a", "b")) != key_of(f, ("ab",))


def test_sets_and_dicts_are_canonical() -> None:
    assert key_of(f, {"b": 1, "a": 2}) == key_of(f, {"a": 2, "b": 1})
    assert key_of(f, {"x", "y", "z"}) == key_of(f, set(reversed(["x", "y", "z"])))
    assert key_of(f, {"b": 1, "a": 2}) != key_of(f, {"b": 2, "a": 1})


def test_pickle_memo_aliasing_is_neutralised() -> None:
    s = {"a", "b"}
    text = "".join(["ab", "c"])
    assert key_of(f, [s, s]) == key_of(f, [s, copy.copy(s)])
    assert key_of(f, ("abc", "abc")) == key_of(f, ("abc", text))
    assert key_of(f, [[1], [1]]) == key_of(f, [[1]] * 2)


def test_ordered_dict_order_matters_as_for_equality() -> None:
    a = OrderedDict([("a", 1), ("b", 2)])
    b = OrderedDict([("b", 2), ("a", 1)])
    assert a != b
    assert key_of(f, a) != key_of(f, b)
    assert key_of(f, a) == key_of(f, OrderedDict(a))


@dataclass
class Point:
    x: int
    tags: set[str] = field(default_factory=set)


def test_objects_hash_by_value_with_canonical_state() -> None:
    assert key_of(f, Point(1, {"a", "b"})) == key_of(f, Point(1, {"b", "a"}))
    assert key_of(f, Point(1)) != key_of(f, Point(2))


def test_numpy_arrays_by_dtype_shape_and_data() -> None:
    a = np.arange(6, dtype=np.int64)
    assert key_of(f, a) == key_of(f, a.copy())
    assert key_of(f, a) != key_of(f, a.astype(np.int32))
    assert key_of(f, a) != key_of(f, a.reshape(2, 3))
    assert key_of(f, a.reshape(2, 3).T) == key_of(
        f, np.ascontiguousarray(a.reshape(2, 3).T)
    )
    objects = np.array([{"b", "a"}, None], dtype=object)
    assert key_of(f, objects) == key_of(f, np.array([{"a", "b"}, None], dtype=object))


def test_cycles_and_huge_ints_are_encoded() -> None:
    a: list[Any] = [1]
    a.append(a)
    b: list[Any] = [1]
    b.append(b)
    assert key_of(f, a) == key_of(f, b)
    assert key_of(f, a) != key_of(f, [1, [1]])
    assert key_of(f, 10**5000) != key_of(f, 10**5000 + 1)


def test_functions_by_reference_or_by_code() -> None:
    assert key_of(f, len) != key_of(f, abs)
    assert key_of(f, lambda x: x + 1) == key_of(f, lambda x: x + 1)
    assert key_of(f, lambda x: x + 1) != key_of(f, lambda x: x + 2)
    n = 3
    assert key_of(f, lambda x: x + n) != key_of(f, lambda x: x + 4)


def test_unencodable_argument_names_the_fix() -> None:
    with pytest.raises(TypeError, match=r"ignore="):
        key_of(f, threading.Lock())


def test_ignore_and_key() -> None:
    def g(self: Any, x: int, **options: Any) -> int:
        return x

    make = CallKey(g, namespace="ns:", ignore=("self", "verbose")).make_key_function()
    assert make((object(), 1), {}) == make((threading.Lock(), 1), {"verbose": True})
    assert make((None, 1), {"other": 1}) != make((None, 1), {})
    by_key = CallKey(g, namespace="ns:", key=lambda self, x, **o: x).make_key_function()
    assert by_key((threading.Lock(), 5), {}) == by_key((None, 5), {"a": 1})
    with pytest.raises(ValueError, match="not parameters"):
        CallKey(f, namespace="ns:", ignore=("nope",))
    with pytest.raises(TypeError, match="either key= or ignore="):
        CallKey(f, namespace="ns:", ignore=("x",), key=lambda *a: a)


def test_binding_errors_are_type_errors_naming_the_function() -> None:
    make = CallKey(f, namespace="ns:").make_key_function()
    with pytest.raises(TypeError, match=r"f\(\)"):
        make((), {})
    with pytest.raises(TypeError):
        make((1, 2, 3), {})
    with pytest.raises(TypeError):
        make((1,), {"x": 1})


def test_var_args_are_part_of_the_key() -> None:
    def g(*args: Any, **kwargs: Any) -> None:
        pass

    make = CallKey(g, namespace="ns:").make_key_function()
    assert make((1, 2), {"a": 1, "b": 2}) == make((1, 2), {"b": 2, "a": 1})
    assert make((1, 2), {}) != make((2, 1), {})


# Plain data, and the same data rebuilt so that only identity and order differ.
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=5)
    | st.binary(max_size=5)
)
hashables = st.recursive(
    scalars,
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=6,
)
values = st.recursive(
    hashables,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(hashables, inner, max_size=3)
        | st.sets(hashables, max_size=3)
    ),
    max_leaves=12,
)


def rebuilt(value: Any) -> Any:
    """An equal value built anew, with dicts and sets in reverse order."""
    if isinstance(value, dict):
        return {rebuilt(k): rebuilt(value[k]) for k in reversed(list(value))}
    if isinstance(value, (set, frozenset)):
        return type(value)(rebuilt(v) for v in reversed(list(value)))
    if isinstance(value, (list, tuple)):
        return type(value)(rebuilt(v) for v in value)
    if isinstance(value, str):
        return "".join(list(value))
    return copy.copy(value)


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (what typed=True keeps apart)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and str(a) == str(b)  # -0.0 and 0.0 are two keys when typed
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            any(same(k, k2) and same(v, b[k2]) for k2 in b) for k, v in a.items()
        )
    if isinstance(a, (set, frozenset)):
        return len(a) == len(b) and all(any(same(x, y) for y in b) for x in a)
    return bool(a == b)


@given(values)
def test_equal_values_give_equal_bytes(value: Any) -> None:
    for typed in (False, True):
        assert canonical_bytes((value,), typed) == canonical_bytes(
            (rebuilt(value),), typed
        )


@given(values, values)
def test_different_values_give_different_bytes(a: Any, b: Any) -> None:
    if not same(a, b):
        assert canonical_bytes((a,), True) != canonical_bytes((b,), True)
    if a != b:
        assert canonical_bytes((a,), False) != canonical_bytes((b,), False)


def g(a: Any, b: Any) -> Any:
    return a


_scalars = st.one_of(
    st.integers(-2, 2),
    st.booleans(),
    st.floats(-2, 2, allow_nan=False),
    st.none(),
    st.text(max_size=2),
    st.binary(max_size=2),
)


@given(st.lists(st.tuples(_scalars, _scalars), max_size=40), st.booleans())
def test_remembered_call_keys_are_the_computed_keys(
    calls: list[tuple[Any, Any]], typed: bool
) -> None:
    # A key function remembers the keys of recent calls of plain scalars: what
    # it answers, in any order of calls, is what a new one computes.
    reused = CallKey(g, namespace="n:", typed=typed).make_key_function()
    for args in calls + calls[::-1]:
        fresh = CallKey(g, namespace="n:", typed=typed).make_key_function()
        assert reused(args, {}) == fresh(args, {})


def test_remembered_call_keys_stay_right_past_the_bound() -> None:
    reused = CallKey(g, namespace="n:", typed=False).make_key_function()
    fresh = CallKey(g, namespace="n:", typed=False).make_key_function()
    first = [reused((i, "x"), {}) for i in range(1000)]
    assert len(set(first)) == 1000
    assert [reused((i, "x"), {}) for i in range(1000)] == first
    assert first == [fresh((i, "x"), {}) for i in range(1000)]
    assert reused((True, "x"), {}) == reused((1, "x"), {}) == reused((1.0, "x"), {})
    typed = CallKey(g, namespace="n:", typed=True).make_key_function()
    assert len({typed((v, "x"), {}) for v in (1, True, 1.0, 1, True, 1.0)}) == 3


def test_large_arguments_are_not_kept_alive() -> None:
    import sys

    reused = CallKey(g, namespace="n:", typed=False).make_key_function()
    small, large = "s" * 100, "l" * 100_000
    before = sys.getrefcount(small), sys.getrefcount(large)
    reused((1, small), {})
    reused((1, large), {})
    # Only the small call is remembered (by its arguments' tuple).
    assert sys.getrefcount(small) == before[0] + 1
    assert sys.getrefcount(large) == before[1]
    fresh = CallKey(g, namespace="n:", typed=False).make_key_function()
    assert reused((1, large), {}) == fresh((1, large), {})
