"""Cache keys for memoized calls: normalisation, canonical bytes, xxh3-128.

A call is first *normalised*: its arguments are bound to the function's signature
with defaults applied, so ``f(1)``, ``f(1, 1)`` and ``f(x=1, y=1)`` are one call;
the names given in ``ignore=`` are dropped and ``**kwargs`` are sorted.

The normalised values are then turned into *canonical bytes*, the same in every
process whatever ``PYTHONHASHSEED``:

- Plain data (exact ``str``, ``int``, ``float``, ``bool``, ``None``, ``bytes`` and
  tuples/lists of them) takes a fast path: ``marshal`` format 0 of the tuple of
  values, which has neither references nor interning marks (so ``(s, s)`` and
  ``(s, copy(s))`` give the same bytes) and costs a fraction of a pickle.
- Anything else goes through a canonical encoder: sets and frozensets are sorted
  by the bytes of their elements, dicts by the bytes of their keys, repeated
  references are written out each time (``[s, s]`` and ``[s, copy(s)]`` are one
  key), a tuple is never a list, and numpy arrays are read as dtype, shape and
  data without importing numpy. Other objects are encoded from their pickle
  reduction (``__reduce_ex__``), with the class named by module and qualified
  name, so an instance of a class defined in ``__main__`` (a notebook) hashes by
  its value, not by cloudpickle's per-process identity of the class. Functions
  that cannot be found by name (lambdas, notebook functions) are encoded from
  their code, defaults and closure. What pickle cannot reduce goes to cloudpickle.

With ``typed=False`` (the default, as in ``functools.lru_cache``) numbers that
compare equal are one call: ``1``, ``1.0`` and ``True``. With ``typed=True`` they
are three.

The key is ``namespace + xxh3_128(bytes).hexdigest()``, where the namespace is
``"{module}:{qualname}:{version}:"``, so one function's entries are adjacent in
the store and ``cache_clear()`` is a prefix delete.
"""

from __future__ import annotations

import copyreg
import inspect
import marshal
import pickle
import struct
import sys
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

import xxhash

__all__ = ("CallKey", "canonical_bytes", "function_namespace")

_MISSING: Final = object()
_RECENT_KEYS: Final = 256  # call keys remembered per function (see make_key)
_RECENT_BYTES: Final = 1024  # of a call's arguments (marshalled), to remember it
_SCALARS: Final = frozenset({str, int, float, bool, type(None), bytes})
# Scalars that typed=False leaves as they are (floats and bools become ints).
_STABLE_SCALARS: Final = frozenset({str, int, type(None), bytes})
_PACK_DOUBLE: Final = struct.Struct("<d").pack
_FUNCTION_TYPES: Final = (types.FunctionType,)
_BUILTIN_TYPES: Final = (
    types.BuiltinFunctionType,
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
    types.MethodWrapperType,
)


# ---------------------------------------------------------------- namespaces


def _main_module_name() -> str:
    """Name to use for ``__main__``: its import name under ``python -m``, the
    script's stem for ``python script.py``, plain ``__main__`` in a notebook."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None):
        return str(spec.name)
    filename = getattr(main, "__file__", None)
    if isinstance(filename, str) and filename:
        return f"__main__.{Path(filename).stem}"
    return "__main__"


def function_namespace(func: Callable[..., Any], version: str | None) -> str:
    """Return ``"{module}:{qualname}:{version}:"``, the prefix of ``func``'s keys.

    A lambda has no distinctive name, so its qualified name gets a short hash of
    its code: two memoized lambdas in one module do not share entries.
    """
    if version is not None:
        if not isinstance(version, str):
            raise TypeError(
                f"version must be a str or None, not {type(version).__name__}"
            )
        if ":" in version:
            raise ValueError(f"version must not contain ':' (got {version!r})")
    module = getattr(func, "__module__", None) or "__main__"
    if module == "__main__":
        module = _main_module_name()
    qualname = str(
        getattr(func, "__qualname__", None)
        or getattr(func, "__name__", None)
        or type(func).__qualname__
    )
    code = getattr(inspect.unwrap(func), "__code__", None)
    if "<lambda>" in qualname and isinstance(code, types.CodeType):
        out: list[bytes] = []
        _encode_code(code, out, True)
        qualname += "#" + xxhash.xxh3_64_hexdigest(b"".join(out))
    return f"{module}:{qualname}:{version or ''}:"


# ---------------------------------------------------------------- fast path


def _plain_typed(value: Any) -> bool:
    """True if ``repr(value)`` is a canonical, unambiguous encoding of it."""
    t = type(value)
    if t in _SCALARS:
        return True
    if t is tuple or t is list:
        return all(_plain_typed(item) for item in value)
    return False


def _unify_number(value: Any) -> Any:
    t = type(value)
    if t is float:
        return int(value) if value.is_integer() else value
    if t is bool:
        return int(value)
    return value


def _plain_untyped(value: Any) -> Any:
    """``value`` with equal numbers unified (``True``/``1.0`` -> ``1``), or
    ``_MISSING`` if it is not plain data."""
    t = type(value)
    if t is str or t is int or t is bytes or value is None:
        return value
    if t is float:
        return int(value) if value.is_integer() else value
    if t is bool:
        return int(value)
    if t is tuple or t is list:
        items = []
        for item in value:
            item = _plain_untyped(item)
            if item is _MISSING:
                return _MISSING
            items.append(item)
        return tuple(items) if t is tuple else items
    return _MISSING


# ---------------------------------------------------------------- canonical encoder


def _encode(obj: Any, out: list[bytes], typed: bool, stack: list[int]) -> None:
    t = type(obj)
    if t is str:
        data = obj.encode("utf-8", "surrogatepass")
        out.append(b"s%d:" % len(data))
        out.append(data)
    elif t is int or (t is bool and not typed):
        out.append(b"i%x;" % obj)
    elif t is bool:
        out.append(b"T" if obj else b"F")
    elif t is float:
        if not typed and obj.is_integer():
            out.append(b"i%x;" % int(obj))
        else:
            out.append(b"f" + _PACK_DOUBLE(obj))
    elif obj is None:
        out.append(b"N")
    elif t is bytes:
        out.append(b"b%d:" % len(obj))
        out.append(obj)
    elif t is bytearray:
        out.append(b"y%d:" % len(obj))
        out.append(bytes(obj))
    elif t is complex:
        if not typed and obj.imag == 0:
            _encode(obj.real, out, typed, stack)
        else:
            out.append(b"c" + _PACK_DOUBLE(obj.real) + _PACK_DOUBLE(obj.imag))
    elif t is tuple or t is list or t is dict or t is set or t is frozenset:
        _encode_container(obj, t, out, typed, stack)
    else:
        _encode_object(obj, t, out, typed, stack)


def _to_bytes(obj: Any, typed: bool, stack: list[int]) -> bytes:
    out: list[bytes] = []
    _encode(obj, out, typed, stack)
    return b"".join(out)


def _back_reference(obj: object, out: list[bytes], stack: list[int]) -> bool:
    """Write a reference to an enclosing object if ``obj`` is one (a cycle)."""
    ident = id(obj)
    if ident in stack:
        out.append(b"@%d;" % (len(stack) - stack.index(ident)))
        return True
    return False


def _encode_container(
    obj: Any, t: type, out: list[bytes], typed: bool, stack: list[int]
) -> None:
    if _back_reference(obj, out, stack):
        return
    stack.append(id(obj))
    try:
        if t is tuple or t is list:
            out.append(b"(%d:" % len(obj) if t is tuple else b"[%d:" % len(obj))
            for item in obj:
                _encode(item, out, typed, stack)
        elif t is dict:
            pairs = sorted(
                (_to_bytes(k, typed, stack), _to_bytes(v, typed, stack))
                for k, v in obj.items()
            )
            out.append(b"{%d:" % len(pairs))
            for key_bytes, value_bytes in pairs:
                out.append(key_bytes)
                out.append(value_bytes)
        else:
            items = sorted(_to_bytes(item, typed, stack) for item in obj)
            out.append(b"<%d:" % len(items) if t is set else b">%d:" % len(items))
            out.extend(items)
    finally:
        stack.pop()


def _reference(obj: Any) -> bytes | None:
    """``b"module:qualname"`` if ``obj`` can be found again by that name."""
    module_name = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module_name, str) or not isinstance(qualname, str):
        return None
    if module_name == "__main__":
        # Found by name in this process, but __main__ is another program in the
        # next one: name it as function_namespace() does.
        module_name = _main_module_name()
        module = sys.modules.get("__main__")
    else:
        module = sys.modules.get(module_name)
    if module is None:
        return None
    found: Any = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
        if found is None:
            return None
    if found is not obj:
        return None
    return f"{module_name}:{qualname}".encode()


def _encode_class(cls: type, out: list[bytes]) -> None:
    module_name = cls.__module__
    if module_name == "__main__":
        module_name = _main_module_name()
    name = f"{module_name}:{cls.__qualname__}".encode()
    out.append(b"K%d:" % len(name))
    out.append(name)


def _encode_code(code: types.CodeType, out: list[bytes], typed: bool) -> None:
    out.append(b"C")
    out.append(code.co_code)
    for names in (code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars):
        _encode(names, out, True, [])
    out.append(b"%d:%d:%d;" % (code.co_argcount, code.co_kwonlyargcount, code.co_flags))
    out.append(b"(%d:" % len(code.co_consts))
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _encode_code(const, out, typed)
        else:
            _encode(const, out, True, [])


def _encode_function(
    func: types.FunctionType, out: list[bytes], typed: bool, stack: list[int]
) -> None:
    """Encode a function that cannot be found by name, from what it does."""
    if _back_reference(func, out, stack):
        return
    stack.append(id(func))
    try:
        name = func.__qualname__.encode()
        out.append(b"L%d:" % len(name))
        out.append(name)
        _encode_code(func.__code__, out, typed)
        _encode(func.__defaults__, out, typed, stack)
        _encode(func.__kwdefaults__, out, typed, stack)
        cells = func.__closure__ or ()
        out.append(b"(%d:" % len(cells))
        for cell in cells:
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell: the variable is not bound yet
                out.append(b"E")
            else:
                _encode(contents, out, typed, stack)
    finally:
        stack.pop()


def _encode_object(
    obj: Any, t: type, out: list[bytes], typed: bool, stack: list[int]
) -> None:
    if t.__name__ == "ndarray" and t.__module__ == "numpy":
        _encode_ndarray(obj, out, typed, stack)
        return
    if isinstance(obj, type):
        _encode_class(obj, out)
        return
    if isinstance(obj, _FUNCTION_TYPES + _BUILTIN_TYPES):
        name = _reference(obj)
        if name is not None:
            out.append(b"F%d:" % len(name))
            out.append(name)
            return
        if isinstance(obj, types.FunctionType):
            _encode_function(obj, out, typed, stack)
            return
    if isinstance(obj, types.ModuleType):
        name = obj.__name__.encode()
        out.append(b"m%d:" % len(name))
        out.append(name)
        return
    if isinstance(obj, types.CodeType):
        _encode_code(obj, out, typed)
        return
    if _back_reference(obj, out, stack):
        return
    stack.append(id(obj))
    try:
        _encode_reduced(obj, t, out, typed, stack)
    finally:
        stack.pop()


def _encode_reduced(
    obj: Any, t: type, out: list[bytes], typed: bool, stack: list[int]
) -> None:
    reducer = copyreg.dispatch_table.get(t)
    try:
        reduced = reducer(obj) if reducer is not None else obj.__reduce_ex__(5)
    except (TypeError, pickle.PicklingError):  # pickle cannot: try cloudpickle
        _encode_cloudpickled(obj, t, out)
        return
    if isinstance(reduced, str):  # a global singleton, found by name
        module_name = getattr(obj, "__module__", None) or t.__module__
        name = f"{module_name}:{reduced}".encode()
        out.append(b"G%d:" % len(name))
        out.append(name)
        return
    parts = tuple(reduced) + (None,) * (6 - len(reduced))
    constructor, args, state, list_items, dict_items, _setter = parts[:6]
    out.append(b"R")
    _encode(constructor, out, typed, stack)
    _encode(tuple(args), out, typed, stack)
    _encode(state, out, typed, stack)
    _encode(None if list_items is None else list(list_items), out, typed, stack)
    if dict_items is None:
        out.append(b"N")
    else:
        # The order is kept: dict subclasses such as OrderedDict compare by it.
        pairs = list(dict_items)
        out.append(b"{%d:" % len(pairs))
        for key, value in pairs:
            _encode(key, out, typed, stack)
            _encode(value, out, typed, stack)


def _encode_cloudpickled(obj: Any, t: type, out: list[bytes]) -> None:
    import cloudpickle

    try:
        data = cloudpickle.dumps(obj, protocol=5)
    except (TypeError, pickle.PicklingError, AttributeError) as exc:
        raise TypeError(
            f"cannot make a cache key from an argument of type "
            f"{t.__module__}.{t.__qualname__} ({exc}); leave it out of the key "
            f"with ignore=(name,) or compute the key yourself with key=..."
        ) from exc
    out.append(b"P%d:" % len(data))
    out.append(data)


def _encode_ndarray(arr: Any, out: list[bytes], typed: bool, stack: list[int]) -> None:
    header = f"{arr.dtype!r}{arr.shape!r}".encode()
    out.append(b"A%d:" % len(header))
    out.append(header)
    if arr.dtype.hasobject:  # the buffer holds pointers: encode the objects
        _encode(arr.tolist(), out, typed, stack)
    else:
        data = arr.tobytes()
        out.append(b"%d:" % len(data))
        out.append(data)


def canonical_bytes(values: tuple[Any, ...], typed: bool = False) -> bytes:
    """Canonical bytes of a tuple of values: equal values give equal bytes in
    every process.

    Plain data takes the fast path (``marshal`` format 0, which has no
    references and no interning marks, so it depends only on the values);
    everything else the encoder above. The two never produce the same bytes:
    a marshalled tuple starts with ``(``, the encoder's output with ``\\x00``.
    """
    if (_SCALARS if typed else _STABLE_SCALARS).issuperset(map(type, values)):
        return marshal.dumps(values, 0)
    if _SCALARS.issuperset(map(type, values)):  # typed=False, flat: unify numbers
        return marshal.dumps(tuple([_unify_number(v) for v in values]), 0)
    plain: Any
    try:
        plain = (
            _plain_untyped(values)
            if not typed
            else (values if _plain_typed(values) else _MISSING)
        )
    except RecursionError:  # a list holding itself: the encoder handles cycles
        plain = _MISSING
    if plain is not _MISSING:
        return marshal.dumps(plain, 0)
    out = [b"\x00"]
    _encode(values, out, typed, [])
    return b"".join(out)


# ---------------------------------------------------------------- call binding


class CallKey:
    """Makes the key of a call to one function.

    ``CallKey(func, namespace=..., typed=..., ignore=..., key=...)(args, kwargs)``
    returns ``namespace + 32 hex digits``. Everything that depends only on the
    function (its signature, which arguments to drop) is worked out here, once,
    so that a call binds its arguments with a few list operations.
    """

    __slots__ = (
        "_bind",
        "_defaults",
        "_drop",
        "_ignore_kwargs",
        "_key",
        "_kw_index",
        "_npositional",
        "_qualname",
        "_required",
        "_seed",
        "_signature",
        "_typed",
        "namespace",
    )

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        namespace: str,
        typed: bool = False,
        ignore: Iterable[str] = (),
        key: Callable[..., Any] | None = None,
    ) -> None:
        self.namespace = namespace
        self._typed = typed
        self._key = key
        self._qualname = getattr(func, "__qualname__", repr(func))
        ignored = (ignore,) if isinstance(ignore, str) else tuple(ignore)
        if key is not None and ignored:
            raise TypeError(
                "give either key= or ignore=, not both: key= already decides "
                "which arguments identify a call"
            )
        signature = inspect.signature(func)
        self._signature = signature
        params = list(signature.parameters.values())
        names = [p.name for p in params]
        has_var_keyword = any(p.kind is p.VAR_KEYWORD for p in params)
        unknown = [n for n in ignored if n not in names]
        if unknown and not has_var_keyword:
            raise ValueError(
                f"ignore= names {unknown} are not parameters of "
                f"{self._qualname}{signature}"
            )
        self._ignore_kwargs = frozenset(unknown)
        self._drop = frozenset(i for i, n in enumerate(names) if n in ignored)
        simple = all(
            p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY, p.POSITIONAL_ONLY)
            for p in params
        )
        self._bind = self._bind_simple if simple else self._bind_general
        self._npositional = sum(
            p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params
        )
        self._kw_index = {
            p.name: i
            for i, p in enumerate(params)
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }
        self._defaults = [
            _MISSING if p.default is p.empty else p.default for p in params
        ]
        # _required[n]: parameters that have no default and come at or after
        # position n: a call with n positional arguments must name them.
        required = [i for i, p in enumerate(params) if p.default is p.empty]
        self._required = [
            tuple(i for i in required if i >= n) for n in range(len(params) + 1)
        ]
        # Parameter names and kinds are part of every key: renaming or
        # reordering parameters, or switching typed=, never reads entries of the
        # old form. Annotations and defaults are not (defaults are applied to
        # the values), so adding type hints keeps the entries.
        shape = ",".join(f"{p.kind.name}:{p.name}" for p in params)
        header = f"{shape}|typed={typed}|ignore={sorted(ignored)}|key={key is not None}"
        self._seed = xxhash.xxh3_64_intdigest(header.encode("utf-8", "surrogatepass"))

    def _bind_simple(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        n = len(args)
        if n > self._npositional:
            return self._bind_general(args, kwargs)
        values = list(args)
        values.extend(self._defaults[n:])
        if kwargs:
            kw_index = self._kw_index
            for name, value in kwargs.items():
                i = kw_index.get(name, -1)
                if i < n:  # unknown, positional-only, or given twice
                    return self._bind_general(args, kwargs)
                values[i] = value
        for i in self._required[n]:
            if values[i] is _MISSING:
                return self._bind_general(args, kwargs)
        if self._drop:
            drop = self._drop
            return tuple(v for i, v in enumerate(values) if i not in drop)
        return tuple(values)

    def _bind_general(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self._qualname}(): {exc}") from None
        bound.apply_defaults()
        values = []
        for i, (param, value) in enumerate(
            zip(
                self._signature.parameters.values(),
                bound.arguments.values(),
                strict=True,
            )
        ):
            if i in self._drop:
                continue
            if param.kind is param.VAR_KEYWORD:
                value = {k: v for k, v in value.items() if k not in self._ignore_kwargs}
            values.append(value)
        return tuple(values)

    def normalize(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The normalised call: bound values in parameter order, or what key= gave."""
        if self._key is not None:
            return (self._key(*args, **kwargs),)
        return self._bind(args, kwargs)

    def make_key_function(self) -> Callable[[tuple[Any, ...], dict[str, Any]], str]:
        """A function ``(args, kwargs) -> key`` with everything looked up once."""
        namespace = self.namespace
        seed = self._seed
        typed = self._typed
        stable = _SCALARS if typed else _STABLE_SCALARS
        hexdigest = xxhash.xxh3_128_hexdigest
        dumps = marshal.dumps
        normalize = self._bind if self._key is None else self.normalize
        nparams = len(self._defaults)
        # All parameters positional: a call with one value each binds as is.
        exact = (
            self._key is None
            and not self._drop
            and self._bind == self._bind_simple
            and self._npositional == nparams
        )

        # The keys of recent calls whose arguments are all of the stable scalar
        # types, by their argument tuple: for those, equal tuples (==, as a dict
        # compares them) have equal marshal bytes, hence equal keys. Not with
        # typed=True, where 1 == 1.0 but their keys differ. Only small calls are
        # remembered (the dict keeps their arguments alive): at most
        # _RECENT_KEYS x _RECENT_BYTES of them.
        recent: dict[tuple[Any, ...], str] = {}
        remember = exact and not typed

        def make_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
            if exact and not kwargs and len(args) == nparams:
                values = args
            else:
                values = normalize(args, kwargs)
            if stable.issuperset(map(type, values)):
                if remember and values is args:
                    key = recent.get(args)
                    if key is None:
                        data = dumps(args, 0)
                        key = namespace + hexdigest(data, seed)
                        if len(data) <= _RECENT_BYTES:
                            if len(recent) >= _RECENT_KEYS:
                                recent.clear()
                            recent[args] = key
                    return key
                return namespace + hexdigest(dumps(values, 0), seed)
            return namespace + hexdigest(canonical_bytes(values, typed), seed)

        return make_key

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The key of the call ``func(*args, **kwargs)``."""
        return self.namespace + xxhash.xxh3_128_hexdigest(
            canonical_bytes(self.normalize(args, kwargs), self._typed), self._seed
        )
