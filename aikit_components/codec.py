"""JSON-like values <-> JSON text, exactly.

aikit values are what a Lua table can hold: None, bool, int, float, str, bytes, lists, and dicts.
Plain JSON loses three things Lua keeps, so they are tagged:

- dict keys that are not strings (``{1: "a", 3: "b"}``) -> ``{"$map": [[1, "a"], [3, "b"]]}``
- bytes that are not UTF-8 -> ``{"$bytes": "<base64>"}``
- a dict whose only key starts with ``$`` -> ``{"$map": [...]}`` (so user data never looks tagged)

Integers stay integers and floats stay floats (``1.0`` is written ``1.0``). NaN and infinities
are written as JSON extensions (``NaN``, ``Infinity``) that Python's json reads back.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from .errors import InvalidArgument

MAX_DEPTH = 200


def to_jsonable(value: Any, _depth: int = 0) -> Any:
    """Tag what plain JSON would lose; raise InvalidArgument for unsupported types or cycles."""
    if _depth > MAX_DEPTH:
        raise InvalidArgument(f"value nested deeper than {MAX_DEPTH} levels (or contains a cycle)")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, _depth + 1) for v in value]
    if isinstance(value, dict):
        plain = all(isinstance(k, str) for k in value) and not (len(value) == 1 and next(iter(value)).startswith("$"))
        if plain:
            return {k: to_jsonable(v, _depth + 1) for k, v in value.items()}
        return {"$map": [[to_jsonable(k, _depth + 1), to_jsonable(v, _depth + 1)] for k, v in value.items()]}
    raise InvalidArgument(f"cannot store a value of type {lua_type_name(value)} (use tables, strings, numbers, booleans)")


def from_jsonable(value: Any) -> Any:
    """Undo :func:`to_jsonable`."""
    if isinstance(value, list):
        return [from_jsonable(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            if "$map" in value and isinstance(value["$map"], list):
                return {_hashable(from_jsonable(k)): from_jsonable(v) for k, v in value["$map"]}
            if "$bytes" in value and isinstance(value["$bytes"], str):
                return base64.b64decode(value["$bytes"])
        return {k: from_jsonable(v) for k, v in value.items()}
    return value


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


_SCALARS = (str, int, float, bool, type(None))


def _plain(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` needs no tag (see :func:`to_jsonable`): only exact dicts with string keys
    (none alone with a ``$`` key), lists, tuples and scalars, at most :data:`MAX_DEPTH` deep. A
    check that builds nothing, so plain data (most of what is stored: run records, State values)
    goes straight to the C encoder; anything else (bytes, other keys, subclasses, a cycle) takes
    :func:`to_jsonable`'s way, which tags it or says what is wrong."""
    if depth > MAX_DEPTH:
        return False
    kind = type(value)
    if kind is dict:
        if len(value) == 1 and str(next(iter(value))).startswith("$"):
            return False
        for key, item in value.items():
            if type(key) is not str or (type(item) not in _SCALARS and not _plain(item, depth + 1)):
                return False
        return True
    if kind is list or kind is tuple:
        return all(type(item) in _SCALARS or _plain(item, depth + 1) for item in value)
    return kind in _SCALARS


def dumps(value: Any) -> str:
    """Encode a JSON-like value as JSON text (compact, exact)."""
    if _plain(value):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return json.dumps(to_jsonable(value), separators=(",", ":"), ensure_ascii=False)


def loads(text: str | bytes) -> Any:
    """Decode JSON text written by :func:`dumps`."""
    return from_jsonable(json.loads(text))


class Encoded:
    """A value already encoded: ``text`` is what :func:`dumps` writes for it. Stores take it as
    it is (:func:`aikit_components.storage.base.encode_value`), so a value encoded once (a
    snapshot of data that goes on changing, say) is not encoded again. Made by :func:`encoded`."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Encoded({self.text[:60]!r}{'...' if len(self.text) > 60 else ''})"


def encoded(text: str) -> Encoded | Any:
    """The value of ``text``, JSON written compactly (``separators=(",", ":")``) without ASCII
    escapes (``ensure_ascii=False``): as :class:`Encoded` when that text is already what
    :func:`dumps` writes for its value, else decoded (for :func:`dumps` to tag or refuse).

    It is unless an object's first key starts with ``$`` (``{"$``, which cannot occur inside a
    JSON string, where ``"`` is escaped: a lone ``$`` key needs a tag) or it might nest deeper than
    :data:`MAX_DEPTH` (more opening brackets than that). Numbers and strings read back as they
    were written; an object written with a key twice is the object with the last one, as decoding
    reads it."""
    if '{"$' in text or text.count("{") + text.count("[") > MAX_DEPTH:
        return json.loads(text)
    return Encoded(text)


# -- type names for messages -------------------------------------------------------------------
#: Python types and their JSON Schema names, the first that matches wins (a bool is also an int).
JSON_TYPES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (type(None), "null"), (bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
    ((list, tuple), "array"), (dict, "object"))


def json_type_name(value: Any) -> str:
    """The JSON Schema type name of a Python value (``integer``, ``object``, ...)."""
    for types, name in JSON_TYPES:
        if isinstance(value, types):
            return name
    return type(value).__name__


#: JSON Schema type names in Lua's words, for messages users (and models writing Lua) read.
LUA_WORDS = {"object": "table (with named fields)", "array": "table (a list)", "null": "nil"}


def lua_type_name(value: Any, *, article: bool = False) -> str:
    """The type of a JSON-like value in Lua's words (``table (a list)``, ``nil``, ``string``, ...);
    with ``article``, as a sentence says it after "got" (``a table (a list)``, ``an integer``,
    ``nil``)."""
    name = json_type_name(value)
    name = LUA_WORDS.get(name, name)
    if not article or name == "nil":
        return name
    return ("an " if name[0] in "aeiou" else "a ") + name
