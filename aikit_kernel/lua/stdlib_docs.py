"""Short documentation of the Lua 5.4 standard library as exposed in the aikit sandbox, for
``inspect`` (Shift+Tab) and completion. The texts live in ``stdlib_docs.json``: each entry's first
line is a signature in the style of the Lua manual, then a blank line and a short explanation.

Functions the sandbox removes (``load``, ``require``, ``string.dump``, ``os.exit``, ...) have no
entry, so nothing suggests them.
"""

from __future__ import annotations

import json
from importlib import resources

_DATA = json.loads(resources.files(__package__).joinpath("stdlib_docs.json").read_text(encoding="utf-8"))

STDLIB_DOCS: dict[str, str] = _DATA["functions"]
KEYWORDS: dict[str, str] = _DATA["keywords"]

_MODULES = frozenset({"string", "table", "math", "utf8", "coroutine", "os", "io"})


def lookup(name: str) -> str | None:
    """The doc for a dotted name ("string.format"), a file method ("file:read"), a module
    ("math"), a keyword ("while"), or method syntax on a library ("string:format"); else None."""
    key = name.strip() if isinstance(name, str) else ""
    if not key:
        return None
    doc = STDLIB_DOCS.get(key)
    if doc is not None:
        return doc
    if ":" in key:
        module, _, member = key.partition(":")
        if module in _MODULES and member and ":" not in member:
            return STDLIB_DOCS.get(f"{module}.{member}")
        return None
    return KEYWORDS.get(key)
