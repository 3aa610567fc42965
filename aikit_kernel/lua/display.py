"""The ``display`` global: rich output from Lua (HTML, Markdown, JSON, images, updatable displays).

``display(value [, opts])`` always sends text/plain; a table also goes out as application/json,
and a list of records also as an HTML table. ``display.table`` sends only the HTML table (JupyterLab
ranks application/json above text/html, so a bundle holding both shows the JSON tree there; VS Code
shows the table). Every helper takes ``opts.id`` to name the display and returns a handle whose
``:update(value)`` replaces it in place.
"""

from __future__ import annotations

import base64
import html
import json
import uuid
from typing import Any

from aikit_components.errors import InvalidArgument

from .convert import lua_kind, lua_to_python, lua_type
from .host import text

MAX_HTML_ROWS = 200

_LUA_DISPLAY = r"""
local host, bind = ...
local send = bind(host.send)
local clear = bind(host.clear)
local handle_mt = {}
handle_mt.__index = {
  update = function(self, value, opts) send(self.kind, value, opts, self.id, true); return self end,
}
handle_mt.__name = "aikit.DisplayHandle"
handle_mt.__quiet = true
handle_mt.__tostring = function(self) return "display handle " .. self.id end
local function shower(kind)
  return function(value, opts)
    local id = send(kind, value, opts, nil, false)
    return setmetatable({ id = id, kind = kind }, handle_mt)
  end
end
local display = {
  html = shower("html"), markdown = shower("markdown"), json = shower("json"), table = shower("table"),
  latex = shower("latex"), svg = shower("svg"),
  image = function(data, mime, opts)
    local id = send("image", data, opts, nil, false, mime or "image/png")
    return setmetatable({ id = id, kind = "image" }, handle_mt)
  end,
  update = function(id, value, kind) send(kind or "value", value, nil, id, true) end,
  clear = function(wait) clear(wait and true or false) end,
}
local show_value = shower("value")
local show_html = shower("html")
return setmetatable(display, {
  __call = function(_, value, opts)
    -- a value whose metatable has __html (a trace, say) shows as that HTML
    local mt = type(value) == "table" and getmetatable(value)
    if type(mt) == "table" and type(mt.__html) == "function" then return show_html(mt.__html(value), opts) end
    return show_value(value, opts)
  end,
  __name = "aikit.display",
})
"""

DOCS = {
    "display": "display(value [, {id = name}]) -> handle\n\n"
               "Shows a value as rich output: text/plain always; a table also as "
    "application/json, and a list of records also as an HTML table (JupyterLab prefers the JSON tree; use display.table "
    "for the table alone). Returns a handle; handle:update(new) "
    "replaces the display in place.\nExample: local h = display({{name = 'a', n = 1}}); h:update({{name = 'b', n = 2}})",
    "display.html": "display.html(html [, {id = name}]) -> handle\n\nShows an HTML fragment.\n"
                    "Example: display.html('<b>bold</b>')",
    "display.markdown": "display.markdown(text [, {id = name}]) -> handle\n\nShows Markdown.\n"
                        "Example: display.markdown('# Title')",
    "display.json": "display.json(value [, {id = name}]) -> handle\n\n"
                    "Shows a table (or a JSON string) as an interactive JSON tree.\n"
    "Example: display.json({a = {1, 2}})",
    "display.table": "display.table(records [, {id = name}]) -> handle\n\nShows a list of records (tables with named "
    "fields) as an HTML table only (columns sorted by name, at most 200 rows).\n"
    "Example: display.table({{name = 'a', n = 1}, {name = 'b', n = 2}})",
    "display.latex": "display.latex(source [, {id = name}]) -> handle\n\nShows LaTeX math.\n"
                     "Example: display.latex('$e^{i\\\\pi} = -1$')",
    "display.svg": "display.svg(source [, {id = name}]) -> handle\n\nShows an SVG image.",
    "display.image": "display.image(bytes [, mime = 'image/png' [, {id = name}]]) -> handle\n\nShows raw image bytes "
    "(PNG, JPEG, GIF, WebP).\nExample: display.image(io.open('plot.png', 'rb'):read('a'))",
    "display.update": "display.update(id, value [, kind = 'value'])\n\nReplaces the display named id (kind: value, html, "
    "markdown, json, table, latex, svg).\nExample: display.html('0%', {id = 'p'}); display.update('p', '50%', 'html')",
    "display.clear": "display.clear([wait])\n\nClears the cell's output; with wait = true only when new output arrives "
    "(flicker-free animation).\nExample: display.clear(true)",
}

_TEXT_KINDS = {"html": "text/html", "markdown": "text/markdown", "latex": "text/latex", "svg": "image/svg+xml"}


class DisplayBinding:
    """Builds MIME bundles for the ``display`` global and hands them to the engine's output."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def install(self) -> None:
        engine = self.engine
        host = engine.table(send=engine.host.wrap(self.send), clear=engine.host.wrap(self.clear))
        display = engine.compile_trusted(_LUA_DISPLAY, "display")(host, engine.internal[b"bind"])
        engine.set_global("display", display, DOCS["display"])
        for name, doc in DOCS.items():
            if "." in name:
                engine.register_doc(name, display[name.split(".", 1)[1].encode()], doc)

    def send(self, kind: bytes, value: Any, opts: Any, display_id: Any, update: bool, mime: Any = None) -> str:
        did = text(display_id) if display_id is not None else None
        if did is None and lua_type(opts) == "table" and opts[b"id"] is not None:
            did = text(opts[b"id"])
        if did is None:
            did = uuid.uuid4().hex
        data = self.bundle(text(kind), value, text(mime) if mime is not None else None)
        metadata: dict[str, Any] = {}
        if text(kind) == "table":  # a terminal prints the records as a table (the bundle holds only HTML)
            metadata["aikit_records"] = self._jsonable(value, strict=False)
        self.engine.host.output.display(data, metadata, did, bool(update))
        return did

    def clear(self, wait: bool) -> None:
        self.engine.host.output.clear(bool(wait))

    def bundle(self, kind: str, value: Any, mime: str | None = None) -> dict[str, Any]:
        """The MIME bundle for one display call."""
        if kind in _TEXT_KINDS:
            if not isinstance(value, bytes):
                raise InvalidArgument(f"display.{kind} expects a string, got {lua_kind(value)}")
            return {_TEXT_KINDS[kind]: text(value), "text/plain": text(value) if kind != "svg" else "<svg image>"}
        if kind == "image":
            if not isinstance(value, bytes):
                raise InvalidArgument("display.image expects the image bytes as a string")
            allowed = ("image/png", "image/jpeg", "image/gif", "image/webp")
            if mime not in allowed:
                raise InvalidArgument(f"display.image: unsupported mime type {mime!r} (use one of {', '.join(allowed)})")
            return {mime: base64.b64encode(value).decode("ascii"), "text/plain": f"<image {mime}, {len(value)} bytes>"}
        if kind == "json":
            if isinstance(value, bytes):
                try:
                    data = json.loads(value)
                except ValueError as exc:
                    raise InvalidArgument(f"display.json: the string is not valid JSON ({exc})") from None
            else:
                data = self._jsonable(value, strict=True)
            return {"application/json": data, "text/plain": json.dumps(data, indent=2, ensure_ascii=False)}
        if kind == "table":
            data = self._jsonable(value, strict=False) if lua_type(value) == "table" else None
            table_html = records_to_html(data)
            if table_html is None:
                raise InvalidArgument("display.table expects a non-empty list of records (tables with named fields), "
                                      f"got {self.engine.repr(value)[:80]}")
            return {"text/html": table_html, "text/plain": self.engine.repr(value)}
        bundle: dict[str, Any] = {"text/plain": self.engine.repr(value)}
        if lua_type(value) == "table":
            data = self._jsonable(value, strict=False)
            if data is not None:
                bundle["application/json"] = data
                table_html = records_to_html(data)
                if table_html:
                    bundle["text/html"] = table_html
        return bundle

    def _jsonable(self, value: Any, strict: bool) -> Any:
        try:
            data = lua_to_python(value, self.engine.internal[b"address"], strict=strict)
            json.dumps(data)
            return data
        except (InvalidArgument, ValueError, TypeError) as exc:
            if isinstance(exc, InvalidArgument) and strict:
                raise InvalidArgument(f"display.json: {exc.message}") from None
            if strict:
                raise InvalidArgument(f"display.json: value cannot be shown as JSON ({exc})") from None
            return None


def records_to_html(data: Any) -> str | None:
    """An HTML table for a list of flat records (dicts), else None."""
    if not isinstance(data, list) or not data or not all(isinstance(r, dict) for r in data):
        return None
    # Lua tables keep no key order (and Lua randomises hashing per run): sort for stable output.
    columns = sorted({key for row in data[:MAX_HTML_ROWS] for key in row})

    def cell(v: Any) -> str:
        return html.escape(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{cell(row.get(c, ''))}</td>" for c in columns) + "</tr>" for row in data[:MAX_HTML_ROWS]
    )
    more = f"<p>... {len(data) - MAX_HTML_ROWS} more rows</p>" if len(data) > MAX_HTML_ROWS else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"
