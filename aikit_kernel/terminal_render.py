"""MIME bundles as a terminal shows them (``aikit run``, ``aikit repl``): a list of records as an
aligned table, Markdown rendered, HTML as its text with a note, anything else as its text/plain.
Rendering uses rich; colours only when the stream is a terminal."""

from __future__ import annotations

import io
import json
import shutil
from typing import Any

MAX_ROWS = 200
MAX_CELL = 80
FIRST_COLUMNS = ("id", "name")  # what a row is comes first; the rest by name
HTML_NOTE = "(HTML shown as text: run it in a notebook to see it rendered)"


def is_records(data: Any) -> bool:
    """A non-empty list of tables with named fields (what prints as a table)."""
    return isinstance(data, list) and bool(data) and all(isinstance(r, dict) and r for r in data)


def render_bundle(data: dict[str, Any], color: bool = False, width: int | None = None,
                  metadata: dict[str, Any] | None = None) -> str:
    """The text a terminal shows for the MIME bundle ``data`` (no trailing newline);
    ``metadata["aikit_records"]`` gives the records of a ``display.table``."""
    records = (metadata or {}).get("aikit_records") or data.get("application/json")
    if is_records(records) and "text/html" in data:
        return render_records(records, color, width)
    if "text/markdown" in data:
        return _render(_markdown(str(data["text/markdown"])), color, width)
    plain = str(data.get("text/plain", ""))
    if "text/html" in data and set(data) <= {"text/html", "text/plain"}:
        return f"{plain}\n{HTML_NOTE}"
    return plain


def render_records(records: list[dict[str, Any]], color: bool = False, width: int | None = None,
                   columns: list[str] | None = None) -> str:
    """A list of records as an aligned table: ``id`` and ``name`` first, the other columns sorted by
    name (Lua keeps no key order),
    at most ``MAX_ROWS`` rows; or the ``columns`` given."""
    from rich import box
    from rich.table import Table

    keys = {key for row in records[:MAX_ROWS] for key in row}
    columns = columns or [k for k in FIRST_COLUMNS if k in keys] + sorted(k for k in keys if k not in FIRST_COLUMNS)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(str(column), overflow="fold")
    for row in records[:MAX_ROWS]:
        table.add_row(*(_cell(row.get(c, "")) for c in columns))
    text = _render(table, color, width)
    if len(records) > MAX_ROWS:
        text += f"\n... {len(records) - MAX_ROWS} more rows"
    return text


def _cell(value: Any) -> str:
    shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return shown if len(shown) <= MAX_CELL else shown[:MAX_CELL - 3] + "..."


def _markdown(source: str) -> Any:
    from rich.markdown import Markdown

    return Markdown(source)


def _render(renderable: Any, color: bool, width: int | None) -> str:
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, width=width or shutil.get_terminal_size((100, 24)).columns,
                      force_terminal=color, no_color=not color, color_system="standard" if color else None,
                      highlight=False, soft_wrap=False)
    console.print(renderable)
    return "\n".join(line.rstrip() for line in buffer.getvalue().rstrip("\n").split("\n"))
