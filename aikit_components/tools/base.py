"""Declaring tools: a Python function with type hints and a docstring is the single source of a
tool's JSON Schema, its docs, its argument validation and its security level.

```python
@tool(category="text", security="safe", examples=[{"args": {"text": "hi"}, "result": "aGk="}])
def base64_encode(text: str) -> str:
    \"\"\"Encode text as base64.

    Args:
        text: The text to encode (UTF-8).
    \"\"\"
    return base64.b64encode(text.encode()).decode()
```

``async def`` tools run on the global I/O loop. Plain ``def`` tools must be pure computation
(no I/O, no sleeping): they run in the caller's thread, which is what makes a trivial tool call
from Lua cost microseconds instead of a loop round trip. A first parameter named ``ctx``
receives the :class:`ToolContext` (policy, config, budget, events) and is not part of the schema.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BudgetExceeded
from ..security import SecurityPolicy
from .schema import compile_validator, signature_schema

if TYPE_CHECKING:
    from ..operations import Pipeline

SECURITY_LEVELS = ("safe", "read", "write", "network", "process")


@dataclass
class Budget:
    """Per-run limits on tool calls and wall time (``None`` = unlimited)."""

    max_tool_calls: int | None = None
    max_wall_time_s: float | None = None
    tool_calls: int = 0
    started: float = field(default_factory=time.monotonic)

    def charge_tool_call(self, name: str) -> None:
        """Count one tool call; raise BudgetExceeded when a limit is used up."""
        self.tool_calls += 1
        if self.max_tool_calls is not None and self.tool_calls > self.max_tool_calls:
            raise BudgetExceeded(
                f"tool call budget used up ({self.max_tool_calls} calls) before calling {name!r}; "
                "raise security.max_tool_calls in aikit.toml to allow more",
                details={"rule": "max_tool_calls", "limit": self.max_tool_calls},
            )
        if self.max_wall_time_s is not None and time.monotonic() - self.started > self.max_wall_time_s:
            raise self.wall_time_exceeded(f"before calling {name!r}")

    def wall_time_exceeded(self, when: str) -> BudgetExceeded:
        """The error for a used-up wall-time budget; ``when`` says where it ran out."""
        return BudgetExceeded(
            f"wall-time budget used up ({self.max_wall_time_s:g} s) {when}; "
            "raise security.max_wall_time_s in aikit.toml to allow more",
            details={"rule": "max_wall_time_s", "limit": self.max_wall_time_s},
        )

    def remaining_time(self) -> float | None:
        if self.max_wall_time_s is None:
            return None
        return max(0.0, self.max_wall_time_s - (time.monotonic() - self.started))


@dataclass
class ToolContext:
    """What a running tool may use: the policy it must obey and the run's budget."""

    policy: SecurityPolicy
    budget: Budget = field(default_factory=Budget)
    config: Any = None
    events: Any = None
    hooks: Any = None
    data_dir: Path | None = None
    session_id: str | None = None
    caller: str = "python"  # who called: "lua", "agent:<name>", "workflow:<id>", "python"
    # The process's operation pipeline: programs a tool launches and requests it sends run through
    # it (kinds PROCESS, HTTP_REQUEST). None: they run directly, seen by no interceptor.
    pipeline: Pipeline | None = None

    def setting(self, dotted: str, default: Any) -> Any:
        """A config value (``tools.http_timeout_s``) or ``default`` without a config."""
        if self.config is None:
            return default
        value = self.config.get(dotted, default)
        return default if value is None else value


@dataclass
class Tool:
    """A callable with a schema. Build with :func:`tool` (Python) or directly (Lua-defined tools)."""

    name: str
    description: str
    fn: Callable[..., Any]
    parameters: dict[str, Any]
    category: str = "custom"
    security: str = "safe"
    examples: list[dict[str, Any]] = field(default_factory=list)
    returns: str = ""
    source: str = "python"  # python | lua | plugin:<dist>
    wants_ctx: bool = False
    is_async: bool = False
    async_fn: Callable[..., Any] | None = None  # used by acall when the tool must run elsewhere (Lua tools)
    # A person's approval before each call: None, "always", or a function of the call
    # ({name, args, caller, run_id}) that says whether (true or a reason); see control/approvals.py.
    approval: Any = None
    # Whether running the call twice does what running it once does (a resume may retry a call it
    # cannot tell ran); None: the built-ins' rule, read-only levels ("safe", "read") are.
    idempotent: bool | None = None
    # Extra fields for the meta of this tool's call operations (an MCP tool's server), for interceptors.
    operation_meta: dict[str, Any] = field(default_factory=dict)
    validate: Callable[[Any], list[str]] = field(init=False, repr=False)
    _binding: _Binding | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.security not in SECURITY_LEVELS:
            raise ValueError(f"security must be one of {SECURITY_LEVELS}, got {self.security!r}")
        self.validate = compile_validator(self.parameters)

    def is_idempotent(self) -> bool:
        """Whether a call that may or may not have run can simply run again."""
        if self.idempotent is not None:
            return bool(self.idempotent)
        return self.source == "python" and self.security in ("safe", "read")

    def bind_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """Arguments with defaults filled and integral floats turned into integers where the
        schema asks for integers (Lua numbers computed as floats)."""
        binding = self._binding
        if binding is None or binding.parameters is not self.parameters:
            binding = self._binding = _Binding.of(self.parameters)
        if None in args.values():
            # An explicit null (common in LLM tool calls) for an optional parameter means "default".
            args = {k: v for k, v in args.items() if v is not None or k in binding.nullable}
        for name, default in binding.defaults:
            if name not in args:
                args[name] = default
        for name in binding.integers:
            value = args.get(name)
            if type(value) is float and value.is_integer():
                args[name] = int(value)
        return args

    def coerce_empty_tables(self, args: dict[str, Any]) -> dict[str, Any]:
        """An empty Lua table is both ``{}`` and ``[]``: give list parameters a list."""
        props = self.parameters.get("properties", {})
        for name, value in args.items():
            if value == {} and "array" in _types(props.get(name, {})) and "object" not in _types(props.get(name, {})):
                args[name] = []
        return args

    def doc(self) -> str:
        """The inspect text: signature, description, parameters, example."""
        props = self.parameters.get("properties", {})
        required = set(self.parameters.get("required", []))
        sig = ", ".join(name if name in required else f"{name}?" for name in props)
        lines = [f"Tool {self.name}{{{sig}}}  [{self.category}, security: {self.security}]", "", self.description]
        if props:
            lines += ["", "Parameters:"]
            for name, prop in props.items():
                kind = _kind(prop)
                default = f" (default {lua_literal(prop['default'])})" if "default" in prop else ""
                lines.append(f"  {name}: {kind}{default}  {prop.get('description', '')}".rstrip())
        if self.returns:
            lines += ["", f"Returns: {self.returns}"]
        if self.examples:
            ex = self.examples[0]
            lines += ["", f"Example: Tool.call({lua_literal(self.name)}, {lua_literal(ex.get('args', {}))})"]
        return "\n".join(lines)

    def info(self) -> dict[str, Any]:
        """JSON-like description (what ``Tool.info`` returns and what agents see)."""
        return {
            "name": self.name, "description": self.description, "category": self.category,
            "security": self.security, "parameters": self.parameters, "examples": self.examples,
            "returns": self.returns, "source": self.source, "doc": self.doc(),
        }


@dataclass(frozen=True)
class _Binding:
    """What :meth:`Tool.bind_args` needs from a tool's parameter schema, worked out once."""

    parameters: dict[str, Any]
    defaults: tuple[tuple[str, Any], ...]
    integers: tuple[str, ...]
    nullable: frozenset[str]

    @classmethod
    def of(cls, parameters: dict[str, Any]) -> _Binding:
        props = parameters.get("properties", {})
        return cls(parameters,
                   defaults=tuple((name, sub["default"]) for name, sub in props.items() if "default" in sub),
                   integers=tuple(name for name, sub in props.items() if "integer" in _types(sub)),
                   nullable=frozenset(name for name, sub in props.items() if "null" in _types(sub)))


def _types(prop: dict[str, Any]) -> set[str]:
    """The JSON types a property schema accepts (looking inside anyOf)."""
    kinds: set[str] = set()
    kind = prop.get("type")
    if isinstance(kind, str):
        kinds.add(kind)
    elif isinstance(kind, list):
        kinds.update(kind)
    for option in prop.get("anyOf", []):
        kinds |= _types(option)
    return kinds


def lua_literal(value: Any) -> str:
    """A Lua literal for a JSON-like value (for examples shown to Lua users)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, (list, tuple)):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, dict):
        parts = []
        for k, v in value.items():
            key = k if isinstance(k, str) and k.isidentifier() else f"[{lua_literal(k)}]"
            parts.append(f"{key} = {lua_literal(v)}")
        return "{" + ", ".join(parts) + "}"
    return repr(value)


def _kind(prop: dict[str, Any]) -> str:
    """A short type label for docs: "string", "integer?" (optional), "one of [...]"."""
    if "enum" in prop:
        return "one of " + ", ".join(lua_literal(v) for v in prop["enum"])
    options = prop.get("anyOf")
    if options:
        kinds = [_kind(o) for o in options if o.get("type") != "null"]
        return " | ".join(kinds) + ("?" if len(kinds) < len(options) else "")
    kind = prop.get("type", "any")
    if kind == "array" and isinstance(prop.get("items"), dict) and prop["items"]:
        return f"array of {_kind(prop['items'])}"
    return kind if isinstance(kind, str) else " | ".join(kind)


def tool(name: str | None = None, *, category: str = "custom", security: str = "safe",
         examples: list[dict[str, Any]] | None = None) -> Callable[[Callable[..., Any]], Tool]:
    """Declare a tool from a function (see the module docstring)."""

    def decorate(fn: Callable[..., Any]) -> Tool:
        params = list(inspect.signature(fn).parameters)
        wants_ctx = bool(params) and params[0] == "ctx"
        schema, description = signature_schema(fn)
        _, returns = _returns_section(fn.__doc__)
        return Tool(
            name=name or fn.__name__, description=description or fn.__name__, fn=fn, parameters=schema,
            category=category, security=security, examples=list(examples or []), returns=returns,
            wants_ctx=wants_ctx, is_async=inspect.iscoroutinefunction(fn),
        )

    return decorate


def _returns_section(doc: str | None) -> tuple[str, str]:
    if not doc:
        return "", ""
    text = inspect.cleandoc(doc)
    if "Returns:" not in text:
        return text, ""
    head, _, tail = text.partition("Returns:")
    returns = " ".join(line.strip() for line in tail.splitlines() if line.strip() and not line.strip().endswith(":"))
    return head, returns.split(" Raises")[0].strip()
