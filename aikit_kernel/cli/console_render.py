"""How ``aikit console`` shows a kernel's rich outputs (MIME bundles) in a terminal.

Records (a list of tables with named fields, as application/json or as the HTML table that
``display.table`` sends) become rich tables, Markdown is rendered, JSON is pretty-printed, images are
saved to a file whose path is printed, and anything else falls back to text/plain.
"""

from __future__ import annotations

import base64
import html
import json
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console, RenderableType
from rich.json import JSON
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text

IMAGE_TYPES = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp"}
_ROW = re.compile(r"<tr>(.*?)</tr>", re.S)
_CELL = re.compile(r"<t[hd]>(.*?)</t[hd]>", re.S)


def image_dir() -> Path:
    """Where images shown by a kernel are saved (one directory per user, in the temp dir)."""
    path = Path(tempfile.gettempdir()) / "aikit-console-images"
    path.mkdir(parents=True, exist_ok=True)
    return path


def records_table(data: Any) -> Table | None:
    """A rich table for a list of flat records (dicts), else None."""
    if not isinstance(data, list) or not data or not all(isinstance(r, dict) for r in data):
        return None
    columns = sorted({key for row in data for key in row})
    table = Table(show_header=True, header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in data:
        table.add_row(*(_cell_text(row.get(c, "")) for c in columns))
    return table


def html_table(markup: str) -> Table | None:
    """A rich table for the simple HTML table aikit's ``display.table`` sends, else None."""
    rows = [[html.unescape(c) for c in _CELL.findall(row)] for row in _ROW.findall(markup)]
    if not rows or "<table" not in markup:
        return None
    table = Table(show_header=True, header_style="bold")
    for column in rows[0]:
        table.add_column(column)
    for row in rows[1:]:
        table.add_row(*row)
    return table


def _cell_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def save_image(mime: str, data: str) -> Path:
    """Decode a base64 image and save it; returns its path."""
    path = image_dir() / f"{uuid.uuid4().hex[:12]}{IMAGE_TYPES[mime]}"
    path.write_bytes(base64.b64decode(data))
    return path


def renderable(bundle: dict[str, Any]) -> RenderableType:
    """What to print for one MIME bundle."""
    for mime in IMAGE_TYPES:
        if isinstance(bundle.get(mime), str):
            path = save_image(mime, bundle[mime])
            return Text(f"[image {mime} saved to {path}]")
    if "application/json" in bundle:
        data = bundle["application/json"]
        return records_table(data) or JSON(json.dumps(data, ensure_ascii=False))
    if isinstance(bundle.get("text/html"), str):
        table = html_table(bundle["text/html"])
        if table is not None:
            return table
    if isinstance(bundle.get("text/markdown"), str):
        return Markdown(bundle["text/markdown"])
    return Text.from_ansi(str(bundle.get("text/plain", "")).rstrip("\n"))


def show_bundle(console: Console, bundle: dict[str, Any]) -> None:
    """Print one MIME bundle on ``console``."""
    console.print(renderable(bundle), soft_wrap=True)
