"""What frontends ask about code without running it: whether a cell is complete, completions at
the cursor, and docs for the name under it (library docs, or a variable's type, keys and value,
and the source of a function written in a cell or script).

Runs on the Lua thread, like the engine it asks.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from lupa import lua54

from . import source, stdlib_docs
from .host import text

if TYPE_CHECKING:
    from .engine import LuaEngine

lua_type = lua54.lua_type

_EOF_MARK = "near <eof>"


class Introspection:
    """The introspection of one engine's globals and cells."""

    def __init__(self, engine: LuaEngine) -> None:
        self._engine = engine

    def is_complete(self, code: str) -> tuple[str, str]:
        """("complete" | "incomplete" | "invalid", indent) judged by the Lua parser itself."""
        code = source.well_formed(code)
        if not code.strip():
            return "complete", ""
        fn, err = self._engine.internal[b"compile"](code.encode(), b"=cell")
        if fn is not None:
            return "complete", ""
        fn2, err2 = self._engine.internal[b"compile"](b"return " + code.encode(), b"=cell")
        if fn2 is not None:
            return "complete", ""
        if text(err).endswith(_EOF_MARK) or text(err2).endswith(_EOF_MARK):
            return "incomplete", "  " * max(1, source.block_depth(code))
        return "invalid", ""

    def complete(self, code: str, cursor: int) -> tuple[list[str], int, int, list[dict[str, Any]]]:
        """Completions at ``cursor``: (matches, cursor_start, cursor_end, typed metadata)."""
        code = source.well_formed(code)
        before = source.tokenize(code[:cursor])
        if before and before[-1].kind in ("string", "comment") and before[-1].end == cursor:
            last = before[-1].text
            if before[-1].kind == "comment" or len(last) < 2 or last[-1] != last[0]:
                return [], cursor, cursor, []
        start, chain = source.chain_before(code, cursor)
        base, sep, prefix = source.split_chain(chain)
        if sep is None:
            names = self._members(self._engine.env, False) + sorted(source.KEYWORDS)
        else:
            target = self._resolve(base)
            names = self._members(target, sep == ":") if target is not None else []
        matches = sorted({n for n in names if n.startswith(prefix)})
        cursor_start = cursor - len(prefix)
        typed = [
            {"start": cursor_start, "end": cursor, "text": m,
             "type": "keyword" if (sep is None and m in source.KEYWORDS) else self._kind(base, m)}
            for m in matches
        ]
        return matches, cursor_start, cursor, typed

    def inspect(self, code: str, cursor: int, detail_level: int = 0) -> str | None:
        """A short doc for the name at ``cursor``: library docs, or type/value/keys of a variable.
        With ``detail_level`` 1, a function written in a cell or script also shows its source."""
        code = source.well_formed(code)
        _, _, chain = source.chain_at(code, cursor)
        chain = chain.rstrip(".:")
        if not chain or (chain not in source.KEYWORDS and self._resolve(re.split(r"[.:]", chain)) is None):
            chain = source.enclosing_call(code, cursor).rstrip(".:") or chain  # inside `f(...|`: help for f
        if not chain:
            return None
        if chain in source.KEYWORDS:
            return stdlib_docs.KEYWORDS.get(chain)
        value = self._resolve([p for p in re.split(r"[.:]", chain) if p])
        if value is None:
            return None
        doc = self._describe(chain, value)
        listing = self.function_source(value) if detail_level >= 1 and lua_type(value) == "function" else None
        return doc if listing is None else f"{doc}\n\n{listing}"

    def _describe(self, chain: str, value: Any) -> str:
        """The doc of ``value`` (reached as ``chain``), or its type, keys and value."""
        from .engine import RenderFailure  # here: the engine imports this module

        try:
            info = self._engine.guarded(self._engine.internal[b"describe"], value)[0]
        except RenderFailure as exc:
            return f"{chain}: {lua_type(value)} (cannot be shown: {exc.failure.evalue})"
        docname = text(info[b"docname"]) if info[b"docname"] is not None else None
        doc = self._engine.docs.get(docname) if docname else None
        if doc is None and docname:
            doc = stdlib_docs.lookup(docname)
        if doc is not None:
            return doc
        kind = text(info[b"type"])
        lines = [f"{chain}: {kind}"]
        if kind == "table":
            keys = info[b"keys"]
            key_list = [text(keys[i]) for i in range(1, len(keys) + 1)]
            lines[0] += f" (length {info[b'length']}, {len(key_list)} keys)"
            if key_list:
                lines.append("keys: " + ", ".join(key_list[:100]) + (" ..." if len(key_list) > 100 else ""))
        lines.append(text(info[b"repr"]))
        return "\n".join(lines)

    def function_source(self, fn: Any) -> str | None:
        """Where a Lua function was defined in a cell or script, and its source lines (None for
        library and C functions)."""
        where, first, last = self._engine.function_origin(fn)
        path = text(where)[1:] if where is not None and text(where).startswith("@") else None
        if path is None or first < 1 or not (path in self._engine.cells.paths() or path in self._engine.script_paths):
            return None
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()[first - 1:last]
        except OSError:
            return None
        return f"-- defined in {self._engine.cells.prettify(path)}, lines {first}-{last}\n" + "\n".join(lines)

    def _resolve(self, parts: list[str]) -> Any:
        return self._engine.internal[b"resolve"](self._engine.table(*[p.encode() for p in parts]))

    def _members(self, value: Any, methods_only: bool) -> list[str]:
        names = self._engine.internal[b"members"](value, methods_only)
        return [text(names[i]) for i in range(1, len(names) + 1)]

    def _kind(self, base: list[str], name: str) -> str:
        value = self._resolve(base + [name])
        kind = lua_type(value) or "instance"
        return {"table": "module" if not base else "instance"}.get(kind, kind)
