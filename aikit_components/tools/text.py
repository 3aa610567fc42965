"""Text tools: templates, regular expressions, diffs, hashes, base64, UUIDs, dates and times, a safe
calculator and text statistics.

All are plain functions (pure computation, run in the caller's thread), so each one bounds its own
work: inputs have size caps, regular expressions run with a timeout (the ``regex`` module) so a
catastrophic pattern cannot hang the kernel, templates render in Jinja's immutable sandbox with
size and loop budgets, and the calculator evaluates a whitelisted ``ast`` itself (never ``eval``) with caps
on exponents and integer sizes.
"""

from __future__ import annotations

import ast
import base64
import binascii
import calendar
import datetime as dt
import difflib
import functools
import hashlib
import math
import operator
import re
import secrets
import string
import threading
import time
import uuid as uuid_module
from collections import Counter
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
import markupsafe
from jinja2 import nodes
from jinja2.compiler import CodeGenerator
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from ..errors import InvalidArgument, PermissionDenied, ResourceExhausted, Timeout
from .base import Tool, tool

try:  # a backtracking engine with a timeout: a catastrophic pattern cannot hang the caller
    import regex as _re_engine

    _HAS_TIMEOUT = True
except ImportError:  # pragma: no cover - fall back to re with a smaller text cap
    _re_engine = re  # type: ignore[assignment]
    _HAS_TIMEOUT = False

try:  # free-form dates ("May 1, 2024 3pm"); ISO 8601, RFC 2822 and explicit formats work without it
    from dateutil import parser as _dateutil_parser
except ImportError:  # pragma: no cover
    _dateutil_parser = None

MAX_TEXT = 10_000_000  # characters, for linear-time tools (hash, base64, stats)
MAX_REGEX_TEXT = 1_000_000 if _HAS_TIMEOUT else 100_000
MAX_PATTERN = 10_000
REGEX_TIMEOUT_S = 2.0
MAX_MATCHES = 100_000
MAX_DIFF_TEXT = 2_000_000
MAX_NDIFF_LINES = 5_000
MAX_TEMPLATE = 1_000_000
MAX_TEMPLATE_OUTPUT = 5_000_000
MAX_TEMPLATE_VALUE = 10_000_000  # characters/items of any one value a template makes
MAX_TEMPLATE_WIDTH = 100_000  # width-like integer arguments (center, ljust, indent, format widths, ...)
MAX_TEMPLATE_RANGE = 1_000_000  # items of one range()
TEMPLATE_TIMEOUT_S = 5.0
MAX_EXPRESSION = 10_000
MAX_INT_BITS = 14_000  # about 4200 decimal digits: stays printable (Python refuses str() past 4300)
MAX_EXPONENT = 10_000


def _cap(value: str, limit: int, what: str) -> None:
    if len(value) > limit:
        raise ResourceExhausted(f"{what} is {len(value):,} characters, over the {limit:,} limit; give a shorter one",
                                details={"limit": limit, "size": len(value)})


# ============================================================================ templates
# Jinja's sandbox stops templates reaching Python internals, but its own docs say it does not bound
# resources. A template renders in the caller's thread (the Lua thread), where a runaway render
# cannot be interrupted, so every way a template can make a big value in one step is checked
# before it happens (``*``, ``**``, ``+``, ``~``, ``%`` and ``format`` widths, width-like integer
# arguments, ``replace``/``join``/``indent`` growth), and everything a render produces counts
# against a per-render budget (steps: loop iterations, calls, filters and operators; characters
# made; output size), so neither a huge value nor a long-running loop or recursion gets through.


@dataclass
class _RenderBudget:
    steps: int = 5_000_000  # loop iterations, calls, filters, operators across one render
    produced: int = 50_000_000  # characters/items made by operators, filters and method calls
    deadline: float = field(default_factory=lambda: time.monotonic() + TEMPLATE_TIMEOUT_S)


_BUDGET: ContextVar[_RenderBudget | None] = ContextVar("aikit_template_budget", default=None)
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_REFUSED_STR_METHODS = frozenset({"expandtabs", "translate", "maketrans"})


def _too_big(what: str, size: int, limit: int) -> ResourceExhausted:
    return ResourceExhausted(f"the template {what} ({size:,}, limit {limit:,}); make it smaller",
                             details={"limit": limit, "size": size})


def _tick() -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.steps -= 1
        if budget.steps < 0:
            raise ResourceExhausted(f"the template ran more than {_RenderBudget.steps:,} steps (loop iterations, "
                                    "calls, filters, operators); simplify its loops or recursion",
                                    details={"rule": "template_budget"})
        if budget.steps & 0xFF == 0 and time.monotonic() > budget.deadline:
            raise Timeout(f"the template ran longer than {TEMPLATE_TIMEOUT_S:g} s; simplify its loops or recursion",
                          details={"rule": "template_budget", "timeout_s": TEMPLATE_TIMEOUT_S})


def _counted(iterable: Any) -> Iterator[Any]:
    for item in iterable:
        _tick()
        yield item


def _charge(value: Any) -> Any:
    """Count a value a template produced against the render's budget."""
    if isinstance(value, (str, list, tuple, dict)):
        size = len(value)
        if size > MAX_TEMPLATE_VALUE:
            raise _too_big("made a value that is too big", size, MAX_TEMPLATE_VALUE)
        budget = _BUDGET.get()
        if budget is not None:
            budget.produced -= size
            if budget.produced < 0:
                raise ResourceExhausted("the template made too much data in total; render less",
                                        details={"rule": "template_budget"})
    return value


def _check_widths(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if _is_int(value) and abs(value) > MAX_TEMPLATE_WIDTH:
            raise _too_big("passed a width or count that is too large", abs(value), MAX_TEMPLATE_WIDTH)


def _check_format(spec_source: str) -> None:
    """Refuse str.format fields whose width/precision would allocate huge strings."""
    try:
        fields = list(string.Formatter().parse(spec_source))
    except ValueError:
        return  # str.format reports the malformed string itself
    for _, _, spec, _ in fields:
        if not spec:
            continue
        if "{" in spec:
            raise PermissionDenied("templates may not use nested {} fields in a format spec",
                                   details={"rule": "template_sandbox"})
        for digits in re.findall(r"\d+", spec):
            if len(digits) > 7 or int(digits) > MAX_TEMPLATE_WIDTH:
                raise _too_big("formats with a width that is too large", int(digits[:12]), MAX_TEMPLATE_WIDTH)


def _check_percent(fmt: str) -> None:
    for match in _PERCENT_SPEC.finditer(fmt.replace("%%", "")):
        for part in match.groups():
            if part == "*":
                raise PermissionDenied("templates may not use * widths in % formatting",
                                       details={"rule": "template_sandbox"})
            if part and (len(part) > 7 or int(part) > MAX_TEMPLATE_WIDTH):
                raise _too_big("formats with a width that is too large", int(part[:12]), MAX_TEMPLATE_WIDTH)


def _check_replace(text: Any, old: Any, new: Any, count: Any = None) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        hits = text.count(old) if old else len(text) + 1
        if _is_int(count) and count >= 0:
            hits = min(hits, count)
        size = len(text) + hits * (len(new) - len(old))
        if size > MAX_TEMPLATE_VALUE:
            raise _too_big("replaces into a value that is too big", size, MAX_TEMPLATE_VALUE)


def _check_join(separator: Any, items: list[Any]) -> None:
    size = len(str(separator)) * max(0, len(items) - 1)
    size += sum(len(x) for x in items if isinstance(x, str))
    if size > MAX_TEMPLATE_VALUE:
        raise _too_big("joins into a value that is too big", size, MAX_TEMPLATE_VALUE)


def _guard_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    skip = 1 if getattr(fn, "jinja_pass_arg", None) is not None else 0  # context / eval_ctx / environment

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        own = args[skip:]  # (value, filter arguments...)
        _check_widths(own[1:], kwargs)
        if name == "format" and own and isinstance(own[0], str):
            _check_percent(own[0])
        elif name == "replace" and len(own) >= 3:
            _check_replace(*own[:4])
        elif name == "indent" and own and isinstance(own[0], str):
            width = own[1] if len(own) > 1 else kwargs.get("width", 4)
            if isinstance(width, str) and len(width) * (own[0].count("\n") + 1) > MAX_TEMPLATE_VALUE:
                raise _too_big("indents into a value that is too big", len(width) * own[0].count("\n"),
                               MAX_TEMPLATE_VALUE)
        elif name == "join" and own:
            items = list(own[0])
            _check_join(own[1] if len(own) > 1 else kwargs.get("d", ""), items)
            own = (items, *own[1:])
            args = (*args[:skip], *own)
        return _charge(fn(*args, **kwargs))

    return guarded


class _BudgetedRange:
    """``range()`` for templates: a real range (len, indexing) whose iteration counts against the
    render's budget, so nested loops cannot run for hours."""

    def __init__(self, *args: int) -> None:
        self._range = range(*args)
        if len(self._range) > MAX_TEMPLATE_RANGE:
            raise _too_big("asked for a range that is too long", len(self._range), MAX_TEMPLATE_RANGE)

    def __len__(self) -> int:
        return len(self._range)

    def __getitem__(self, index: Any) -> Any:
        return self._range[index]

    def __iter__(self) -> Iterator[int]:
        return _counted(self._range)

    def __repr__(self) -> str:
        return repr(self._range)


class _GuardedCodeGenerator(CodeGenerator):
    """Compiles ``a ~ b ~ ...`` (string concatenation) into a join that checks the size first."""

    def visit_Concat(self, node: Any, frame: Any) -> None:
        self.write("environment.checked_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _TemplateEnvironment(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox (no attribute starting with ``_``, no mutation of passed-in values)
    with the resource guards described above."""

    code_generator_class = _GuardedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters = {name: _guard_filter(name, fn) for name, fn in self.filters.items()}
        self.globals.pop("lipsum", None)  # random text generator: nothing a data template needs
        self.globals["range"] = _BudgetedRange

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):  # every {% for %} iteration costs a step
            counted = nodes.Call(nodes.EnvironmentAttribute("counted"), [loop.iter], [], None, None)
            loop.iter = counted.set_ctx("load").set_lineno(loop.iter.lineno).set_environment(self)
        return tree

    def counted(self, iterable: Any) -> Iterator[Any]:
        return _counted(iterable)

    def checked_concat(self, values: tuple[Any, ...]) -> str:
        _tick()
        parts = [v if isinstance(v, str) else markupsafe.soft_str(v) for v in values]
        size = sum(map(len, parts))
        if size > MAX_TEMPLATE_VALUE:
            raise _too_big("concatenates a value that is too big", size, MAX_TEMPLATE_VALUE)
        if any(hasattr(p, "__html__") for p in parts):  # inside {% autoescape true %}
            return _charge(markupsafe.Markup("").join(parts))
        return _charge("".join(parts))

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str) and attr in _REFUSED_STR_METHODS:
            return False
        return super().is_safe_attribute(obj, attr, value)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - jinja's signature
        _tick()
        target = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
        owner = getattr(target, "__self__", None)
        if isinstance(owner, str):
            _check_widths(args, kwargs)
            method = getattr(target, "__name__", "")
            if method in ("format", "format_map"):
                _check_format(owner)
            elif method == "replace" and len(args) >= 2:
                _check_replace(owner, *args[:3])
            elif method == "join" and args:
                items = list(args[0])
                _check_join(owner, items)
                args = (items, *args[1:])
        return _charge(super().call(__context, __obj, *args, **kwargs))

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        _tick()
        if operator_ == "**":
            if _is_int(left) and _is_int(right):
                _check_power(left, right)
        elif operator_ == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and _is_int(count) and count > 0:
                    weight = len(seq) if isinstance(seq, str) else sum(
                        len(x) if isinstance(x, (str, list, tuple)) else 1 for x in seq)
                    if weight * count > MAX_TEMPLATE_VALUE:
                        raise _too_big("multiplies a sequence to too many items", weight * count, MAX_TEMPLATE_VALUE)
            if _is_int(left) and _is_int(right):
                _check_bits(left.bit_length() + right.bit_length())
        elif operator_ == "+":
            if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)) \
                    and len(left) + len(right) > MAX_TEMPLATE_VALUE:
                raise _too_big("adds up to a value that is too big", len(left) + len(right), MAX_TEMPLATE_VALUE)
        elif operator_ == "%" and isinstance(left, str):
            _check_percent(left)
        return _charge(self.binop_table[operator_](left, right))


def _finalize(value: Any) -> Any:
    """Before a list or table is printed, bound the text it would turn into."""
    if isinstance(value, (list, tuple, dict)):
        size = 0
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                stack.extend(item.keys())
                stack.extend(item.values())
                size += 4 * len(item)
            elif isinstance(item, (list, tuple)):
                stack.extend(item)
                size += 2 * len(item)
            else:
                size += len(item) if isinstance(item, str) else 8
            if size > MAX_TEMPLATE_OUTPUT:
                raise _too_big("prints a value that is too big", size, MAX_TEMPLATE_OUTPUT)
    return value


_TEMPLATES = _TemplateEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True,
                                  finalize=_finalize)


@functools.lru_cache(maxsize=256)
def _compile_template(source: str) -> jinja2.Template:
    return _TEMPLATES.from_string(source)


_UNDEFINED_NAME = re.compile(r"^'([^']+)' is undefined$")


@tool(category="text", security="safe", examples=[
    {"args": {"template": "Hello {{ name }}! {% for t in tags %}#{{ t }} {% endfor %}",
              "variables": {"name": "Ada", "tags": ["lua", "ai"]}}, "result": "Hello Ada! #lua #ai "},
])
def render_template(template: str, variables: dict[str, Any] | None = None) -> str:
    """Render a Jinja2 template in a sandbox.

    Undefined variables are errors (not empty strings); Python internals (`__class__`, ...) and
    methods that change the values passed in are refused; range() loops, the size of any value the
    template builds and the output are bounded (`lipsum` is not available).

    Args:
        template: The template text, e.g. "Hello {{ name }}".
        variables: Values the template can use, by name.

    Returns:
        The rendered text.
    """
    _cap(template, MAX_TEMPLATE, "template")
    variables = dict(variables or {})
    try:
        compiled = _compile_template(template)
    except jinja2.TemplateSyntaxError as exc:
        raise InvalidArgument(f"template syntax error at line {exc.lineno}: {exc.message}; fix the template",
                              details={"line": exc.lineno, "reason": exc.message}) from None
    pieces: list[str] = []
    size = 0
    token = _BUDGET.set(_RenderBudget())
    try:
        for piece in compiled.generate(variables):
            size += len(piece)
            if size > MAX_TEMPLATE_OUTPUT:
                raise ResourceExhausted(f"the template's output exceeds {MAX_TEMPLATE_OUTPUT:,} characters; "
                                        "render less", details={"limit": MAX_TEMPLATE_OUTPUT})
            pieces.append(piece)
    except SecurityError as exc:
        raise PermissionDenied(f"the template was refused by the sandbox: {exc} Templates may not reach Python "
                               "internals or change the values passed in.",
                               details={"rule": "template_sandbox"}) from None
    except jinja2.UndefinedError as exc:
        message = str(exc.message or exc)
        found = _UNDEFINED_NAME.match(message)
        if found:
            name = found.group(1)
            raise InvalidArgument(f"the template uses {name!r}, which is not defined; pass it in `variables` "
                                  f"(known: {', '.join(sorted(variables)) or 'none'})",
                                  details={"name": name}) from None
        raise InvalidArgument(f"the template uses an undefined value: {message}", details={"reason": message}) from None
    except jinja2.TemplateError as exc:
        raise InvalidArgument(f"the template failed: {exc}", details={"reason": str(exc)}) from None
    except RecursionError:
        raise InvalidArgument("the template recursed too deeply (a macro calling itself?)") from None
    except (TypeError, ValueError, ZeroDivisionError, OverflowError, ArithmeticError, LookupError) as exc:
        raise InvalidArgument(f"the template failed while rendering: {type(exc).__name__}: {exc}",
                              details={"reason": str(exc)}) from None
    finally:
        _BUDGET.reset(token)
    return "".join(pieces)


# ============================================================================ regular expressions
_FLAGS = {"i": _re_engine.IGNORECASE, "m": _re_engine.MULTILINE, "s": _re_engine.DOTALL, "x": _re_engine.VERBOSE}


def _compile_regex(pattern: str, flags: list[str] | None) -> Any:
    _cap(pattern, MAX_PATTERN, "pattern")
    bits = 0
    for flag in flags or []:
        bits |= _FLAGS[flag]
    try:
        return _re_engine.compile(pattern, bits)
    except _re_engine.error as exc:
        pos = exc.pos if exc.pos is not None else 0
        caret = " " * pos + "^"
        raise InvalidArgument(
            f"invalid regular expression at position {pos}: {exc.msg}\n    {pattern}\n    {caret}",
            details={"position": pos, "reason": exc.msg, "pattern": pattern},
        ) from None
    except (OverflowError, RecursionError) as exc:
        raise InvalidArgument(f"regular expression too large or nested too deeply: {exc}") from None


def _match_info(m: Any) -> dict[str, Any]:
    return {"match": m.group(0), "start": m.start(), "end": m.end(), "groups": list(m.groups()),
            "named": m.groupdict()}


@tool(name="regex", category="text", security="safe", examples=[
    {"args": {"pattern": r"(\w+)@(\w+)\.com", "text": "ada@math.com, alan@enigma.com", "mode": "findall"},
     "result": [["ada", "math"], ["alan", "enigma"]]},
    {"args": {"pattern": r"\d+", "text": "a1b22", "mode": "sub", "replacement": "#"}, "result": {"text": "a#b#", "count": 2}},
])
def regex_tool(pattern: str, text: str, mode: Literal["search", "findall", "sub", "split"] = "search",
               replacement: str | None = None, flags: list[Literal["i", "m", "s", "x"]] | None = None,
               count: int = 0) -> Any:
    """Search, find all, substitute or split with a regular expression (Python syntax).

    Args:
        pattern: The regular expression, e.g. "(\\d+)-(\\d+)".
        text: The text to work on.
        mode: 'search' (first match), 'findall' (every match), 'sub' (replace), 'split'.
        replacement: The replacement for 'sub'; \\1 or \\g<name> insert groups.
        flags: Any of "i" (ignore case), "m" (^ and $ per line), "s" (. matches newlines), "x" (verbose).
        count: For 'sub' the most replacements, for 'split' the most splits (0: no limit).

    Returns:
        search: `{match, start, end, groups, named}` or nil when nothing matches; findall: a list of
        matches (a list of groups per match when the pattern has several groups); sub: `{text, count}`;
        split: a list of strings.
    """
    _cap(text, MAX_REGEX_TEXT, "text")
    if count < 0:
        raise InvalidArgument(f"count must be 0 or more, got {count}")
    compiled = _compile_regex(pattern, flags)
    timeout = {"timeout": REGEX_TIMEOUT_S, "concurrent": True} if _HAS_TIMEOUT else {}
    try:
        if mode == "search":
            found = compiled.search(text, **timeout)
            return _match_info(found) if found else None
        if mode == "findall":
            results: list[Any] = []
            deadline = time.monotonic() + REGEX_TIMEOUT_S
            for m in compiled.finditer(text, **timeout):
                if len(results) >= MAX_MATCHES:
                    raise ResourceExhausted(f"more than {MAX_MATCHES:,} matches; narrow the pattern")
                if time.monotonic() > deadline:
                    raise TimeoutError
                groups = m.groups()
                results.append(m.group(0) if not groups else groups[0] if len(groups) == 1 else list(groups))
            return results
        if mode == "sub":
            if replacement is None:
                raise InvalidArgument("mode 'sub' needs a `replacement` (use \"\" to delete the matches)")
            try:
                new_text, n = compiled.subn(replacement, text, count=count, **timeout)
            except (_re_engine.error, IndexError) as exc:
                raise InvalidArgument(f"invalid replacement {replacement!r}: {exc}; refer to groups as \\1 or "
                                      "\\g<name>", details={"replacement": replacement}) from None
            return {"text": new_text, "count": n}
        if mode == "split":
            parts = compiled.split(text, maxsplit=count, **timeout)
            if len(parts) > MAX_MATCHES:
                raise ResourceExhausted(f"more than {MAX_MATCHES:,} pieces; narrow the pattern")
            return parts
    except TimeoutError:
        raise Timeout(f"the regular expression ran longer than {REGEX_TIMEOUT_S:g} s on this text (catastrophic "
                      "backtracking?); avoid nested quantifiers such as (a+)+ or (a|aa)*, or anchor the pattern",
                      details={"pattern": pattern, "timeout_s": REGEX_TIMEOUT_S}) from None
    raise InvalidArgument(f"unknown mode {mode!r}; use search, findall, sub or split")  # pragma: no cover


# ============================================================================ diff, hash, base64, uuid
@tool(category="text", security="safe", examples=[
    {"args": {"a": "one\ntwo\nthree\n", "b": "one\n2\nthree\n", "context": 1},
     "result": {"diff": "--- a\n+++ b\n@@ -1,3 +1,3 @@\n one\n-two\n+2\n three\n", "changed": True,
                "added": 1, "removed": 1}},
])
def text_diff(a: str, b: str, context: int = 3, format: Literal["unified", "ndiff"] = "unified",
              from_label: str = "a", to_label: str = "b") -> dict[str, Any]:
    """Compare two texts line by line.

    Args:
        a: The original text.
        b: The changed text.
        context: Unchanged lines shown around each change (unified format).
        format: 'unified' (like `diff -u`) or 'ndiff' (every line, with ? hints inside changed lines).
        from_label: The name shown for `a` in a unified diff header.
        to_label: The name shown for `b` in a unified diff header.

    Returns:
        `{diff, changed, added, removed}`: the diff text (empty when equal) and changed-line counts.
    """
    _cap(a, MAX_DIFF_TEXT, "a")
    _cap(b, MAX_DIFF_TEXT, "b")
    if context < 0:
        raise InvalidArgument(f"context must be 0 or more, got {context}")
    old, new = a.splitlines(), b.splitlines()
    if format == "ndiff":
        if max(len(old), len(new)) > MAX_NDIFF_LINES:
            raise ResourceExhausted(f"ndiff compares at most {MAX_NDIFF_LINES:,} lines per text (it is quadratic); "
                                    "use format='unified' for longer texts")
        lines = [line.rstrip("\n") for line in difflib.ndiff(old, new)]  # its "?" hint lines end in \n
        added = sum(1 for line in lines if line.startswith("+ "))
        removed = sum(1 for line in lines if line.startswith("- "))
    else:
        lines = list(difflib.unified_diff(old, new, fromfile=from_label, tofile=to_label, n=context, lineterm=""))
        added = sum(1 for line in lines[2:] if line.startswith("+"))
        removed = sum(1 for line in lines[2:] if line.startswith("-"))
    diff = "\n".join(lines) + ("\n" if lines else "")
    # `changed` also catches differences splitlines() hides (a trailing newline, \r\n versus \n)
    return {"diff": diff, "changed": a != b, "added": added, "removed": removed}


_HASHES: dict[str, Callable[[bytes], Any]] = {
    "md5": lambda data: hashlib.md5(data, usedforsecurity=False),
    "sha1": lambda data: hashlib.sha1(data, usedforsecurity=False),
    "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
    "blake2b": hashlib.blake2b,
}


@tool(name="hash", category="text", security="safe", examples=[
    {"args": {"text": "hello"}, "result": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"},
    {"args": {"text": "hello", "algorithm": "md5"}, "result": "5d41402abc4b2a76b9719d911017c592"},
])
def hash_text(text: str, algorithm: Literal["md5", "sha1", "sha256", "sha512", "blake2b"] = "sha256") -> str:
    """Hash text (UTF-8) and return the hex digest.

    Args:
        text: The text to hash.
        algorithm: One of md5, sha1, sha256, sha512, blake2b (md5 and sha1 are for checksums, not security).

    Returns:
        The lowercase hexadecimal digest.
    """
    _cap(text, MAX_TEXT, "text")
    return _HASHES[algorithm](text.encode("utf-8")).hexdigest()


@tool(category="text", security="safe", examples=[{"args": {"text": "hi there"}, "result": "aGkgdGhlcmU="}])
def base64_encode(text: str, url_safe: bool = False) -> str:
    """Encode text (as UTF-8) in base64.

    Args:
        text: The text to encode.
        url_safe: Use the URL-safe alphabet (- and _ instead of + and /).

    Returns:
        The base64 text.
    """
    _cap(text, MAX_TEXT, "text")
    raw = text.encode("utf-8")
    return (base64.urlsafe_b64encode(raw) if url_safe else base64.b64encode(raw)).decode("ascii")


@tool(category="text", security="safe", examples=[{"args": {"data": "aGkgdGhlcmU="}, "result": "hi there"}])
def base64_decode(data: str, url_safe: bool = False) -> str:
    """Decode base64 into text (UTF-8). Whitespace is ignored and missing padding is tolerated.

    Args:
        data: The base64 text.
        url_safe: The input uses the URL-safe alphabet (- and _); detected automatically when present.

    Returns:
        The decoded text.
    """
    _cap(data, MAX_TEXT, "data")
    cleaned = "".join(data.split())
    if url_safe or "-" in cleaned or "_" in cleaned:
        cleaned = cleaned.replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        raw = base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError) as exc:
        bad = next((i for i, ch in enumerate(cleaned) if not (ch.isalnum() or ch in "+/=")), None)
        where = f" (character {cleaned[bad]!r} at position {bad})" if bad is not None else ""
        raise InvalidArgument(f"data is not valid base64{where}: {exc}; base64 uses A-Z, a-z, 0-9, + and / "
                              "(or - and _), with = padding", details={"reason": str(exc)}) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"the decoded bytes are not UTF-8 text (invalid byte at offset {exc.start}); this "
                              "base64 holds binary data", details={"offset": exc.start}) from None


_V7_LOCK = threading.Lock()
_v7_last = [0, 0]  # the last (millisecond, counter) handed out


def _uuid7() -> uuid_module.UUID:
    """RFC 9562 version 7: 48-bit Unix milliseconds, a 12-bit counter (monotonic within a
    millisecond, so values sort in creation order), then 62 random bits."""
    with _V7_LOCK:
        ms = time.time_ns() // 1_000_000
        last_ms, counter = _v7_last
        if ms <= last_ms:
            ms, counter = last_ms, counter + 1
            if counter > 0xFFF:  # counter exhausted: borrow the next millisecond (RFC 9562, 6.2)
                ms, counter = ms + 1, secrets.randbits(10)
        else:
            counter = secrets.randbits(10)  # random start, with room to count up
        _v7_last[:] = [ms, counter]
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | secrets.randbits(62)
    return uuid_module.UUID(int=value)


@tool(name="uuid", category="text", security="safe", examples=[
    {"args": {}, "result": "3f0c2b7e-5d2a-4c55-9a5e-2f1b8c7d9e10"},
    {"args": {"version": 7, "count": 2}, "result": ["0190c5a4-3b1e-7c2d-8e4f-5a6b7c8d9e0f",
                                                   "0190c5a4-3b1e-7f00-9a1b-2c3d4e5f6a7b"]},
])
def uuid_tool(version: Literal[1, 4, 7] = 4, count: int = 1) -> Any:
    """Generate UUIDs.

    Args:
        version: 4 (random), 7 (time-ordered, sorts by creation) or 1 (time-based, random node).
        count: How many to generate (1 to 1000).

    Returns:
        One UUID string when count is 1, else a list of them.
    """
    if not 1 <= count <= 1000:
        raise InvalidArgument(f"count must be between 1 and 1000, got {count}")
    if version == 4:
        make: Callable[[], uuid_module.UUID] = uuid_module.uuid4
    elif version == 7:
        make = _uuid7
    else:
        make = lambda: uuid_module.uuid1(node=secrets.randbits(48) | (1 << 40))  # noqa: E731 - no MAC address
    values = [str(make()) for _ in range(int(count))]
    return values[0] if count == 1 else values


# ============================================================================ dates and times
def _zone(name: str) -> dt.tzinfo:
    if name.upper() in ("UTC", "Z", "GMT"):
        return dt.timezone.utc
    if name.lower() == "local":
        local = dt.datetime.now().astimezone().tzinfo
        assert local is not None
        return local
    offset = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", name)
    if offset:
        delta = dt.timedelta(hours=int(offset.group(2)), minutes=int(offset.group(3)))
        return dt.timezone(-delta if offset.group(1) == "-" else delta)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidArgument(f"unknown time zone {name!r}; use an IANA name such as 'Europe/Paris' or "
                              "'America/New_York', 'UTC', 'local', or an offset like '+02:00'",
                              details={"timezone": name}) from None


def _describe(value: dt.datetime) -> dict[str, Any]:
    iso_year, iso_week, iso_weekday = value.isocalendar()
    offset = value.utcoffset()
    result: dict[str, Any] = {
        "iso": value.isoformat(), "date": value.date().isoformat(), "time": value.time().isoformat(),
        "year": value.year, "month": value.month, "day": value.day, "hour": value.hour, "minute": value.minute,
        "second": value.second, "microsecond": value.microsecond,
        "weekday": calendar.day_name[value.weekday()], "iso_weekday": iso_weekday, "iso_week": iso_week,
        "day_of_year": value.timetuple().tm_yday,
        "timezone": None, "utc_offset": None, "timestamp": None,
    }
    if offset is not None:
        total = int(offset.total_seconds())
        sign = "-" if total < 0 else "+"
        hours, rest = divmod(abs(total), 3600)
        result["utc_offset"] = f"{sign}{hours:02d}:{rest // 60:02d}"
        result["timezone"] = getattr(value.tzinfo, "key", None) or value.tzname()
        result["timestamp"] = value.timestamp()
    return result


_EPOCH = re.compile(r"[+-]?\d{9,11}(\.\d+)?")
_RFC2822 = re.compile(r"(?:[A-Za-z]{3},\s*)?\d{1,2}\s+[A-Za-z]{3}\s+\d{2,4}\s+"
                      r"\d{1,2}:\d{2}(?::\d{2})?\s*(?:[+-]\d{4}|[A-Z]{1,5})?")


def _parse_datetime(text: str, fmt: str | None = None, assume: dt.tzinfo | None = None,
                    what: str = "text") -> dt.datetime:
    s = text.strip()
    if len(s) > 200:
        raise InvalidArgument(f"{what} is too long to be a date/time ({len(s)} characters)")
    value: dt.datetime | None = None
    if fmt is not None:
        try:
            value = dt.datetime.strptime(s, fmt)
        except ValueError as exc:
            raise InvalidArgument(f"{what} {text!r} does not match format {fmt!r}: {exc}",
                                  details={"format": fmt}) from None
    else:
        try:
            value = dt.datetime.fromisoformat(s)
        except ValueError:
            pass
        if value is None and _EPOCH.fullmatch(s):
            value = dt.datetime.fromtimestamp(float(s), tz=dt.timezone.utc)
        if value is None and _RFC2822.fullmatch(s):
            try:
                value = parsedate_to_datetime(s)
            except (TypeError, ValueError, IndexError):
                value = None
        if value is None and _dateutil_parser is not None:
            try:
                value = _dateutil_parser.parse(s)
            except (ValueError, OverflowError, TypeError):
                value = None
        if value is None:
            raise InvalidArgument(
                f"cannot read {what} {text!r} as a date/time; give ISO 8601 such as '2024-05-01T13:45:00Z' or "
                "'2024-05-01', or pass `format` (strftime codes, e.g. '%d/%m/%Y %H:%M')", details={"text": text})
    if value.tzinfo is None and assume is not None:
        value = value.replace(tzinfo=assume)
    return value


@tool(category="text", security="safe", examples=[
    {"args": {"timezone": "Europe/Paris", "format": "%Y-%m-%d %H:%M"},
     "result": {"iso": "2024-05-01T15:45:00.123456+02:00", "formatted": "2024-05-01 15:45",
                "timezone": "Europe/Paris", "utc_offset": "+02:00"}},
])
def datetime_now(timezone: str = "UTC", format: str | None = None) -> dict[str, Any]:
    """The current date and time.

    Args:
        timezone: An IANA zone ('Europe/Paris'), 'UTC', 'local', or an offset ('+05:30').
        format: Also return the time formatted with strftime codes, e.g. '%A %d %B %Y'.

    Returns:
        `{iso, date, time, year, month, day, hour, minute, second, microsecond, weekday, iso_weekday,
        iso_week, day_of_year, timezone, utc_offset, timestamp}` (+ `formatted` with format).
    """
    now = dt.datetime.now(_zone(timezone))
    result = _describe(now)
    if format is not None:
        result["formatted"] = _strftime(now, format)
    return result


def _strftime(value: dt.datetime, fmt: str) -> str:
    _cap(fmt, 1000, "format")
    try:
        return value.strftime(fmt)
    except (ValueError, UnicodeError) as exc:
        raise InvalidArgument(f"invalid format {fmt!r}: {exc}", details={"format": fmt}) from None


@tool(category="text", security="safe", examples=[
    {"args": {"text": "2024-05-01T13:45:00Z"},
     "result": {"iso": "2024-05-01T13:45:00+00:00", "year": 2024, "month": 5, "day": 1, "hour": 13,
                "weekday": "Wednesday", "utc_offset": "+00:00", "timestamp": 1714571100.0}},
    {"args": {"text": "01/05/2024", "format": "%d/%m/%Y"}, "result": {"iso": "2024-05-01T00:00:00", "timezone": None}},
])
def datetime_parse(text: str, format: str | None = None, timezone: str | None = None) -> dict[str, Any]:
    """Parse a date/time and return it in ISO 8601 with its components.

    Without `format` it reads ISO 8601, Unix timestamps, RFC 2822 (e-mail dates) and common
    free-form dates such as 'May 1, 2024 3:45 PM'.

    Args:
        text: The date/time text.
        format: The exact strptime format, e.g. '%d/%m/%Y %H:%M' (day first, unambiguous).
        timezone: The zone to assume when the text has none (default: leave it without zone).

    Returns:
        `{iso, date, time, year, month, day, hour, minute, second, microsecond, weekday, iso_weekday,
        iso_week, day_of_year, timezone, utc_offset, timestamp}`; timestamp is null without a zone.
    """
    assume = _zone(timezone) if timezone is not None else None
    return _describe(_parse_datetime(text, format, assume))


def _add_months(value: dt.datetime, months: int) -> dt.datetime:
    index = value.year * 12 + value.month - 1 + months
    year, month = divmod(index, 12)
    if not 1 <= year <= 9999:
        raise OverflowError("year out of range")
    day = min(value.day, calendar.monthrange(year, month + 1)[1])
    return value.replace(year=year, month=month + 1, day=day)


@tool(category="text", security="safe", examples=[
    {"args": {"datetime": "2024-01-31T10:00:00Z", "months": 1, "hours": 3},
     "result": {"iso": "2024-02-29T13:00:00+00:00"}},
])
def datetime_add(datetime: str, years: int = 0, months: int = 0, weeks: float = 0, days: float = 0,
                 hours: float = 0, minutes: float = 0, seconds: float = 0) -> dict[str, Any]:
    """Add (or, with negative amounts, subtract) time to a date/time.

    Years, months, weeks and days move the calendar date (keeping the wall-clock time; Jan 31 + 1 month
    is the last day of February); hours, minutes and seconds add elapsed time (correct across DST changes).

    Args:
        datetime: The starting date/time (ISO 8601 or another form datetime_parse reads).
        years: Years to add.
        months: Months to add.
        weeks: Weeks to add.
        days: Days to add.
        hours: Hours to add.
        minutes: Minutes to add.
        seconds: Seconds to add.

    Returns:
        The resulting date/time as `{iso, date, time, year, month, ...}` (as datetime_parse).
    """
    value = _parse_datetime(datetime, what="datetime")
    try:
        if years or months:
            value = _add_months(value, int(years) * 12 + int(months))
        value = value + dt.timedelta(weeks=weeks, days=days)
        elapsed = dt.timedelta(hours=hours, minutes=minutes, seconds=seconds)
        if value.tzinfo is not None and elapsed:
            zone = value.tzinfo
            value = (value.astimezone(dt.timezone.utc) + elapsed).astimezone(zone)
        else:
            value = value + elapsed
    except (OverflowError, ValueError) as exc:
        raise InvalidArgument(f"the result is outside the supported range (years 1 to 9999): {exc}") from None
    return _describe(value)


def _human(seconds: float) -> str:
    sign = "-" if seconds < 0 else ""
    remaining = int(round(abs(seconds)))
    parts = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        amount, remaining = divmod(remaining, size)
        if amount:
            parts.append(f"{amount} {unit}{'s' if amount != 1 else ''}")
    return sign + (", ".join(parts) if parts else "0 seconds")


@tool(category="text", security="safe", examples=[
    {"args": {"a": "2024-05-01T08:00:00Z", "b": "2024-05-02T10:30:00Z"},
     "result": {"seconds": 95400.0, "minutes": 1590.0, "hours": 26.5, "days": 1.104167, "weeks": 0.157738,
                "human": "1 day, 2 hours, 30 minutes"}},
])
def datetime_diff(a: str, b: str) -> dict[str, Any]:
    """The time from `a` to `b` (positive when `b` is later).

    A date/time without a zone is taken as UTC when the other one has a zone.

    Args:
        a: The earlier date/time (ISO 8601 or another form datetime_parse reads).
        b: The later date/time.

    Returns:
        `{seconds, minutes, hours, days, weeks, human}`, e.g. human = "1 day, 2 hours, 30 minutes".
    """
    first = _parse_datetime(a, what="a")
    second = _parse_datetime(b, what="b")
    if (first.tzinfo is None) != (second.tzinfo is None):
        first = first if first.tzinfo else first.replace(tzinfo=dt.timezone.utc)
        second = second if second.tzinfo else second.replace(tzinfo=dt.timezone.utc)
    total = (second - first).total_seconds()
    return {
        "seconds": total, "minutes": round(total / 60, 6), "hours": round(total / 3600, 6),
        "days": round(total / 86400, 6), "weeks": round(total / 604800, 6), "human": _human(total),
    }


# ============================================================================ calculator
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_bits(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise InvalidArgument(f"the result would be an integer of about {bits:,} bits, over the {MAX_INT_BITS:,}-bit "
                              "limit; use smaller numbers or floats (e.g. 2.0**1000)")


def _check_power(base: Any, exponent: Any) -> None:
    if _is_int(base) and _is_int(exponent) and exponent > 0 and abs(base) > 1:
        if exponent > MAX_EXPONENT and abs(base) > 1:
            raise InvalidArgument(f"exponent {exponent:,} is too large (limit {MAX_EXPONENT:,} for integer powers); "
                                  "use a float base such as 2.0 for an approximate result")
        _check_bits(int(math.log2(abs(base)) * exponent) + 1)


def _power(a: Any, b: Any) -> Any:
    _check_power(a, b)
    if isinstance(b, float) and abs(b) > MAX_EXPONENT and _is_int(a) and abs(a) > 1:
        return float(a) ** b
    result = a ** b
    if isinstance(result, complex):
        raise InvalidArgument("a negative number raised to a fractional power has no real result")
    return result


def _multiply(a: Any, b: Any) -> Any:
    if _is_int(a) and _is_int(b):
        _check_bits(a.bit_length() + b.bit_length())
    return a * b


_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: _multiply, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: _power,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg, ast.Not: operator.not_}
_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin, "acos": math.acos,
    "atan": math.atan, "atan2": math.atan2, "log": math.log, "log10": math.log10, "log2": math.log2,
    "exp": math.exp, "abs": abs, "round": round, "min": min, "max": max, "floor": math.floor, "ceil": math.ceil,
    "trunc": math.trunc, "hypot": math.hypot, "degrees": math.degrees, "radians": math.radians,
}
_OPERATOR_SYMBOLS = {ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>",
                     ast.MatMult: "@", ast.Invert: "~", ast.Is: "is", ast.IsNot: "is not", ast.In: "in",
                     ast.NotIn: "not in"}


def _symbol(op: ast.AST) -> str:
    return _OPERATOR_SYMBOLS.get(type(op), type(op).__name__)


def _refuse(node: ast.AST, expression: str, what: str) -> InvalidArgument:
    col = getattr(node, "col_offset", None)
    where = f" at position {col}" if col is not None else ""
    return InvalidArgument(
        f"{what}{where} is not allowed in a calculation; use numbers, + - * / // % **, comparisons, parentheses, "
        f"the constants {', '.join(_CONSTANTS)} and the functions {', '.join(_FUNCTIONS)}",
        details={"expression": expression, "position": col},
    )


def _evaluate(node: ast.AST, expression: str) -> Any:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body, expression)
    if isinstance(node, ast.Constant):
        if _is_int(node.value) or isinstance(node.value, float):
            return node.value
        raise _refuse(node, expression, f"the literal {node.value!r}")
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        if node.id in _FUNCTIONS:
            raise _refuse(node, expression, f"{node.id!r} without parentheses")
        raise _refuse(node, expression, f"the name {node.id!r}")
    if isinstance(node, ast.BinOp):
        op = _BINARY.get(type(node.op))
        if op is None:
            raise _refuse(node, expression, f"the operator {_symbol(node.op)!r}")
        return op(_evaluate(node.left, expression), _evaluate(node.right, expression))
    if isinstance(node, ast.UnaryOp):
        uop = _UNARY.get(type(node.op))
        if uop is None:
            raise _refuse(node, expression, f"the operator {_symbol(node.op)!r}")
        return uop(_evaluate(node.operand, expression))
    if isinstance(node, ast.BoolOp):
        values = [_evaluate(v, expression) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, expression)
        for op_node, right_node in zip(node.ops, node.comparators):
            cmp = _COMPARE.get(type(op_node))
            if cmp is None:
                raise _refuse(node, expression, f"the comparison {_OPERATOR_SYMBOLS.get(type(op_node), '?')!r}")
            right = _evaluate(right_node, expression)
            if not cmp(left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise _refuse(node, expression, f"calling {name!r}")
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise _refuse(node, expression, "keyword or * arguments")
        args = [_evaluate(a, expression) for a in node.args]
        if node.func.id == "round" and len(args) == 2 and _is_int(args[1]) and abs(args[1]) > 1000:
            raise InvalidArgument("round() takes at most 1000 digits")
        return _FUNCTIONS[node.func.id](*args)
    if isinstance(node, ast.Attribute):
        raise _refuse(node, expression, f"the attribute access .{node.attr}")
    if isinstance(node, ast.Subscript):
        raise _refuse(node, expression, "indexing")
    raise _refuse(node, expression, f"a {type(node).__name__} expression")


@functools.lru_cache(maxsize=1024)
def _parse_expression(expression: str) -> ast.Expression:
    return ast.parse(expression, mode="eval")  # the tree is only read, so sharing it is safe


@tool(category="text", security="safe", examples=[
    {"args": {"expression": "(2 + 3) * 4 ** 2 / 8"}, "result": 10.0},
    {"args": {"expression": "round(sqrt(2) * 100) / 100 + max(1, 7) // 2"}, "result": 4.41},
    {"args": {"expression": "2**10 >= 1000"}, "result": True},
])
def calculate(expression: str) -> Any:
    """Evaluate an arithmetic expression safely (no code execution).

    Allowed: numbers, + - * / // % ** (integer exponents up to 10000), unary - + not, parentheses,
    comparisons (== != < <= > >=), and/or, the constants pi, e, tau and the functions sqrt, sin, cos,
    tan, asin, acos, atan, atan2, log (log(x, base)), log10, log2, exp, abs, round, min, max, floor,
    ceil, trunc, hypot, degrees, radians.

    Args:
        expression: The expression, e.g. "sqrt(2) * (3 + 4) ** 2".

    Returns:
        The number (integer or float), or a boolean for comparisons.
    """
    _cap(expression, MAX_EXPRESSION, "expression")
    if "\x00" in expression:
        raise InvalidArgument("the expression contains a NUL character")
    try:
        tree = _parse_expression(expression.strip())
    except SyntaxError as exc:
        pos = (exc.offset or 1) - 1
        if "digits" in exc.msg:
            raise InvalidArgument("a number in the expression has more than 4300 digits; use a float such as 1e300 "
                                  "or fewer digits", details={"reason": "too many digits"}) from None
        raise InvalidArgument(f"cannot parse the expression at position {pos}: {exc.msg}\n    {expression.strip()}\n"
                              f"    {' ' * pos}^", details={"position": pos, "reason": exc.msg}) from None
    except (RecursionError, MemoryError, ValueError):
        raise InvalidArgument("the expression is too deeply nested or too large; simplify it") from None
    try:
        result = _evaluate(tree, expression)
    except ZeroDivisionError:
        raise InvalidArgument("division by zero in the expression") from None
    except OverflowError:
        raise InvalidArgument("the result is too large for a floating-point number") from None
    except ValueError as exc:
        raise InvalidArgument(f"math error: {exc} (for example sqrt or log of a negative number)") from None
    except TypeError as exc:
        raise InvalidArgument(f"wrong arguments: {exc}") from None
    except RecursionError:
        raise InvalidArgument("the expression is too deeply nested; simplify it") from None
    if isinstance(result, float) and not math.isfinite(result):
        raise InvalidArgument("the result is not a finite number (infinity or NaN)")
    return result


# ============================================================================ text statistics
_WORD = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*")
_SENTENCE_END = re.compile(r"[.!?…]+(?=\s|$)|\n\s*\n")
_STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between both
but by can could did do does doing down during each few for from further had has have having he her here hers
herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off on
once only or other our ours ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself yourselves s t don isn it's i'm
""".split())


@tool(category="text", security="safe", examples=[
    {"args": {"text": "The cat sat. The cat ran!\nA dog barked."},
     "result": {"characters": 39, "words": 9, "lines": 2, "sentences": 3,
                "most_common_words": [{"word": "cat", "count": 2}, {"word": "sat", "count": 1},
                                      {"word": "ran", "count": 1}, {"word": "dog", "count": 1},
                                      {"word": "barked", "count": 1}]}},
])
def text_stats(text: str, top: int = 10, exclude_stopwords: bool = True,
               words_per_minute: int = 200) -> dict[str, Any]:
    """Count characters, words, lines and sentences, and find the most common words.

    Args:
        text: The text to analyse.
        top: How many most common words to list.
        exclude_stopwords: Leave common English words (the, and, of, ...) out of the most common list.
        words_per_minute: Reading speed for the reading-time estimate.

    Returns:
        `{characters, characters_no_spaces, words, unique_words, lines, sentences, paragraphs,
        average_word_length, average_sentence_length, most_common_words: [{word, count}],
        reading_time_minutes, reading_time}`.
    """
    _cap(text, MAX_TEXT, "text")
    if top < 0:
        raise InvalidArgument(f"top must be 0 or more, got {top}")
    if words_per_minute <= 0:
        raise InvalidArgument(f"words_per_minute must be positive, got {words_per_minute}")
    words = _WORD.findall(text)
    lowered = [w.lower() for w in words]
    counts = Counter(w for w in lowered if not (exclude_stopwords and w in _STOPWORDS))
    pieces = [p for p in _SENTENCE_END.split(text) if _WORD.search(p)]
    sentences = len(pieces)
    paragraphs = len([p for p in re.split(r"\n\s*\n", text) if p.strip()])
    minutes = len(words) / words_per_minute
    total_seconds = int(round(minutes * 60))
    reading = f"{total_seconds // 60} min {total_seconds % 60} s" if total_seconds >= 60 else f"{total_seconds} s"
    return {
        "characters": len(text),
        "characters_no_spaces": sum(1 for ch in text if not ch.isspace()),
        "words": len(words),
        "unique_words": len(set(lowered)),
        "lines": len(text.splitlines()),
        "sentences": sentences,
        "paragraphs": paragraphs,
        "average_word_length": round(sum(len(w) for w in words) / len(words), 2) if words else 0.0,
        "average_sentence_length": round(len(words) / sentences, 2) if sentences else 0.0,
        "most_common_words": [{"word": w, "count": c} for w, c in counts.most_common(int(top))],
        "reading_time_minutes": round(minutes, 2),
        "reading_time": reading,
    }


TOOLS: list[Tool] = [
    render_template, regex_tool, text_diff, hash_text, base64_encode, base64_decode, uuid_tool,
    datetime_now, datetime_parse, datetime_add, datetime_diff, calculate, text_stats,
]

__all__ = ["TOOLS"]
