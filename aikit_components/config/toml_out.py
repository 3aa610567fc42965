"""Writing the effective configuration back as TOML text (``aikit config show``)."""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Mapping
from typing import Any

from .secrets import MASK, Secret

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f"}


def _toml_string(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_string(key)


def toml_value(value: Any, mask: bool) -> str:
    """One value as a TOML literal (secrets as ``"****"`` when ``mask``)."""
    if isinstance(value, Secret):
        return _toml_string(MASK if mask else value.reveal())
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item, mask) for item in value) + "]"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        items = ", ".join(f"{_toml_key(k)} = {toml_value(v, mask)}" for k, v in value.items())
        return "{ " + items + " }"
    raise TypeError(f"cannot write a {type(value).__name__} as TOML")


def dump_toml(data: Mapping[str, Any], mask: bool) -> str:
    """A tree of tables as TOML text (secrets as ``"****"`` when ``mask``)."""
    lines: list[str] = []

    def table(path: tuple[str, ...], node: Mapping[str, Any]) -> None:
        scalars = [(k, v) for k, v in node.items() if not isinstance(v, Mapping)]
        subtables = [(k, v) for k, v in node.items() if isinstance(v, Mapping)]
        if path and (scalars or not subtables):
            if lines:
                lines.append("")
            lines.append("[" + ".".join(_toml_key(p) for p in path) + "]")
        for key, value in scalars:
            lines.append(f"{_toml_key(key)} = {toml_value(value, mask)}")
        for key, value in subtables:
            table(path + (key,), value)

    table((), data)
    return "\n".join(lines) + "\n"
