"""Loaders: a file -> the text (and metadata) to ingest.

Plain text, Markdown and source code are read as UTF-8 (a BOM is dropped; any other encoding is
an ``unsupported_file`` error naming the byte offset, never silently mangled text). HTML is
reduced to its visible text with BeautifulSoup (scripts, styles and navigation dropped; the
``<title>`` becomes metadata ``title``). PDF pages are extracted with pypdf, one section per page
(metadata ``page``). A directory is walked recursively in name order, skipping hidden entries
and files of unknown types.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UnsupportedFile
from .chunking import CODE_EXTENSIONS, MARKDOWN_EXTENSIONS

__all__ = ["Loaded", "SUPPORTED_EXTENSIONS", "load_file", "walk"]

TEXT_EXTENSIONS = (".txt", ".text", ".rst", ".csv", ".tsv", ".json", ".yaml", ".yml", ".toml", ".ini", ".cfg",
                   ".log", ".xml")
HTML_EXTENSIONS = (".html", ".htm", ".xhtml")
PDF_EXTENSIONS = (".pdf",)
SUPPORTED_EXTENSIONS = frozenset((*TEXT_EXTENSIONS, *MARKDOWN_EXTENSIONS, *HTML_EXTENSIONS, *PDF_EXTENSIONS,
                                  *CODE_EXTENSIONS))
MAX_FILE_BYTES = 50 * 1024 * 1024


@dataclass
class Loaded:
    """A file's text in sections (one for most files, one per page for PDF), each with metadata."""

    sections: list[tuple[str, dict[str, Any]]]
    metadata: dict[str, Any] = field(default_factory=dict)


def walk(root: Path) -> Iterator[Path]:
    """The supported files below ``root`` (itself when it is a file), in a stable order."""
    if root.is_file():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not name.startswith(".") and path.suffix.lower() in SUPPORTED_EXTENSIONS and path.is_file():
                yield path


def load_file(path: Path) -> Loaded:
    """Read one file (see the module docstring)."""
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise UnsupportedFile(f"cannot ingest {path}: unknown file type {ext or '(no extension)'}; supported: "
                              f"{', '.join(sorted(SUPPORTED_EXTENSIONS))}", details={"path": str(path)})
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise UnsupportedFile(f"cannot ingest {path}: {size} bytes is more than {MAX_FILE_BYTES}",
                              details={"path": str(path), "bytes": size})
    if ext in PDF_EXTENSIONS:
        return _pdf(path)
    text = _utf8(path)
    if ext in HTML_EXTENSIONS:
        return _html(text)
    return Loaded([(text, {})])


def _utf8(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnsupportedFile(f"cannot ingest {path}: it is not UTF-8 text (invalid byte at offset {exc.start}); "
                              "convert it to UTF-8 first", details={"path": str(path), "offset": exc.start}) from None


def _html(text: str) -> Loaded:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "lxml")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(["script", "style", "noscript", "template", "nav", "header", "footer", "head"]):
        tag.decompose()
    lines = [line.strip() for line in soup.get_text("\n").splitlines()]
    body = "\n".join(line for line in lines if line)
    return Loaded([(body, {})], {"title": title} if title else {})


def _pdf(path: Path) -> Loaded:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError
    except ImportError:
        raise UnsupportedFile(f"cannot ingest {path}: PDF support needs pypdf (aikit's rag extra)",
                              details={"path": str(path)}) from None
    try:
        reader = PdfReader(str(path))
        sections = [(page.extract_text() or "", {"page": number}) for number, page in enumerate(reader.pages, 1)]
    except (PdfReadError, ValueError, KeyError) as exc:
        raise UnsupportedFile(f"cannot ingest {path}: not a readable PDF ({exc})", details={"path": str(path)}) from None
    return Loaded([s for s in sections if s[0].strip()], {"pages": len(sections)})
