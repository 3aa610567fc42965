"""``json.dumps`` for hot paths, without building the C encoder again on every call.

``json.dumps`` with any option other than the defaults makes a ``JSONEncoder``, and
``JSONEncoder.encode`` builds its C encoder anew on each call: for the small documents aikit writes
many of (tool-call arguments, model request bodies, ledger entries), that set-up is about half the
cost. :func:`dumps_with` builds the C encoder once per set of options. The text is what
``json.dumps`` gives with the same options, and so are its errors (a value that is not
JSON-serialisable, NaN with ``allow_nan=False``), except for one: the encoder does not look for
cycles (aikit's values come from Lua tables or JSON, checked when converted); a value that
contains itself raises ``RecursionError`` rather than ``ValueError``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from json import encoder as _stdlib
from typing import Any


def dumps_with(*, ensure_ascii: bool = True, allow_nan: bool = True, sort_keys: bool = False,
               separators: tuple[str, str] = (", ", ": "),
               default: Callable[[Any], Any] | None = None) -> Callable[[Any], str]:
    """A function ``value -> JSON text`` equal to ``json.dumps(value, ensure_ascii=..., ...)``
    with these options (no ``indent``), made once and reused."""
    make_encoder = getattr(_stdlib, "c_make_encoder", None)
    if make_encoder is None:  # no C accelerator (another Python): the standard function
        return functools.partial(json.dumps, ensure_ascii=ensure_ascii, allow_nan=allow_nan, sort_keys=sort_keys,
                                 separators=separators, default=default)
    item_separator, key_separator = separators
    string = _stdlib.encode_basestring_ascii if ensure_ascii else _stdlib.encode_basestring
    unknown = default if default is not None else json.JSONEncoder().default  # raises json's TypeError
    encode = make_encoder(None, unknown, string, None, key_separator, item_separator, sort_keys, False, allow_nan)

    def dumps(value: Any) -> str:
        return "".join(encode(value, 0))

    return dumps
