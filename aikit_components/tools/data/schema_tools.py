"""JSON Schema validation that lists every error."""

from __future__ import annotations

from typing import Any

from ...errors import InvalidArgument
from ..base import tool
from ..schema import load_jsonschema
from .common import MAX_SCHEMA_ERRORS, too_deep


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
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
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
