"""Template rendering in Jinja's immutable sandbox, with size, loop and time budgets."""

from __future__ import annotations

import functools
import re
import string
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import jinja2
import markupsafe
from jinja2 import nodes
from jinja2.compiler import CodeGenerator
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from ...errors import InvalidArgument, PermissionDenied, ResourceExhausted, Timeout
from ..base import tool
from .calculator import check_bits, check_power, is_int
from .common import (
    MAX_TEMPLATE,
    MAX_TEMPLATE_OUTPUT,
    MAX_TEMPLATE_RANGE,
    MAX_TEMPLATE_VALUE,
    MAX_TEMPLATE_WIDTH,
    TEMPLATE_TIMEOUT_S,
    check_length,
)

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
        if is_int(value) and abs(value) > MAX_TEMPLATE_WIDTH:
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
        if is_int(count) and count >= 0:
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
            if is_int(left) and is_int(right):
                check_power(left, right)
        elif operator_ == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and is_int(count) and count > 0:
                    weight = len(seq) if isinstance(seq, str) else sum(
                        len(x) if isinstance(x, (str, list, tuple)) else 1 for x in seq)
                    if weight * count > MAX_TEMPLATE_VALUE:
                        raise _too_big("multiplies a sequence to too many items", weight * count, MAX_TEMPLATE_VALUE)
            if is_int(left) and is_int(right):
                check_bits(left.bit_length() + right.bit_length())
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
    check_length(template, MAX_TEMPLATE, "template")
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
