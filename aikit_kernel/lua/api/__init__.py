"""The one place that turns Python components into Lua globals.

A component is exposed as a Lua table of pre-bound functions (about 10x cheaper per call than a
method on a Python object). Arguments arrive as JSON-like Python values, results go back as Lua
values, and errors follow the ``(ok, ...)`` convention so Lua receives ``{code, message, details}``
tables. ``async def`` functions run on the global I/O loop; the Lua thread waits in short slices
so an interrupt cancels the wait.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..convert import lua_to_python, python_to_lua
from ..display import DisplayBinding
from ..engine import LuaEngine

if TYPE_CHECKING:
    from aikit_components.components import Components

    from .run import RunScope


def install_globals(engine: LuaEngine, components: Components | None = None) -> RunScope | None:
    """Give a fresh engine every aikit global: ``display`` always; with ``components``, also
    ``Tool``, ``State``, ``Session``, ``Artifact``, ``Event``, ``Hook``, ``Config``, ``RAG``, ``Agent``, ``MCP``, ...
    Returns the run scope the caller renews for every cell or script (budgets)."""
    DisplayBinding(engine).install()
    if components is None:
        return None
    from . import agents, config, events, hooks, mcp, rag, sessions, state, supervision, tools, trace, workflows
    from .run import RunScope

    scope = RunScope(components)
    tools.install(engine, components, scope)
    state.install(engine, components)
    sessions.install(engine, components)
    events.install(engine, components)
    hooks.install(engine, components)
    config.install(engine, components)
    supervision.install(engine, components)
    collections = rag.install(engine, components, scope)
    agent_table = agents.install(engine, components, scope, collections)
    workflows.install(engine, components, agent_table)
    trace.install(engine, components)
    mcp.install(engine, components, agent_table)
    return scope


def expose(engine: LuaEngine, name: str, functions: Mapping[str, Callable[..., Any]],
           docs: Mapping[str, str] | None = None, *, convert: bool = True) -> Any:
    """Install the global table ``name`` whose fields call ``functions`` (sync or async).

    With ``convert`` (default) arguments arrive as JSON-like Python values and results are
    converted back; without it the functions get and return raw Lua values (bindings that take
    Lua functions). Each doc in ``docs`` (keyed by field name, or ``""`` for the table itself) is
    what ``inspect`` shows for ``name.field``.
    """
    fields = {key: python_callable(engine, fn, f"{name}.{key}") if convert
              else engine.host.wrap(checked_arity(fn, f"{name}.{key}")) for key, fn in functions.items()}
    bind = engine.internal[b"bind"]
    table = engine.table(**{key: bind(fn) for key, fn in fields.items()})
    docs = docs or {}
    engine.set_global(name, table, docs.get(""))
    for key, doc in docs.items():
        if key and key in fields:
            engine.register_doc(f"{name}.{key}", table[key.encode()], doc)
    return table


def python_callable(engine: LuaEngine, fn: Callable[..., Any], label: str | None = None) -> Callable[..., tuple[Any, ...]]:
    """Wrap ``fn`` for Lua: convert arguments and results, run coroutines on the I/O loop.
    ``label`` (``State.set``) names the function when it is called with too few or too many
    arguments: an ``invalid_argument`` error that shows the parameters, not Python's TypeError."""
    address = engine.internal[b"address"]
    is_async = inspect.iscoroutinefunction(fn)

    def call(*args: Any) -> Any:
        py_args = [lua_to_python(a, address, strict=True) for a in args]
        try:
            result = fn(*py_args)
        except TypeError:
            if label is not None:
                arity_error(fn, label, len(py_args))
            raise
        if is_async or asyncio.iscoroutine(result):
            result = engine.wait(result)
        return python_to_lua(engine.runtime, result)

    call.__name__ = getattr(fn, "__name__", "call")
    return engine.host.wrap(call)


def checked_arity(fn: Callable[..., Any], label: str) -> Callable[..., Any]:
    """``fn``, with a call of the wrong number of arguments reported by :func:`arity_error`."""

    @functools.wraps(fn)
    def call(*args: Any) -> Any:
        try:
            return fn(*args)
        except TypeError:
            arity_error(fn, label, len(args))
            raise

    return call


def arity_error(fn: Callable[..., Any], label: str, given: int) -> None:
    """Raise ``invalid_argument`` when ``given`` arguments cannot be bound to ``fn`` (a Lua call
    with an argument missing, e.g. ``State.set("k", 1)`` without the scope); return otherwise
    (the TypeError came from inside ``fn``: a bug to report as it is)."""
    from aikit_components.errors import InvalidArgument

    try:
        signature = inspect.signature(fn)
        signature.bind(*([None] * given))
    except TypeError:
        pass
    except ValueError:  # no signature to read
        return
    else:
        return
    params = [p for p in signature.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p.name for p in params if p.default is p.empty]
    optional = [p.name for p in params if p.default is not p.empty]
    shown = ", ".join(name.rstrip("_") for name in required)
    if optional:
        shown += (" [, " if shown else "[") + " [, ".join(name.rstrip("_") for name in optional) + "]" * len(optional)
    wanted = f"{len(required)}" if not optional else f"{len(required)} to {len(params)}"
    raise InvalidArgument(f"{label}({shown}) takes {wanted} argument{'s' if len(params) != 1 else ''}, got {given} "
                          f"(?{label} shows how to call it)", details={"function": label, "given": given})
