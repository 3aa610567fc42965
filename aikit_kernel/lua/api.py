"""The one place that turns Python components into Lua globals.

A component is exposed as a Lua table of pre-bound functions (about 10x cheaper per call than a
method on a Python object). Arguments arrive as JSON-like Python values, results go back as Lua
values, and errors follow the ``(ok, ...)`` convention so Lua receives ``{code, message, details}``
tables. ``async def`` functions run on the global I/O loop; the Lua thread waits in short slices
so an interrupt cancels the wait.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from .. import runtime
from .convert import lua_to_python, python_to_lua
from .display import DisplayBinding
from .engine import LuaEngine


def install_globals(engine: LuaEngine) -> None:
    """Give a fresh engine every aikit global (components join here as they land)."""
    DisplayBinding(engine).install()


def expose(engine: LuaEngine, name: str, functions: Mapping[str, Callable[..., Any]],
           docs: Mapping[str, str] | None = None) -> Any:
    """Install the global table ``name`` whose fields call ``functions`` (sync or async).

    Each doc in ``docs`` (keyed by field name, or ``""`` for the table itself) is what
    ``inspect`` shows for ``name.field``.
    """
    fields = {key: python_callable(engine, fn) for key, fn in functions.items()}
    bind = engine.internal[b"bind"]
    table = engine.table(**{key: bind(fn) for key, fn in fields.items()})
    docs = docs or {}
    engine.set_global(name, table, docs.get(""))
    for key, doc in docs.items():
        if key:
            engine.register_doc(f"{name}.{key}", table[key.encode()], doc)
    return table


def python_callable(engine: LuaEngine, fn: Callable[..., Any]) -> Callable[..., tuple[Any, ...]]:
    """Wrap ``fn`` for Lua: convert arguments and results, run coroutines on the I/O loop."""
    address = engine.internal[b"address"]
    is_async = inspect.iscoroutinefunction(fn)

    def call(*args: Any) -> Any:
        py_args = [lua_to_python(a, address) for a in args]
        if is_async:
            result = runtime.run_sync(fn(*py_args), should_stop=engine.interrupt_requested)
        else:
            result = fn(*py_args)
            if asyncio.iscoroutine(result):
                result = runtime.run_sync(result, should_stop=engine.interrupt_requested)
        return python_to_lua(engine.runtime, result)

    call.__name__ = getattr(fn, "__name__", "call")
    return engine.host.wrap(call)
