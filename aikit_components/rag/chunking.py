"""Chunkers: cut a document's text into the pieces that are embedded and searched.

Every chunk keeps its character offsets into the source text (``text[start:end] == chunk.text``),
so a hit can be located in the original. Kinds:

``fixed``     windows of ``size`` units, each starting ``size - overlap`` units after the last.
``sentence``  whole sentences (and paragraphs) packed up to ``size``; the last sentences of a
              chunk, up to ``overlap`` units, start the next one. A sentence longer than ``size``
              is cut as ``fixed``.
``markdown``  one chunk per heading section (metadata ``section``: the heading path
              ``"Guide > Install"``); a long section is cut as ``sentence``. Code fences are
              never split at a ``#`` line inside them.
``code``      top-level blocks (definitions, statements separated by blank lines) packed up to
              ``size``; a long block is cut at line ends. Metadata ``line`` (1-based first line)
              and ``symbol`` (the first name defined in the chunk, when there is one).
``auto``      ``markdown`` for .md, ``code`` for source files, ``sentence`` otherwise.

Units are characters (``unit = "chars"``) or tokens of the embedding model's tokenizer
(``unit = "tokens"``; all-MiniLM-L6-v2 reads at most 256 tokens, so a chunk longer than that is
only partly embedded).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidArgument
from . import once

__all__ = ["CHUNKERS", "Chunk", "ChunkOptions", "chunk_text", "token_counter"]

CHUNKERS = ("auto", "fixed", "sentence", "markdown", "code")
UNITS = ("chars", "tokens")

CODE_EXTENSIONS = {
    ".py": "python", ".lua": "lua", ".js": "javascript", ".mjs": "javascript", ".ts": "typescript",
    ".tsx": "typescript", ".jsx": "javascript", ".go": "go", ".rs": "rust", ".c": "c", ".h": "c", ".cc": "cpp",
    ".cpp": "cpp", ".hpp": "cpp", ".java": "java", ".kt": "kotlin", ".rb": "ruby", ".php": "php", ".cs": "csharp",
    ".swift": "swift", ".scala": "scala", ".sh": "shell", ".bash": "shell", ".sql": "sql", ".r": "r",
    ".jl": "julia", ".ex": "elixir", ".exs": "elixir", ".erl": "erlang", ".hs": "haskell", ".ml": "ocaml",
}
MARKDOWN_EXTENSIONS = (".md", ".markdown", ".mdx")

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n\s*\n")
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_DEFINITION = re.compile(
    r"^(?:export\s+|pub(?:\([\w:]+\))?\s+|public\s+|private\s+|protected\s+|static\s+|async\s+|local\s+|abstract\s+|final\s+)*"
    r"(?:def|class|function|fn|func|interface|struct|enum|trait|impl|module|type|object|fun)\s+([A-Za-z_][\w.:]*)")


@dataclass(frozen=True)
class Chunk:
    """A piece of a document: ``text == source[start:end]``, plus chunker metadata."""

    text: str
    start: int
    end: int
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChunkOptions:
    """How to chunk: ``kind`` (see the module docstring), ``size`` and ``overlap`` in ``unit``s."""

    kind: str = "auto"
    size: int = 800
    overlap: int = 100
    unit: str = "chars"

    def __post_init__(self) -> None:
        problems = []
        if self.kind not in CHUNKERS:
            problems.append(f"chunker must be one of {', '.join(CHUNKERS)}, got {self.kind!r}")
        if self.unit not in UNITS:
            problems.append(f"unit must be 'chars' or 'tokens', got {self.unit!r}")
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 1:
            problems.append(f"chunk size must be an integer >= 1, got {self.size!r}")
        elif not isinstance(self.overlap, int) or isinstance(self.overlap, bool) or not 0 <= self.overlap < self.size:
            problems.append(f"overlap must be an integer from 0 to size - 1 ({self.size - 1}), got {self.overlap!r}")
        if problems:
            raise InvalidArgument("invalid chunking options: " + "; ".join(problems), details={"problems": problems})

    def to_dict(self) -> dict[str, Any]:
        return {"chunker": self.kind, "size": self.size, "overlap": self.overlap, "unit": self.unit}


def chunk_text(text: str, options: ChunkOptions, *, kind_hint: str | None = None) -> list[Chunk]:
    """``text`` cut into chunks. ``kind_hint`` (a file name or extension) picks the chunker when
    ``options.kind`` is ``auto``. Whitespace-only chunks are dropped; chunks are stripped of
    surrounding whitespace (offsets follow)."""
    kind = options.kind if options.kind != "auto" else _auto_kind(kind_hint)
    measure = _measure(options.unit)
    if kind == "fixed":
        spans = _fixed(text, 0, len(text), options, measure)
        return _chunks(text, spans)
    if kind == "sentence":
        return _chunks(text, _pack(text, _sentences(text, 0, len(text)), options, measure))
    if kind == "markdown":
        return _markdown(text, options, measure)
    language = CODE_EXTENSIONS.get(_extension(kind_hint) or "")
    return _code(text, options, measure, language)


# ----------------------------------------------------------------------------- measuring
Measure = Callable[[str, int, int], int]  # (text, start, end) -> length in units

def _load_tokenizer() -> Any:
    from tokenizers import Tokenizer

    from .embedders import local_model_dir

    tokenizer = Tokenizer.from_file(str(local_model_dir() / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


#: The tokenizer of the local embedding model (``tokenizers``), loaded once per process.
token_counter = once(_load_tokenizer)


def _measure(unit: str) -> Measure:
    if unit == "chars":
        return lambda text, start, end: end - start
    tokenizer = token_counter()
    return lambda text, start, end: len(tokenizer.encode(text[start:end], add_special_tokens=False).ids)


def _auto_kind(hint: str | None) -> str:
    ext = _extension(hint)
    if ext in MARKDOWN_EXTENSIONS:
        return "markdown"
    if ext in CODE_EXTENSIONS:
        return "code"
    return "sentence"


def _extension(hint: str | None) -> str | None:
    if not hint:
        return None
    hint = hint.lower()
    if hint.startswith(".") and "/" not in hint:
        return hint
    dot = hint.rfind(".")
    return hint[dot:] if dot > hint.rfind("/") else None


# ----------------------------------------------------------------------------- spans
Span = tuple[int, int]


def _chunks(text: str, spans: list[Span], metadata: dict[str, Any] | None = None) -> list[Chunk]:
    out = []
    for start, end in spans:
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start < end:
            out.append(Chunk(text[start:end], start, end, dict(metadata or {})))
    return out


def _fixed(text: str, start: int, end: int, options: ChunkOptions, measure: Measure) -> list[Span]:
    """Windows of ``size`` units stepping ``size - overlap`` units over ``text[start:end]``."""
    if options.unit == "tokens":
        encoding = token_counter().encode(text[start:end], add_special_tokens=False)
        offsets = [(start + a, start + b) for a, b in encoding.offsets]
        if not offsets:
            return []
        spans, step = [], options.size - options.overlap
        for first in range(0, len(offsets), step):
            last = min(first + options.size, len(offsets)) - 1
            spans.append((offsets[first][0], offsets[last][1]))
            if last == len(offsets) - 1:
                break
        return spans
    spans, step = [], options.size - options.overlap
    for pos in range(start, end, step):
        spans.append((pos, min(pos + options.size, end)))
        if pos + options.size >= end:
            break
    return spans


def _sentences(text: str, start: int, end: int) -> list[Span]:
    spans, pos = [], start
    for match in _SENTENCE_END.finditer(text, start, end):
        if match.end() > pos:
            spans.append((pos, match.end()))
            pos = match.end()
    if pos < end:
        spans.append((pos, end))
    return spans


def _pack(text: str, units: list[Span], options: ChunkOptions, measure: Measure) -> list[Span]:
    """Consecutive ``units`` (sentences, code blocks, lines) joined into spans of at most
    ``size``; the trailing units of a span, up to ``overlap``, begin the next one. A unit longer
    than ``size`` on its own is cut into fixed windows."""
    spans: list[Span] = []
    current: list[Span] = []

    def flush() -> None:
        if current:
            spans.append((current[0][0], current[-1][1]))

    for unit in units:
        if measure(text, *unit) > options.size:
            flush()
            current = []
            spans += _fixed(text, unit[0], unit[1], options, measure)
            continue
        if current and measure(text, current[0][0], unit[1]) > options.size:
            flush()
            carried: list[Span] = []
            for prev in reversed(current):
                if options.overlap and measure(text, prev[0], current[-1][1]) <= options.overlap \
                        and measure(text, prev[0], unit[1]) <= options.size:
                    carried.insert(0, prev)
                else:
                    break
            current = carried
        current.append(unit)
    flush()
    return spans


# ----------------------------------------------------------------------------- markdown
def _markdown(text: str, options: ChunkOptions, measure: Measure) -> list[Chunk]:
    sections: list[tuple[int, int, str]] = []  # (start, end, heading path)
    path: list[tuple[int, str]] = []
    start, pos, in_fence, heading = 0, 0, False, ""
    for line in text.splitlines(keepends=True):
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line.rstrip("\r\n"))
        if match:
            if pos > start:
                sections.append((start, pos, heading))
            level = len(match.group(1))
            path = [(lvl, title) for lvl, title in path if lvl < level] + [(level, match.group(2).strip())]
            heading = " > ".join(title for _, title in path)
            start = pos
        pos += len(line)
    if pos > start:
        sections.append((start, pos, heading))
    chunks: list[Chunk] = []
    for s, e, heading in sections:
        meta = {"section": heading} if heading else {}
        if measure(text, s, e) <= options.size:
            chunks += _chunks(text, [(s, e)], meta)
        else:
            chunks += _chunks(text, _pack(text, _sentences(text, s, e), options, measure), meta)
    return chunks


# ----------------------------------------------------------------------------- code
def _code(text: str, options: ChunkOptions, measure: Measure, language: str | None) -> list[Chunk]:
    blocks: list[Span] = []
    lines: list[Span] = []
    pos, block_start, blank_before = 0, 0, False
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        top_level = bool(stripped) and not line[0].isspace()
        starts_block = top_level and (blank_before or _DEFINITION.match(line) is not None) \
            and not stripped.startswith(("}", ")", "]", "end", "else", "elif", "except", "finally", "catch"))
        if starts_block and pos > block_start:
            blocks.append((block_start, pos))
            block_start = pos
        lines.append((pos, pos + len(line)))
        blank_before = not stripped
        pos += len(line)
    if pos > block_start:
        blocks.append((block_start, pos))
    units: list[Span] = []
    for block in blocks:  # a block too long on its own is cut at line ends, not mid-line
        if measure(text, *block) > options.size:
            units += [line for line in lines if block[0] <= line[0] < block[1]]
        else:
            units.append(block)
    chunks = []
    for chunk in _chunks(text, _pack(text, units, options, measure)):
        meta: dict[str, Any] = {"line": text.count("\n", 0, chunk.start) + 1}
        if language:
            meta["language"] = language
        for line in chunk.text.splitlines():
            match = _DEFINITION.match(line)
            if match:
                meta["symbol"] = match.group(1).rstrip(":.")
                break
        chunks.append(Chunk(chunk.text, chunk.start, chunk.end, meta))
    return chunks
