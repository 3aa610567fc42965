"""The storage interface the State component talks to, and helpers every backend shares.

A backend is synchronous and thread-safe. Values cross it as Python JSON-like values and are
stored as text written by :func:`aikit_components.codec.dumps`, so every backend keeps the same
exact round trip (int vs float, non-string keys, non-UTF-8 bytes, nested tables).

A backend whose ``stores_encoded`` is True (the built-in ones: they store what
:func:`encode_value` gives) also takes a :class:`~aikit_components.codec.Encoded` value, a value
already encoded; pass others plain values.

Expiry is lazy: an entry whose ``expires_at`` (seconds since the epoch, by the backend's
``clock``) is at or before now is invisible to ``get``, ``keys``, ``update`` and
``compare_and_set``; backends purge such entries opportunistically.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from .. import codec
from ..errors import ResourceExhausted

DEFAULT_MAX_VALUE_BYTES = 16 * 1024 * 1024
PURGE_EVERY = 1000  # writes between opportunistic purges of expired entries


@runtime_checkable
class StateBackend(Protocol):
    """What :class:`aikit_components.state.State` needs from a store. All methods are sync and
    may be called from any thread.

    ``expires_at`` is an absolute time (``clock()`` seconds) or None. For ``set`` None means "no
    expiry"; for ``update`` and ``compare_and_set`` None keeps the expiry the entry already has
    (like Redis INCR), a number replaces it.
    """

    clock: Callable[[], float]
    max_value_bytes: int

    def get(self, scope: str, key: str) -> tuple[bool, Any]:
        """``(True, value)`` when the key is present and live, else ``(False, None)``."""
        ...

    def set(self, scope: str, key: str, value: Any, expires_at: float | None = None) -> None:
        """Store ``value``; durable (for durable backends) when this returns."""
        ...

    def delete(self, scope: str, key: str) -> bool:
        """Remove the key; True when a live entry was removed."""
        ...

    def keys(self, scope: str, prefix: str = "") -> list[str]:
        """Live keys of ``scope`` starting with ``prefix``, sorted by code point."""
        ...

    def compare_and_set(self, scope: str, key: str, expected_found: bool, expected_value: Any,
                        new_value: Any, expires_at: float | None = None) -> bool:
        """Atomically: if (the key is present) == ``expected_found`` and, when present, its value
        equals ``expected_value`` (see :func:`values_equal`), store ``new_value`` and return True."""
        ...

    def update(self, scope: str, key: str, fn: Callable[[Any], Any], expires_at: float | None = None) -> Any:
        """Atomically store ``fn(old)`` (``old`` is None when absent) and return it. If ``fn``
        raises, nothing is written and the exception propagates."""
        ...

    def close(self) -> None:
        ...


def encode_value(value: Any, limit: int, scope: str, key: str) -> str:
    """``codec.dumps(value)`` (``value.text`` for a :class:`~aikit_components.codec.Encoded`),
    refusing values whose encoding exceeds ``limit`` bytes."""
    text = value.text if type(value) is codec.Encoded else codec.dumps(value)
    # A str has at most 4 UTF-8 bytes per character: only measure when it might be too big.
    if len(text) > limit // 4 and len(text.encode("utf-8", "surrogatepass")) > limit:
        size = len(text.encode("utf-8", "surrogatepass"))
        raise ResourceExhausted(
            f"value for state key {key!r} in scope {scope!r} is {size} bytes encoded; "
            f"the limit is {limit} bytes (max_value_bytes)",
            details={"scope": scope, "key": key, "size": size, "limit": limit},
        )
    return text


def expectation_met(row: tuple[Any, ...] | None, expected_found: bool, expected: Any) -> bool:
    """Whether a stored entry meets a compare-and-set's expectation: ``row`` is the entry
    (encoded value first) or None when absent; ``expected`` is the normalized expected value."""
    if (row is not None) != expected_found:
        return False
    return row is None or values_equal(codec.loads(row[0]), expected)


def values_equal(a: Any, b: Any) -> bool:
    """Equality for compare-and-set, after both sides went through the codec.

    Numbers compare by value (``1 == 1.0``, as in Lua), booleans only equal booleans, tables
    compare structurally (order of map keys does not matter, order of arrays does).
    """
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        if len(a) != len(b):
            return False
        return all(k in b and values_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b))
    if type(a) is not type(b):
        return False
    return a == b


def normalize(value: Any) -> Any:
    """What ``value`` reads back as after storage (UTF-8 bytes become str, tuples lists, ...)."""
    return codec.loads(codec.dumps(value))


def prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string that starts with ``prefix`` (code point
    order, which is also UTF-8 byte order); None when there is none."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < 0x10FFFF:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:  # surrogates cannot be stored; skip the block
                nxt = 0xE000
            return "".join(chars) + chr(nxt)
    return None
