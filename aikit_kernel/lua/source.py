"""Source-level helpers for Lua cells: a small lexer, top-level ``local`` persistence, block depth
for indentation, and the identifier chain under the cursor (for complete/inspect).

The lexer only needs to tell code from strings and comments and to find keywords; the Lua parser
itself (``load``) stays the judge of validity.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

# One pass of one compiled pattern: alternatives are tried in order at each position.
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>--\[(?P<ceq>=*)\[.*?(?:\](?P=ceq)\]|\Z) | --[^\n]*)
  | (?P<long>\[(?P<leq>=*)\[.*?(?:\](?P=leq)\]|\Z))
  | (?P<string>"(?:\\.|[^"\\\n])*(?:"|$) | '(?:\\.|[^'\\\n])*(?:'|$))
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>0[xX][0-9a-fA-F.]*(?:[pP][+-]?\d+)? | \d+\.?\d*(?:[eE][+-]?\d+)? | \.\d+(?:[eE][+-]?\d+)?)
  | (?P<symbol>\.\.\.|\.\.|==|~=|<=|>=|<<|>>|//|::|.)
    """,
    re.S | re.X | re.M,
)
_KIND = {"comment": "comment", "long": "string", "string": "string", "name": "name", "number": "number", "symbol": "symbol"}

_SURROGATE = re.compile("[\ud800-\udfff]")


def well_formed(code: str) -> str:
    """``code`` with every lone surrogate replaced by U+FFFD, one for one (cursor positions stay).
    Lone surrogates are text that is not Unicode: ``\\ud800`` escaped in a request's JSON, or
    bytes that are not UTF-8 read with ``surrogateescape`` (a pipe into ``aikit repl``); they
    cannot be encoded for Lua, and would fail the request instead of running the code."""
    return code if code.isascii() else _SURROGATE.sub("\ufffd", code)


OPENERS = {"function", "if", "do", "repeat"}
CLOSERS = {"end", "until"}


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "name", "keyword", "string", "number", "symbol", "comment"
    text: str
    start: int
    end: int


KEYWORDS = frozenset(
    ["and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in", "local", "nil",
     "not", "or", "repeat", "return", "then", "true", "until", "while"]
)


def tokenize(code: str) -> list[Token]:
    """Split Lua source into tokens; unterminated strings/comments run to the end of their line/input."""
    tokens: list[Token] = []
    for m in _TOKEN.finditer(code):
        group = m.lastgroup
        if group == "ws" or group is None:
            continue
        kind = _KIND.get(group, group)
        text = m.group()
        if kind == "name" and text in KEYWORDS:
            kind = "keyword"
        tokens.append(Token(kind, text, m.start(), m.end()))
    return tokens


def block_depth(code: str) -> int:
    """How many blocks are open at the end of ``code`` (for the indent of an incomplete cell)."""
    depth = 0
    for tok in tokenize(code):
        if tok.kind == "keyword":
            if tok.text in OPENERS:
                depth += 1
            elif tok.text in CLOSERS:
                depth = max(0, depth - 1)
        elif tok.kind == "symbol" and tok.text in "({":
            depth += 1
        elif tok.kind == "symbol" and tok.text in ")}":
            depth = max(0, depth - 1)
    return depth


@functools.lru_cache(maxsize=256)
def persist_top_level_locals(code: str) -> str:
    """Rewrite top-level ``local`` declarations into assignments to the cell environment, so the
    names survive into later cells (what a notebook user expects). Columns shift, lines do not.

    ``local x <close>`` stays local (it must be closed at the end of the cell); ``<const>`` is
    dropped (the value persists, the compile-time check does not).
    """
    tokens = [t for t in tokenize(code) if t.kind != "comment"]
    edits: list[tuple[int, int, str]] = []
    depth = 0
    for idx, tok in enumerate(tokens):
        if tok.kind == "keyword" and tok.text in OPENERS:
            depth += 1
        elif tok.kind == "keyword" and tok.text in CLOSERS:
            depth = max(0, depth - 1)
        if depth or tok.kind != "keyword" or tok.text != "local":
            continue
        nxt = tokens[idx + 1] if idx + 1 < len(tokens) else None
        if nxt is None:
            continue
        if nxt.kind == "keyword" and nxt.text == "function":
            edits.append((tok.start, nxt.start, ""))  # `local function f` -> `function f`
            continue
        names_end, attrib_edits, j, has_close = _scan_attnamelist(tokens, idx + 1)
        if has_close or names_end is None:
            continue
        edits.append((tok.start, tokens[idx + 1].start, ""))
        edits.extend(attrib_edits)
        following = tokens[j] if j < len(tokens) else None
        if following is None or following.text != "=":
            # `local a, b` declares nils: make the reset explicit.
            names = ", ".join(t.text for t in tokens[idx + 1:j] if t.kind == "name")
            count = names.count(",") + 1
            edits.append((names_end, names_end, " = " + ", ".join(["nil"] * count)))
    for start, end, text in sorted(edits, reverse=True):
        code = code[:start] + text + code[end:]
    return code


def _scan_attnamelist(tokens: list[Token], i: int) -> tuple[int | None, list[tuple[int, int, str]], int, bool]:
    """Scan ``Name attrib {',' Name attrib}``; return (end offset of the list, edits removing
    ``<const>`` attributes, index after the list, whether a ``<close>`` was seen)."""
    edits: list[tuple[int, int, str]] = []
    end: int | None = None
    has_close = False
    while i < len(tokens) and tokens[i].kind == "name":
        end = tokens[i].end
        i += 1
        if i + 2 < len(tokens) and tokens[i].text == "<" and tokens[i + 2].text == ">":
            if tokens[i + 1].text == "close":
                has_close = True
            edits.append((tokens[i].start, tokens[i + 2].end, ""))
            end = tokens[i + 2].end
            i += 3
        if i < len(tokens) and tokens[i].text == ",":
            i += 1
            continue
        break
    return end, edits, i, has_close


_CHAIN_CHARS = re.compile(r"[A-Za-z0-9_.:]")


def chain_before(code: str, cursor: int) -> tuple[int, str]:
    """The ``a.b:c`` chain ending at ``cursor``: (its start offset, its text)."""
    start = cursor
    while start > 0 and _CHAIN_CHARS.match(code[start - 1]):
        start -= 1
    # A chain cannot start with a digit or separator.
    while start < cursor and not (code[start].isalpha() or code[start] == "_"):
        start += 1
    return start, code[start:cursor]


def chain_at(code: str, cursor: int) -> tuple[int, int, str]:
    """The identifier chain around ``cursor`` (for inspect): (start, end, text)."""
    end = cursor
    while end < len(code) and (code[end].isalnum() or code[end] == "_"):
        end += 1
    start, text = chain_before(code, end)
    return start, end, text


def split_chain(text: str) -> tuple[list[str], str | None, str]:
    """Split ``a.b:c`` into (["a", "b"], ":", "c"); a bare name gives ([], None, name)."""
    m = re.match(r"^(.*)([.:])([A-Za-z0-9_]*)$", text)
    if not m:
        return [], None, text
    base = [p for p in m.group(1).replace(":", ".").split(".") if p]
    return base, m.group(2), m.group(3)


def enclosing_call(code: str, cursor: int) -> str:
    """The name chain of the call whose argument list holds ``cursor`` (``print(1, |`` -> "print")."""
    depth = 0
    for tok in reversed(tokenize(code[:cursor])):
        if tok.kind != "symbol":
            continue
        if tok.text in ")]}":
            depth += 1
        elif tok.text in "([{":
            if depth == 0:
                return chain_before(code, tok.start)[1] if tok.text == "(" else ""
            depth -= 1
    return ""


_NAME_CHAIN = r"[A-Za-z_][A-Za-z0-9_]*(?:[.:][A-Za-z_][A-Za-z0-9_]*)*"
_HELP = re.compile(rf"^\s*(?:(?P<pre>\?\??)\s*(?P<name1>{_NAME_CHAIN})|(?P<name2>{_NAME_CHAIN})\s*(?P<post>\?\??))\s*$")


def help_request(code: str) -> tuple[str, int] | None:
    """IPython-style help: a cell that is only ``?name``, ``name?``, ``??name`` or ``name??``
    gives (name, detail level: 0 for one ``?``, 1 for two); any other cell gives None. (``?`` is
    never valid Lua, so no Lua cell is taken for a help request.)"""
    m = _HELP.match(code)
    if m is None:
        return None
    name = m.group("name1") or m.group("name2")
    marks = m.group("pre") or m.group("post")
    return name, len(marks) - 1
