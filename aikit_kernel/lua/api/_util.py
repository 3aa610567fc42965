"""Helpers shared by the bindings: argument conversion, option tables, calling Lua safely."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aikit_components.errors import AikitError, InvalidArgument

from ..convert import lua_kind, lua_to_python, lua_type, python_to_lua
from ..engine import LuaEngine
from ..host import text


def py(engine: LuaEngine, value: Any) -> Any:
    """A Lua value as a JSON-like Python value (strict: functions and cycles are invalid)."""
    return lua_to_python(value, engine.address, strict=True)


def lua(engine: LuaEngine, value: Any) -> Any:
    """A Python value as a Lua value."""
    return python_to_lua(engine.runtime, value)


def name_arg(value: Any, what: str) -> str:
    if not isinstance(value, bytes) or not value:
        raise InvalidArgument(f"{what} must be a non-empty string, got {lua_kind(value)}")
    return text(value)


def options(engine: LuaEngine, value: Any, allowed: tuple[str, ...], what: str,
            aliases: Mapping[str, str] | None = None) -> dict[str, Any]:
    """An optional options table as a dict, rejecting unknown keys (typos get a clear error).

    ``aliases`` maps old option names, still accepted (see CHANGELOG.md), to their new name: the
    dict holds the value under the new name, and giving both names is an error."""
    if value is None:
        return {}
    if lua_type(value) != "table":
        raise InvalidArgument(f"{what} options must be a table, got {lua_kind(value)}")
    opts = lua_to_python(value, engine.address)  # may hold functions (Tool.define's fn)
    if not isinstance(opts, dict):
        return {}
    aliases = aliases or {}
    unknown = sorted(str(k) for k in opts if k not in allowed and k not in aliases)
    if unknown:
        import difflib

        guesses = [f"{k!r}: did you mean {close[0]!r}?" for k in unknown
                   for close in [difflib.get_close_matches(k, allowed, n=1, cutoff=0.6)] if close]
        hint = f"; {'; '.join(guesses)}" if guesses else ""
        raise InvalidArgument(f"{what}: unknown option(s) {', '.join(unknown)}{hint} (known: {', '.join(allowed)})")
    for old, new in aliases.items():
        if old in opts:
            if new in opts:
                raise InvalidArgument(f"{what}: give {new} or its old name {old}, not both")
            opts[new] = opts.pop(old)
    return opts


def whole_number(value: Any, what: str, default: int = 0) -> int:
    """An option that is a whole number >= 0 (``default`` when nil); a Lua float such as ``3.0``
    counts. ``what`` names it in the error (``Workflow.new: retries``)."""
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument(f"{what} must be a whole number >= 0, got {_shown(value)}")
    return value


def seconds_arg(value: Any, what: str, default: float = 0.0) -> float:
    """An option that is a number of seconds >= 0 (``default`` when nil)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise InvalidArgument(f"{what} must be a number of seconds >= 0, got {_shown(value)}")
    return float(value)


def named_table(value: Any, what: str) -> dict[str, Any]:
    """An option that is a table of named values, converted (an empty table, or nil, is empty)."""
    if value is None or value == [] or value == {}:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be a table of named values, got {_shown(value)}")
    return value


def string_list(value: Any, what: str) -> list[str]:
    """An option that is a list of strings; one string is a list of one (nil: empty)."""
    if value is None or value == {}:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidArgument(f"{what} must be a string or a list of strings, got {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    """A converted option value in a message: its Lua type, and the value when it is short."""
    kind = lua_kind(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{kind} {value:g}" if isinstance(value, float) else f"{kind} {value}"
    if isinstance(value, str) and len(value) <= 40:
        return f"{kind} {value!r}"
    return kind


def function_arg(value: Any, what: str) -> Any:
    if lua_type(value) != "function":
        raise InvalidArgument(f"{what} must be a function, got {lua_kind(value)}")
    return value


def run_on_lua_thread(engine: LuaEngine, work: Any, *args: Any) -> Any:
    """``work(*args)`` on the Lua thread: directly when already there, else queued (only that
    thread may touch the runtime) and waited for."""
    if engine.dispatcher.on_lua_thread():
        return work(*args)
    return engine.dispatcher.submit(work, *args).result()


def checked_values(engine: LuaEngine, fn: Any, *lua_args: Any) -> list[Any]:
    """Call a Lua function protected (Lua thread only); a Lua error becomes an AikitError."""
    result = engine.pcall(fn, *lua_args)
    if result.error is not None:
        err = result.error
        err.raise_if_interrupted()
        details = {"traceback": err.traceback}
        if err.ename == "invalid_argument":  # the class says "never retry" (pipeline, workflow steps)
            raise InvalidArgument(err.evalue, details=details)
        raise AikitError(err.evalue, code="lua_error" if err.ename == "LuaError" else err.ename, details=details)
    return result.values


def call_lua(engine: LuaEngine, fn: Any, *args: Any) -> Any:
    """Call a Lua function with Python arguments on the Lua thread and return its first result
    as Python; a Lua error becomes an AikitError."""
    def work() -> Any:
        values = checked_values(engine, fn, *[lua(engine, a) for a in args])
        return py(engine, values[0]) if values else None

    return run_on_lua_thread(engine, work)


async def call_lua_async(engine: LuaEngine, fn: Any, *args: Any) -> Any:
    """:func:`call_lua` from the I/O loop."""
    return await engine.dispatcher.call_async(lambda: call_lua(engine, fn, *args))
