"""Lua <-> Python values for a runtime created with ``encoding=None`` (Lua strings are bytes).

Tables whose keys are exactly 1..n become lists; other tables become dicts (keys keep their
type: strings, integers, floats, booleans). Strings become ``str`` when they are UTF-8, else stay
``bytes``. Together with ``aikit_components.codec`` this round-trips Lua values exactly.
Cycles raise ``ValueError`` instead of recursing forever.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from lupa import lua54

from aikit_components.errors import InvalidArgument

lua_type = lua54.lua_type


def lua_to_python(value: Any, address: Callable[[Any], Any], *, max_depth: int = 64, strict: bool = False) -> Any:
    """A JSON-like Python value for a Lua value (functions and userdata become ``"<kind>"``).

    Only raw access is used (no ``__index``/``__len``/``__tostring``), so no user code runs here:
    this is called with the GIL held. ``address`` gives a table's identity (``%p``), asked only
    for tables that contain tables (cycle detection), so flat tables convert fast.
    With ``strict`` (values to store or send), functions, coroutines and userdata are an
    ``InvalidArgument`` instead of a ``"<function>"`` placeholder; cycles are one either way.
    """
    if isinstance(value, bytes):
        return _text_or_bytes(value)
    kind = lua_type(value)
    if kind is None:
        return value  # None, bool, int, float
    return _convert(value, kind, address, max_depth, strict, (), 0)


def _convert(value: Any, kind: str | None, address: Callable[[Any], Any], max_depth: int, strict: bool,
             path: tuple[Any, ...], depth: int) -> Any:
    if kind != "table":
        if strict:
            raise InvalidArgument(f"a {kind} cannot be stored or sent: use tables, strings, numbers and booleans")
        return f"<{kind}>"
    if depth >= max_depth:
        raise InvalidArgument(f"table nesting deeper than {max_depth} levels")
    items = list(value.items())  # lua_next: raw
    inner_path: tuple[Any, ...] | None = None
    converted = []
    for k, v in items:
        if isinstance(v, bytes):
            v = _text_or_bytes(v)
        else:
            v_kind = lua_type(v)
            if v_kind is not None:
                if v_kind == "table":
                    if inner_path is None:
                        inner_path = path + (address(value),)
                    if address(v) in inner_path:
                        raise InvalidArgument("the table contains a cycle (a table that contains itself) and cannot be "
                                              "stored or sent")
                v = _convert(v, v_kind, address, max_depth, strict, inner_path or path, depth + 1)
        converted.append((_key(k), v))
    n = len(converted)
    if n and all(type(k) is int for k, _ in converted):
        keys = sorted(k for k, _ in converted)
        if keys[0] == 1 and keys[-1] == n:
            converted.sort(key=lambda kv: kv[0])
            return [v for _, v in converted]
    return dict(converted)


def flat_pairs_to_dict(flat: tuple[Any, ...]) -> dict[Any, Any]:
    """The dict of a Lua table that Lua flattened into ``k1, v1, k2, v2, ...`` (string keys and
    string, number or boolean values: what :func:`lua_to_python` makes of the same table, for the
    price of the call's arguments: no table to walk from Python)."""
    # A loop rather than a comprehension (which is a function call of its own), and the keys
    # (argument names: a few, used again and again) decoded once: this runs for every Tool.call.
    converted = {}
    known = _FLAT_KEYS.get
    pairs = iter(flat)
    for k in pairs:
        v = next(pairs)
        converted[known(k) or _flat_key(k)] = _text_or_bytes(v) if type(v) is bytes else v
    return converted


#: Keys of flattened tables decoded so far (bytes -> str); bounded (emptied when full).
_FLAT_KEYS: dict[bytes, str] = {}
_FLAT_KEYS_MAX = 1024


def _flat_key(raw: bytes) -> str | bytes:
    key = _text_or_bytes(raw)
    if type(key) is str and key:
        if len(_FLAT_KEYS) >= _FLAT_KEYS_MAX:
            _FLAT_KEYS.clear()
        _FLAT_KEYS[raw] = key
    return key


def _key(k: Any) -> Any:
    return _text_or_bytes(k) if isinstance(k, bytes) else k


def _text_or_bytes(raw: bytes) -> str | bytes:
    """Lua strings are bytes: text when they are UTF-8, else kept as bytes (binary data)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


_LUA_INT_MIN, _LUA_INT_MAX = -(2**63), 2**63 - 1
#: Types python_to_lua returns as they are (exactly these types: a subclass takes the general path).
_AS_THEY_ARE = frozenset({float, bool, type(None), bytes})

# Per runtime (by id), a Lua function made on its main thread that returns a new table. lupa binds
# a table made with runtime.table() inside a coroutine's callback to that coroutine's thread, which
# Lua frees with the coroutine: a Python reference that outlives it (a traceback, a cache) would
# then touch freed memory (lupa issue #84). A table returned by this function is bound to the main
# thread. Registered by the engine (register_table_maker), forgotten when it closes. The map holds
# the function weakly (through its TableMaker, which the engine keeps): the function refers to its
# runtime, and so to the engine, which a strong reference here would keep alive for good.
_table_makers: dict[int, weakref.ref[TableMaker]] = {}


class TableMaker:
    """A runtime's table maker, as registered: whoever registered it keeps it alive."""

    __slots__ = ("make", "__weakref__")

    def __init__(self, make: Any) -> None:
        self.make = make


def register_table_maker(runtime: Any, maker: Any | None) -> TableMaker | None:
    """Make (or, with None, stop making) ``runtime``'s tables with ``maker`` (see above). The
    maker is used while the returned :class:`TableMaker` is kept alive."""
    key = id(runtime)
    if maker is None:
        _table_makers.pop(key, None)
        return None
    holder = TableMaker(maker)

    def forget(ref: weakref.ref[TableMaker]) -> None:  # unless a runtime with the same id took the key since
        if _table_makers.get(key) is ref:
            del _table_makers[key]

    _table_makers[key] = weakref.ref(holder, forget)
    return holder


def new_table(runtime: Any) -> Any:
    """A new empty table of ``runtime``, bound to its main thread when a maker is registered."""
    ref = _table_makers.get(id(runtime))
    holder = ref() if ref is not None else None
    return holder.make() if holder is not None else runtime.table()


def python_to_lua(runtime: Any, value: Any) -> Any:
    """A Lua value for a JSON-like Python value (dicts and lists become tables, str becomes bytes;
    an integer beyond Lua's 64 bits becomes a float, as Lua's own arithmetic would)."""
    # The plain types by their exact type first: every tool call's result comes here, and a
    # workflow's record of a thousand agent steps is some 70,000 values, converted while the cell
    # waits for its result.
    kind = type(value)
    if kind is int and _LUA_INT_MIN <= value <= _LUA_INT_MAX or kind in _AS_THEY_ARE:
        return value
    if kind is str:
        return value.encode("utf-8", errors="surrogateescape")
    if kind is dict:
        return _dict_table(runtime, value)
    if kind is list:
        return _list_table(runtime, value)
    if isinstance(value, int) and not isinstance(value, bool) and not _LUA_INT_MIN <= value <= _LUA_INT_MAX:
        try:
            return float(value)
        except OverflowError:
            return str(value).encode()
    if isinstance(value, str):
        return value.encode("utf-8", errors="surrogateescape")
    if isinstance(value, dict):
        return _dict_table(runtime, value)
    if isinstance(value, (list, tuple)):
        return _list_table(runtime, value)
    return value


def _dict_table(runtime: Any, value: dict[Any, Any]) -> Any:
    table = new_table(runtime)
    for k, v in value.items():  # text keys and values converted here: a call less for each
        kind = type(v)
        table[k.encode("utf-8", errors="surrogateescape") if type(k) is str else python_to_lua(runtime, k)] = (
            v.encode("utf-8", errors="surrogateescape") if kind is str
            else v if v is None or kind is bool or kind is float else python_to_lua(runtime, v))
    return table


def _list_table(runtime: Any, value: list[Any] | tuple[Any, ...]) -> Any:
    table = new_table(runtime)
    for i, v in enumerate(value, 1):
        table[i] = python_to_lua(runtime, v)
    return table


def lua_kind(value: Any) -> str:
    """The Lua type name of ``value`` (a Lua value, or a Python value converted from one): ``nil``,
    ``boolean``, ``number``, ``string``, ``table``, ``function``: for messages in Lua's words."""
    found = lua_type(value)
    if found:
        return str(found)
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, (bytes, str)):
        return "string"
    if isinstance(value, (dict, list, tuple)):
        return "table"
    return "userdata"
