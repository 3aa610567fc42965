"""``{{...}}`` templates in workflow step parameters.

A template is ``{{ PATH }}``, with optional filters ``| default: VALUE``, ``| string`` (the value
as text, as it would be inside other text) and ``| json`` (the value as JSON text), inside any
string of a step's ``params`` (nested dicts and lists are walked). PATH is dotted, with ``[n]`` or
``.n`` for list indexes (0-based, as in JSON paths, not 1-based as in Lua):

=========================  ===============================================================
``input.NAME...``          the run's inputs (``Workflow.inputs`` defaults, overridden by the
                           caller); ``context.NAME`` is an alias (RustChain)
``steps.ID.output...``     a finished step's output; also ``.status``, ``.error``,
                           ``.attempts``, ``.duration_s``. The RustChain form ``ID.output...``
                           means the same (reserved roots win if a step is named like one)
``env.NAME``               an environment variable the security policy allows
                           (``security.env_allowlist``)
``config.KEY.SUB``         a value of the effective configuration (secrets are refused)
``loop.item``              inside a looping step: the current item, ``loop.index`` (0-based),
                           ``loop.previous`` (the previous iteration's output)
``state.SCOPE.KEY...``     a value in State (``State.get(SCOPE, KEY)``) when the reference is
                           resolved, e.g. ``{{state.global.mode}}`` in a declarative ``when``
=========================  ===============================================================

A template that is the whole string keeps the value's type (``"{{steps.a.output.count}}"`` gives
the integer); inside other text it is formatted: ``None`` as empty text, booleans as
``true``/``false``, tables as JSON. ``\\{{`` writes a literal ``{{``. ``default:`` takes a JSON
literal (``"UTC"``, ``3``, ``null``, ``[]``) or bare text, used when the reference cannot resolve
(an input not given, an unset variable, a missing field).

A step that did not produce output (skipped, or failed with ``continue_on_error``) resolves
``steps.ID.output...`` to ``None`` rather than failing. Anything else that cannot resolve raises
:class:`TemplateError` naming the step, the parameter path and the reference; the engine's
validation reports every such reference it can check before anything runs.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..codec import lua_type_name
from ..errors import InvalidArgument

__all__ = ["ROOTS", "STEP_FIELDS", "Ref", "Template", "TemplateContext", "TemplateError", "compile",
           "format_value", "references", "resolve"]

ROOTS = ("input", "context", "steps", "env", "config", "loop", "state")
STEP_FIELDS = ("output", "status", "error", "attempts", "duration_s")
LOOP_FIELDS = ("item", "index", "previous")

_TEMPLATE = re.compile(r"(\\?)\{\{(.*?)\}\}", re.S)
_SEGMENT = re.compile(r"\s*([^.\[\]\s|]+)((?:\[\s*-?\d+\s*\])*)\s*")
_INDEX = re.compile(r"\[\s*(-?\d+)\s*\]")
_MISSING = object()


class TemplateError(InvalidArgument):
    """A ``{{...}}`` reference that cannot be parsed or resolved."""

    code = "template_error"


@dataclass(frozen=True, slots=True)
class Ref:
    """One ``{{...}}`` occurrence.

    ``root`` is ``input`` / ``steps`` / ``env`` / ``config`` / ``loop`` (``context`` is folded into
    ``input``); ``step`` is the referenced step id for ``steps`` refs; ``path`` is what follows the
    root (for steps refs: what follows the step id, starting with a field such as ``output``);
    ``param`` says where it occurs (``params.headers.Authorization``)."""

    text: str
    root: str
    path: tuple[Any, ...]
    param: str = "params"
    step: str | None = None
    has_default: bool = False
    default: Any = None
    convert: str | None = None  # the ``| string`` or ``| json`` filter

    def __str__(self) -> str:
        return "{{" + self.text + "}}"


@dataclass(slots=True)
class TemplateContext:
    """What references resolve against.

    ``steps`` maps step ids to records (objects or dicts with ``status``, ``output``, ...);
    ``env`` is the security policy (``check_env``) or None to refuse every ``env.*`` reference;
    ``config`` anything with ``get(dotted, default)``; ``loop`` the current iteration; ``state``
    anything with ``get(scope, key, default)`` (a :class:`~aikit_components.state.State`)."""

    inputs: Mapping[str, Any]
    steps: Mapping[str, Any]
    env: Any = None
    config: Any = None
    loop: Mapping[str, Any] | None = None
    environ: Mapping[str, str] | None = None  # None: os.environ
    state: Any = None


# --------------------------------------------------------------------------- parsing
def _parse_path(expr: str) -> tuple[Any, ...] | None:
    parts: list[Any] = []
    pos = 0
    text = expr.strip()
    while True:
        m = _SEGMENT.match(text, pos)
        if m is None:
            return None
        name = m.group(1)
        parts.append(int(name) if name.isdigit() else name)
        parts.extend(int(i) for i in _INDEX.findall(m.group(2)))
        pos = m.end()
        if pos == len(text):
            return tuple(parts)
        if text[pos] != ".":
            return None
        pos += 1


#: Filters that convert the value: ``| string`` (its text, as inside other text) and ``| json``.
CONVERSIONS = ("string", "json")


def _parse_default(text: str) -> tuple[bool, Any, str | None]:
    """``default: VALUE`` -> (True, value, None); anything else -> (False, None, problem)."""
    name, sep, literal = text.partition(":")
    if name.strip() != "default" or not sep:
        import difflib

        close = difflib.get_close_matches(name.strip(), ["default", *CONVERSIONS], n=1)
        guess = f"; did you mean {close[0]!r}?" if close else ""
        return False, None, (f"unknown filter {text.strip()!r}{guess} (filters: 'default: VALUE', 'string', "
                             "'json')")
    literal = literal.strip()
    try:
        return True, json.loads(literal), None
    except ValueError:
        return True, literal, None


def parse_ref(expr: str, param: str = "params") -> Ref:
    """Parse the inside of one ``{{...}}``; raise :class:`TemplateError` when malformed."""
    body, *filters = expr.split("|")
    has_default, default, convert = False, None, None
    for filt in filters:
        if filt.strip() in CONVERSIONS:
            convert = filt.strip()
            continue
        has_default, default, problem = _parse_default(filt)
        if problem:
            raise TemplateError(f"{param}: {{{{{expr.strip()}}}}}: {problem}", details={"param": param, "ref": expr.strip()})
    text = body.strip()
    if not text:
        raise TemplateError(f"{param}: empty template {{{{}}}}", details={"param": param, "ref": ""})
    path = _parse_path(text)
    if path is None or not isinstance(path[0], str):
        raise TemplateError(f"{param}: {{{{{text}}}}} is not a reference (expected a dotted path such as "
                            "input.name or steps.ID.output.field)", details={"param": param, "ref": text})
    head = path[0]
    if head in ("input", "context"):
        if len(path) < 2:
            raise TemplateError(f"{param}: {{{{{text}}}}} needs a name: {head}.NAME", details={"param": param, "ref": text})
        return Ref(text, "input", path[1:], param, None, has_default, default, convert)
    if head == "steps":
        if len(path) < 2:
            raise TemplateError(f"{param}: {{{{{text}}}}} needs a step id: steps.ID.output",
                                details={"param": param, "ref": text})
        return Ref(text, "steps", path[2:], param, str(path[1]), has_default, default, convert)
    if head == "state":
        if len(path) < 3:
            raise TemplateError(f"{param}: {{{{{text}}}}} needs a scope and a key: state.SCOPE.KEY",
                                details={"param": param, "ref": text})
        return Ref(text, "state", path[1:], param, None, has_default, default, convert)
    if head in ("env", "config", "loop"):
        if len(path) < 2:
            raise TemplateError(f"{param}: {{{{{text}}}}} needs a name: {head}.NAME", details={"param": param, "ref": text})
        return Ref(text, head, path[1:], param, None, has_default, default, convert)
    if len(path) >= 2 and path[1] in STEP_FIELDS:  # RustChain: {{ID.output.FIELD}}
        return Ref(text, "steps", path[1:], param, head, has_default, default, convert)
    raise TemplateError(
        f"{param}: {{{{{text}}}}} starts with unknown name {head!r}; use input.X, steps.ID.output.X (or ID.output.X), "
        "env.X, config.X, loop.item or state.SCOPE.KEY", details={"param": param, "ref": text})


# --------------------------------------------------------------------------- compiled values
class _Str:
    """A string with embedded references: literal parts and refs, alternating."""

    __slots__ = ("parts",)

    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts


class _Whole:
    """A string that is exactly one reference (keeps the value's type)."""

    __slots__ = ("ref",)

    def __init__(self, ref: Ref) -> None:
        self.ref = ref


class _Dict:
    __slots__ = ("items",)

    def __init__(self, items: list[tuple[Any, Any]]) -> None:
        self.items = items


class _List:
    __slots__ = ("items", "kind")

    def __init__(self, items: list[Any], kind: type) -> None:
        self.items = items
        self.kind = kind


_NODES = (_Str, _Whole, _Dict, _List)


class Template:
    """A value with its ``{{...}}`` references compiled once (see :func:`compile`)."""

    __slots__ = ("value", "node", "refs", "problems")

    def __init__(self, value: Any, node: Any, refs: list[Ref], problems: list[str]) -> None:
        self.value = value
        self.node = node
        self.refs = refs
        self.problems = problems

    @property
    def static(self) -> bool:
        """True when the value holds no reference (resolving returns it unchanged)."""
        return self.node is None

    def resolve(self, ctx: TemplateContext, step: str | None = None) -> Any:
        """The value with every reference replaced; raise :class:`TemplateError` naming the step,
        the parameter path and the reference when one cannot resolve."""
        if self.problems:
            raise TemplateError(_where(step) + self.problems[0], details={"step": step, "problems": self.problems})
        if self.node is None:
            return self.value
        return _resolve_node(self.node, ctx, step)


def compile(value: Any, where: str = "params") -> Template:  # noqa: A001 - the natural name
    """Compile ``value`` (a string, or dicts/lists holding strings) once; ``where`` names it in
    messages. Syntax problems are collected in ``Template.problems`` rather than raised."""
    refs: list[Ref] = []
    problems: list[str] = []
    node = _compile(value, where, refs, problems)
    return Template(value, node, refs, problems)


def _compile(value: Any, where: str, refs: list[Ref], problems: list[str]) -> Any:
    """A node, or None when ``value`` holds no template (returned as is)."""
    if isinstance(value, str):
        if "{{" not in value:
            return None
        return _compile_str(value, where, refs, problems)
    if isinstance(value, dict):
        items: list[tuple[Any, Any]] = []
        changed = False
        for key, item in value.items():
            node = _compile(item, f"{where}.{key}", refs, problems)
            changed = changed or node is not None
            items.append((key, node if node is not None else _Literal(item)))
        return _Dict(items) if changed else None
    if isinstance(value, (list, tuple)):
        out: list[Any] = []
        changed = False
        for index, item in enumerate(value):
            node = _compile(item, f"{where}[{index}]", refs, problems)
            changed = changed or node is not None
            out.append(node if node is not None else _Literal(item))
        return _List(out, list if isinstance(value, list) else tuple) if changed else None
    return None


class _Literal:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _compile_str(text: str, where: str, refs: list[Ref], problems: list[str]) -> Any:
    parts: list[Any] = []
    literal: list[str] = []
    pos = 0
    found = False
    for m in _TEMPLATE.finditer(text):
        literal.append(text[pos:m.start()])
        pos = m.end()
        if m.group(1):  # \\{{ ... }}: literal text without the backslash
            literal.append(m.group(0)[1:])
            continue
        try:
            ref = parse_ref(m.group(2), where)
        except TemplateError as exc:
            problems.append(exc.message)
            literal.append(m.group(0))
            continue
        found = True
        refs.append(ref)
        if any(literal):
            parts.append("".join(literal))
        literal = []
        parts.append(ref)
    tail = text[pos:]
    if "{{" in tail.replace("\\{{", ""):
        problems.append(f"{where}: unclosed template in {text!r} (a '{{{{' without '}}}}')")
    literal.append(tail.replace("\\{{", "{{"))
    if any(literal):
        parts.append("".join(literal))
    if not found:
        plain = "".join(parts)
        return None if plain == text else _Literal(plain)
    if len(parts) == 1:
        return _Whole(parts[0])
    return _Str(parts)


def references(params: Any, where: str = "params") -> list[Ref]:
    """Every reference in ``params`` (raise :class:`TemplateError` on a malformed template)."""
    template = compile(params, where)
    if template.problems:
        raise TemplateError(template.problems[0], details={"problems": template.problems})
    return template.refs


def resolve(params: Any, ctx: TemplateContext, *, step: str | None = None, where: str = "params") -> Any:
    """Compile and resolve in one go (the engine compiles once and reuses the :class:`Template`)."""
    return compile(params, where).resolve(ctx, step)


# --------------------------------------------------------------------------- resolution
def _where(step: str | None) -> str:
    return f"step {step!r}: " if step else ""


def _resolve_node(node: Any, ctx: TemplateContext, step: str | None) -> Any:
    kind = type(node)
    if kind is _Literal:
        return node.value
    if kind is _Whole:
        return converted(node.ref, lookup(node.ref, ctx, step))
    if kind is _Str:
        return "".join(part if type(part) is str else format_value(converted(part, lookup(part, ctx, step)))
                       for part in node.parts)
    if kind is _Dict:
        return {key: _resolve_node(item, ctx, step) for key, item in node.items}
    if kind is _List:
        return node.kind(_resolve_node(item, ctx, step) for item in node.items)
    return node


def converted(ref: Ref, value: Any) -> Any:
    """``value`` through the reference's ``| string`` or ``| json`` filter, if it has one."""
    if ref.convert == "string":
        return format_value(value)
    if ref.convert == "json":
        return json.dumps(value, ensure_ascii=False, default=_json_default)
    return value


def format_value(value: Any) -> str:
    """How a value reads inside text: None -> "", booleans -> true/false, tables -> JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, default=_json_default)
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    return str(value)


def _fail(ref: Ref, step: str | None, reason: str, code_cls: type[TemplateError] = TemplateError) -> Any:
    if ref.has_default:
        return ref.default
    raise code_cls(f"{_where(step)}{ref.param}: cannot resolve {ref}: {reason}",
                   details={"step": step, "param": ref.param, "ref": ref.text, "reason": reason})


def _field(record: Any, name: str) -> Any:
    if isinstance(record, Mapping):
        return record.get(name)
    return getattr(record, name, None)


def lookup(ref: Ref, ctx: TemplateContext, step: str | None = None) -> Any:
    """The value one reference points at (see the module docstring)."""
    root = ref.root
    if root == "steps":
        record = ctx.steps.get(ref.step) if ref.step is not None else None
        if record is None:
            return _fail(ref, step, f"step {ref.step!r} has not run (only steps this one depends on can be referenced)")
        if not ref.path:
            return _fail(ref, step, f"say which field of step {ref.step!r}: {', '.join(STEP_FIELDS)}")
        name = ref.path[0]
        if name not in STEP_FIELDS:
            return _fail(ref, step, f"steps have no field {name!r} (fields: {', '.join(STEP_FIELDS)})")
        value = _field(record, name)
        if name == "output" and value is None and _field(record, "status") != "succeeded":
            return None if not ref.has_default else ref.default
        return _walk(value, ref.path[1:], ref, step, f"steps.{ref.step}.{name}")
    if root == "input":
        value = ctx.inputs.get(ref.path[0], _MISSING) if isinstance(ref.path[0], str) else _MISSING
        if value is _MISSING:
            given = ", ".join(sorted(map(str, ctx.inputs))) or "none"
            return _fail(ref, step, f"no input named {ref.path[0]!r} was given and it has no default (inputs: {given})")
        return _walk(value, ref.path[1:], ref, step, f"input.{ref.path[0]}")
    if root == "env":
        name = str(ref.path[0])
        if len(ref.path) > 1:
            return _fail(ref, step, "an environment variable has no fields")
        policy = ctx.env
        if policy is None or not policy.check_env(name):
            if ref.has_default:
                return ref.default
            raise TemplateError(
                f"{_where(step)}{ref.param}: cannot resolve {ref}: environment variable {name!r} is not in "
                "security.env_allowlist; add it there (or to AIKIT_ENV_ALLOWLIST) to let workflows read it",
                details={"step": step, "param": ref.param, "ref": ref.text, "rule": "env_allowlist"})
        environ = ctx.environ if ctx.environ is not None else os.environ
        value = environ.get(name)
        if value is None:
            return _fail(ref, step, f"environment variable {name!r} is not set")
        return value
    if root == "config":
        config = ctx.config
        if config is None:
            return _fail(ref, step, "no configuration is available")
        dotted = ".".join(str(p) for p in ref.path)
        value = config.get(dotted, _MISSING)
        if value is _MISSING or value is None:
            return _fail(ref, step, f"config key {dotted!r} is not set")
        if type(value).__name__ == "Secret" or _holds_secret(value):
            raise TemplateError(f"{_where(step)}{ref.param}: {ref} is a secret; templates do not reveal secrets",
                                details={"step": step, "param": ref.param, "ref": ref.text})
        return value
    if root == "loop":
        if ctx.loop is None:
            return _fail(ref, step, "loop.* only exists inside a step with a loop")
        name = ref.path[0]
        if name not in ctx.loop:
            return _fail(ref, step, f"loops have no field {name!r} (fields: {', '.join(LOOP_FIELDS)})")
        return _walk(ctx.loop[name], ref.path[1:], ref, step, f"loop.{name}")
    if root == "state":
        if ctx.state is None:
            return _fail(ref, step, "no State is available")
        scope, key = str(ref.path[0]), str(ref.path[1])
        value = ctx.state.get(scope, key, _MISSING)
        if value is _MISSING:
            return _fail(ref, step, f"State has no key {key!r} in scope {scope!r}")
        return _walk(value, ref.path[2:], ref, step, f"state.{scope}.{key}")
    return _fail(ref, step, f"unknown root {root!r}")


def _holds_secret(value: Any) -> bool:
    if isinstance(value, dict):
        return any(type(v).__name__ == "Secret" or _holds_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(type(v).__name__ == "Secret" or _holds_secret(v) for v in value)
    return False


def _walk(value: Any, path: tuple[Any, ...], ref: Ref, step: str | None, base: str) -> Any:
    where = base
    for part in path:
        if isinstance(value, Mapping):
            if part in value:
                value = value[part]
            elif isinstance(part, int) and str(part) in value:
                value = value[str(part)]
            elif isinstance(part, str) and part.lstrip("-").isdigit() and int(part) in value:
                value = value[int(part)]
            else:
                keys = ", ".join(map(str, list(value)[:20])) or "none"
                return _fail(ref, step, f"{where} has no field {part!r} (fields: {keys})")
        elif isinstance(value, (list, tuple)):
            if not isinstance(part, int):
                return _fail(ref, step, f"{where} is a list; index it with a number (0-based), not {part!r}")
            if not -len(value) <= part < len(value):
                return _fail(ref, step, f"{where} has {len(value)} items; index {part} is out of range (0-based)")
            value = value[part]
        elif value is None:
            return _fail(ref, step, f"{where} is empty (None), so it has no field {part!r}")
        else:
            return _fail(ref, step, f"{where} is {lua_type_name(value, article=True)}, which has no field {part!r}")
        where = f"{where}.{part}"
    return value
