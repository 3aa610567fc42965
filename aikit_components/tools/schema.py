"""JSON Schema for tools: derived from a Python signature, and a fast validator that reports every
problem at once.

The validator compiles the subset of JSON Schema that tool parameters use (type, enum, const,
properties, required, additionalProperties, items, minimum/maximum, minLength/maxLength,
minItems/maxItems, pattern, anyOf, default) into closures: about 1-2 us per call, against ~17 us
for ``jsonschema``. A schema using anything else is validated by ``jsonschema`` itself.
"""

from __future__ import annotations

import difflib
import inspect
import re
import sys
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, Union, get_args, get_origin

from ..codec import LUA_WORDS, json_type_name, lua_type_name

Problems = list[str]
Check = Callable[[Any, str, Problems], None]

_SUPPORTED = {
    "type", "enum", "const", "properties", "required", "additionalProperties", "items", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "minItems", "maxItems", "pattern", "anyOf",
    "default", "description", "title", "examples", "$schema", "format",
}

# Per JSON type, the Python types whose values are of it without looking further (an integral
# float is an integer too, but only _JSON_TYPES' test says so).
_EXACT_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,), "array": (list,),
    "object": (dict,), "null": (type(None),),
}

_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def lua_value(value: Any) -> str:
    """A JSON-like value written as Lua (``"a"``, ``nil``, ``true``, ``{1, 2}``) for messages."""
    from .base import lua_literal

    return lua_literal(value)


# ----------------------------------------------------------------------------- from Python types
def schema_for_annotation(annotation: Any) -> dict[str, Any]:
    """JSON Schema for a type hint (str, int, float, bool, list[T], dict[str, T], Literal, X | None, Any)."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return {}
    origin = get_origin(annotation)
    if origin is Literal:
        values = list(get_args(annotation))
        return {"enum": values}
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        nullable = len(args) != len(get_args(annotation))
        inner = schema_for_annotation(args[0]) if len(args) == 1 else {"anyOf": [schema_for_annotation(a) for a in args]}
        if nullable:
            return {"anyOf": [inner, {"type": "null"}]} if inner else {}
        return inner
    if annotation is str:
        return {"type": "string"}
    if annotation is bool:
        return {"type": "boolean"}
    if annotation is int:
        return {"type": "integer"}
    if annotation is float:
        return {"type": "number"}
    if annotation is bytes:
        return {"type": "string", "format": "binary"}
    if annotation in (list, tuple) or origin in (list, tuple, typing.Sequence):
        args = get_args(annotation)
        return {"type": "array", **({"items": schema_for_annotation(args[0])} if args else {})}
    if annotation is dict or origin is dict:
        args = get_args(annotation)
        schema: dict[str, Any] = {"type": "object"}
        if len(args) == 2 and schema_for_annotation(args[1]):
            schema["additionalProperties"] = schema_for_annotation(args[1])
        return schema
    return {}


_ARG_LINE = re.compile(r"^\s{2,}(\w+)(?:\s*\([^)]*\))?:\s*(.*)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """(summary + description, {param: description}) from a Google-style docstring."""
    if not doc:
        return "", {}
    text = inspect.cleandoc(doc)
    lines = text.splitlines()
    description: list[str] = []
    params: dict[str, str] = {}
    section = None
    current = None
    for line in lines:
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            section = "args"
            continue
        if stripped in ("Returns:", "Raises:", "Examples:", "Example:", "Yields:"):
            section = "other"
            continue
        if section == "args":
            m = _ARG_LINE.match("  " + line if not line.startswith("  ") else line)
            if m and line.startswith(("    ", "  ")) and not line.startswith("        "):
                current = m.group(1)
                params[current] = m.group(2).strip()
            elif current and stripped:
                params[current] += " " + stripped
        elif section is None:
            description.append(line)
    return "\n".join(description).strip(), params


def signature_schema(fn: Callable[..., Any], skip: tuple[str, ...] = ("ctx",)) -> tuple[dict[str, Any], str]:
    """(JSON Schema of ``fn``'s parameters, description) from its signature and docstring."""
    sig = inspect.signature(fn)
    hints = typing.get_type_hints(fn)
    description, param_docs = parse_docstring(fn.__doc__)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, param in sig.parameters.items():
        if name in skip or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        prop = dict(schema_for_annotation(hints.get(name, param.annotation)))
        if name in param_docs:
            prop["description"] = param_docs[name]
        if param.default is inspect.Parameter.empty:
            required.append(name)
        elif param.default is not None or "anyOf" in prop:
            prop["default"] = param.default
        properties[name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema, description


def load_jsonschema() -> Any:
    """Import and return the ``jsonschema`` module, without ``rfc3987_syntax``.

    ``jsonschema[format-nongpl]`` (pulled in by jupyter_server and JupyterLab) makes jsonschema
    import ``rfc3987_syntax``, which builds a lark grammar at import time: about 1.7 s of CPU with the
    GIL held, which stalls the kernel's I/O thread while a cell runs. Only the ``iri`` format checks
    need it, and aikit never validates with a format checker, so it is kept out (import 0.2 s).
    """
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]  # None = "not installed"
    import jsonschema

    return jsonschema


# ----------------------------------------------------------------------------- validation
def schema_problems(schema: Any) -> Problems:
    """What is wrong with a JSON Schema itself (checked against its meta-schema)."""
    jsonschema = load_jsonschema()

    if not isinstance(schema, dict):
        return [f"a schema must be an object, got {json_type_name(schema)}"]
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    meta = validator(validator.META_SCHEMA)
    return [f"{'/'.join(str(p) for p in err.absolute_path) or '(schema)'}: {err.message}"
            for err in meta.iter_errors(schema)]


def compile_validator(schema: dict[str, Any]) -> Callable[[Any], Problems]:
    """A function returning every problem of a value against ``schema`` (empty list: valid)."""
    if not _supported(schema):
        return _jsonschema_validator(schema)
    check = _compile(schema)

    def validate(value: Any) -> Problems:
        problems: Problems = []
        check(value, "", problems)
        return problems

    return validate


def _supported(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    if not set(schema) <= _SUPPORTED:
        return False
    for key in ("items", "additionalProperties"):
        sub = schema.get(key)
        if isinstance(sub, dict) and not _supported(sub):
            return False
    if any(not _supported(s) for s in schema.get("properties", {}).values()):
        return False
    return all(_supported(s) for s in schema.get("anyOf", []))


def _jsonschema_validator(schema: dict[str, Any]) -> Callable[[Any], Problems]:
    jsonschema = load_jsonschema()

    validator = jsonschema.validators.validator_for(schema)(schema)

    def validate(value: Any) -> Problems:
        return [
            f"{_path('/'.join(str(p) for p in err.absolute_path))}: {err.message}"
            for err in sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))
        ]

    return validate


def _path(path: str) -> str:
    return path or "(arguments)"


def _compile(schema: dict[str, Any]) -> Check:
    checks: list[Check] = []
    expected = schema.get("type")
    if expected is not None:
        names = expected if isinstance(expected, list) else [expected]
        tests = [_JSON_TYPES[n] for n in names if n in _JSON_TYPES]
        label = " or ".join(LUA_WORDS.get(n, n) for n in names)
        single = tests[0] if len(tests) == 1 else None
        # the Python types whose values pass check_type as they are (no call needed)
        accepts = frozenset(t for n in names for t in _EXACT_TYPES.get(n, ()))

        def check_type(v: Any, path: str, out: Problems) -> bool:
            if not (single(v) if single is not None else any(t(v) for t in tests)):
                out.append(f"{_path(path)}: expected {label}, got {lua_type_name(v)}")
                return False
            return True
    else:
        check_type = None  # type: ignore[assignment]
        accepts = frozenset()
    if "enum" in schema:
        allowed = schema["enum"]
        checks.append(lambda v, p, o: None if v in allowed
                      else o.append(f"{_path(p)}: must be one of {', '.join(map(lua_value, allowed))}, "
                                    f"got {lua_value(v)}"))
    if "const" in schema:
        const = schema["const"]
        checks.append(lambda v, p, o: None if v == const else o.append(f"{_path(p)}: must be {lua_value(const)}"))
    _bounds(schema, checks)
    if "pattern" in schema:
        rx = re.compile(schema["pattern"])
        checks.append(lambda v, p, o: None if not isinstance(v, str) or rx.search(v) else
                      o.append(f"{_path(p)}: does not match pattern {schema['pattern']!r}"))
    if "items" in schema and isinstance(schema["items"], dict):
        item_check = _compile(schema["items"])

        def check_items(v: Any, path: str, out: Problems) -> None:
            if isinstance(v, list):
                for i, item in enumerate(v):
                    item_check(item, f"{path}[{i + 1}]", out)
        checks.append(check_items)
    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        checks.append(_object_check(schema))
    if "anyOf" in schema:
        options = [_compile(s) for s in schema["anyOf"]]

        def check_any(v: Any, path: str, out: Problems) -> None:
            attempts = []
            for option in options:
                trial: Problems = []
                option(v, path, trial)
                if not trial:
                    return
                attempts.append("; ".join(trial))
            out.append(f"{_path(path)}: matches none of the allowed forms ({' | '.join(attempts)})")
        checks.append(check_any)

    if not checks and check_type is not None:
        # a type alone (most parameters): one call less per value checked, and none at all for a
        # value of a type it accepts as such (see _object_check)
        check_type.accepts = accepts  # type: ignore[attr-defined]
        return check_type

    def check(value: Any, path: str, out: Problems) -> None:
        if check_type is not None and type(value) not in accepts and not check_type(value, path, out):
            return
        for c in checks:
            c(value, path, out)

    return check


def _bounds(schema: dict[str, Any], checks: list[Check]) -> None:
    numeric = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    for key, test, word in (
        ("minimum", lambda v, b: v >= b, ">="), ("maximum", lambda v, b: v <= b, "<="),
        ("exclusiveMinimum", lambda v, b: v > b, ">"), ("exclusiveMaximum", lambda v, b: v < b, "<"),
    ):
        if key in schema:
            bound = schema[key]
            checks.append(lambda v, p, o, t=test, b=bound, w=word: None if not numeric(v) or t(v, b) else
                          o.append(f"{_path(p)}: must be {w} {b}, got {v}"))
    for key, kind, test, word in (
        ("minLength", str, lambda n, b: n >= b, "at least"), ("maxLength", str, lambda n, b: n <= b, "at most"),
        ("minItems", list, lambda n, b: n >= b, "at least"), ("maxItems", list, lambda n, b: n <= b, "at most"),
    ):
        if key in schema:
            bound = schema[key]
            unit = "characters" if kind is str else "items"
            checks.append(lambda v, p, o, k=kind, t=test, b=bound, w=word, u=unit:
                          None if not isinstance(v, k) or t(len(v), b)
                          else o.append(f"{_path(p)}: must have {w} {b} {u}, got {len(v)}"))


def _object_check(schema: dict[str, Any]) -> Check:
    props = {name: _compile(sub) for name, sub in schema.get("properties", {}).items()}
    # name -> (its check, the Python types its check accepts as they are: no call needed)
    checked = {name: (sub, getattr(sub, "accepts", frozenset())) for name, sub in props.items()}
    required = list(schema.get("required", []))
    extra = schema.get("additionalProperties", True)
    extra_check = _compile(extra) if isinstance(extra, dict) else None
    known = ", ".join(sorted(props)) or "none"
    nullable = {name for name, sub in schema.get("properties", {}).items() if sub == {} or "null" in str(sub)}

    def check(v: Any, path: str, out: Problems) -> None:
        if not isinstance(v, dict):
            return
        prefix = f"{path}." if path else ""
        for name in required:
            if name not in v or v[name] is None and name in props and name not in nullable:
                out.append(f"{prefix}{name}: required")
        for name, value in v.items():
            entry = checked.get(name)
            if entry is not None:
                sub, accepts = entry
                if type(value) in accepts:
                    continue
                if value is not None or name in required:
                    sub(value, f"{prefix}{name}", out)
            elif extra is False:
                close = difflib.get_close_matches(str(name), list(props), n=1, cutoff=0.6)
                guess = f"; did you mean {close[0]!r}?" if close else ""
                out.append(f"{prefix}{name}: unknown parameter{guess} (known: {known})")
            elif extra_check is not None:
                extra_check(value, f"{prefix}{name}", out)

    return check
