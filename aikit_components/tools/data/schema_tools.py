"""JSON Schema validation that lists every error."""

from __future__ import annotations

import time
from typing import Any

import regex

from ...errors import InvalidArgument, Timeout
from ..base import tool
from ..schema import load_jsonschema
from .common import MAX_SCHEMA_ERRORS, too_deep

PATTERN_TIMEOUT_S = 2.0  # all the "pattern" and "patternProperties" matches of one validation


class _PatternBudget:
    """``pattern`` / ``patternProperties`` with the ``regex`` engine under one time budget: a
    schema pattern with catastrophic backtracking (``(a+)+$``) cannot hang the caller."""

    def __init__(self) -> None:
        self.deadline = time.monotonic() + PATTERN_TIMEOUT_S

    def search(self, pattern: str, text: str) -> bool:
        try:
            compiled = regex.compile(pattern)
        except regex.error as exc:
            raise InvalidArgument(f"the schema's pattern {pattern!r} is not a valid regular expression: {exc}",
                                  details={"pattern": pattern}) from None
        try:
            return compiled.search(text, timeout=max(self.deadline - time.monotonic(), 0.001)) is not None
        except TimeoutError:
            raise Timeout(f"the schema's pattern {pattern!r} ran longer than {PATTERN_TIMEOUT_S:g} s (catastrophic "
                          "backtracking?); avoid nested quantifiers such as (a+)+, or anchor the pattern",
                          details={"pattern": pattern, "timeout_s": PATTERN_TIMEOUT_S}) from None

    def keywords(self, jsonschema: Any) -> dict[str, Any]:
        def pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Any:
            if validator.is_type(instance, "string") and not self.search(patrn, instance):
                yield jsonschema.ValidationError(f"{instance!r} does not match {patrn!r}")

        def pattern_properties(validator: Any, properties: dict[str, Any], instance: Any, schema: Any) -> Any:
            if not validator.is_type(instance, "object"):
                return
            for patrn, subschema in properties.items():
                for key, value in instance.items():
                    if self.search(patrn, key):
                        yield from validator.descend(value, subschema, path=key, schema_path=patrn)

        return {"pattern": pattern, "patternProperties": pattern_properties}


@tool(category="data", security="safe", examples=[
    {"args": {"data": {"name": "aikit", "port": "80"},
              "schema": {"type": "object", "required": ["name", "port"], "properties": {"port": {"type": "integer"}}}},
     "result": {"valid": False, "errors": [{"path": "$.port", "message": "'80' is not of type 'integer'",
                                             "keyword": "type", "schema_path": "properties/port/type"}]}},
])
def validate_schema(data: Any, schema: dict[str, Any]) -> dict[str, Any]:
    """Validate a value against a JSON Schema and list every error.

    The schema's `$schema` picks the draft (default 2020-12); `format` keywords are checked.
    Only references inside the schema (`#/$defs/...`) are resolved; nothing is fetched.

    Args:
        data: The value to validate.
        schema: The JSON Schema, as a table.

    Returns:
        `{valid, errors}` where each error is `{path, message, keyword, schema_path}`; `path` is a
        JSONPath such as `$.items[2].name`.
    """
    jsonschema = load_jsonschema()

    try:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise InvalidArgument(f"the schema itself is invalid at {where}: {exc.message}; fix the schema",
                              details={"schema_path": where}) from None
    except RecursionError:
        raise too_deep("schema") from None
    guarded = jsonschema.validators.extend(cls, _PatternBudget().keywords(jsonschema))
    validator = guarded(schema, format_checker=cls.FORMAT_CHECKER)
    errors: list[dict[str, Any]] = []
    truncated = False
    try:
        for err in validator.iter_errors(data):
            if len(errors) >= MAX_SCHEMA_ERRORS:
                truncated = True
                break
            errors.append({
                "path": err.json_path, "message": err.message, "keyword": err.validator,
                "schema_path": "/".join(str(p) for p in err.schema_path),
            })
    except RecursionError:
        raise InvalidArgument("validation recursed too deeply: the data is nested too deeply or the schema's $ref "
                              "loops without consuming data; fix the one at fault") from None
    except Exception as exc:  # referencing.exceptions.Unresolvable and friends
        if type(exc).__module__.startswith(("referencing", "jsonschema")):
            raise InvalidArgument(
                f"the schema cannot be applied: {exc}; only references inside the schema (#/$defs/...) are supported",
            ) from None
        raise
    errors.sort(key=lambda e: (e["path"], e["message"]))
    result: dict[str, Any] = {"valid": not errors, "errors": errors}
    if truncated:
        result["truncated"] = True
    return result
