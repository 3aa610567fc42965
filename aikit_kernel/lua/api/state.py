"""``State``: scoped, durable key-value state from Lua.

State lives in local SQLite, so these calls run synchronously on the Lua thread (a round trip
through the I/O loop would cost more than the query). ``State.update`` applies the Lua function
inside the store's write transaction: atomic across threads and processes.
"""

from __future__ import annotations

from typing import Any

from aikit_components.components import Components
from aikit_components.errors import InvalidArgument
from aikit_components.state import MISSING

from ..convert import lua_type
from ..engine import LuaEngine
from ..host import text
from . import expose
from ._util import call_lua, function_arg, lua, name_arg, options, py

DOCS = {
    "": "State\n\nDurable key-value state in scopes: 'global', 'session' (this kernel's session), 'user:<id>', "
        "'agent:<name>', 'workflow:<id>', 'tenant:<id>'. Values are any Lua data (tables round-trip exactly).",
    "get": "State.get(scope, key [, default]) -> value\n\nThe stored value, or default when absent or expired.\n"
           "Example: State.get('global', 'counter', 0)",
    "set": "State.set(scope, key, value [, {ttl_s = seconds}])\n\n"
           "Stores a value (durable on return); with ttl_s it expires.\n"
           "Example: State.set('session', 'last_query', {text = 'hi', n = 3})",
    "delete": "State.delete(scope, key) -> existed\n\nRemoves a key.\nExample: State.delete('global', 'counter')",
    "keys": "State.keys(scope [, prefix]) -> {key, ...}\n\nThe live keys of a scope (sorted), optionally by prefix.\n"
            "Example: State.keys('user:ada', 'pref.')",
    "update": "State.update(scope, key, fn [, {ttl_s = seconds}]) -> new\n\nAtomically replaces the value with fn(old) "
              "(old is nil when absent), even across kernels.\n"
              "Example: State.update('global', 'hits', function(n) return (n or 0) + 1 end)",
    "compare_and_set": "State.compare_and_set(scope, key, expected, new [, {ttl_s = seconds}]) -> stored\n\nStores new "
                       "only if the current value equals expected (nil: only if absent). State.cas is its old name.\n"
                       "Example: State.compare_and_set('global', 'lock', nil, 'me')",
    "cas": "State.cas(scope, key, expected, new [, opts]) -> stored\n\n"
           "The old name of State.compare_and_set (kept until 0.3).",
}


def install(engine: LuaEngine, components: Components) -> None:
    state = components.state

    def scope_key(scope: Any, key: Any) -> tuple[str, str]:
        return name_arg(scope, "State: the scope"), name_arg(key, "State: the key")

    def ttl_of(opts: Any, what: str) -> float | None:
        ttl = options(engine, opts, ("ttl_s",), what, aliases={"ttl": "ttl_s"}).get("ttl_s")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0):
            raise InvalidArgument(f"{what}: ttl_s must be a positive number of seconds, got {lua_type(ttl) or ttl!r}")
        return ttl

    def get(scope: Any, key: Any, default: Any = None) -> Any:
        s, k = scope_key(scope, key)
        found = state.get(s, k, MISSING)
        return default if found is MISSING else lua(engine, found)

    def set_(scope: Any, key: Any, value: Any, opts: Any = None) -> None:
        s, k = scope_key(scope, key)
        if value is None:  # as with Lua tables, assigning nil removes the key
            state.delete(s, k)
            return
        state.set(s, k, py(engine, value), ttl=ttl_of(opts, "State.set"))

    def delete(scope: Any, key: Any) -> bool:
        return state.delete(*scope_key(scope, key))

    def keys(scope: Any, prefix: Any = None) -> Any:
        return lua(engine, state.keys(name_arg(scope, "State: the scope"), text(prefix) if prefix else ""))

    def update(scope: Any, key: Any, fn: Any, opts: Any = None) -> Any:
        s, k = scope_key(scope, key)
        function_arg(fn, "State.update: the updater")
        return lua(engine, state.update(s, k, lambda old: call_lua(engine, fn, old), ttl=ttl_of(opts, "State.update")))

    def compare_and_set(scope: Any, key: Any, expected: Any, new: Any, opts: Any = None) -> bool:
        s, k = scope_key(scope, key)
        want = MISSING if expected is None else py(engine, expected)
        return state.compare_and_set(s, k, want, py(engine, new), ttl=ttl_of(opts, "State.compare_and_set"))

    api = expose(engine, "State", {"get": get, "set": set_, "delete": delete, "keys": keys, "update": update,
                                   "compare_and_set": compare_and_set}, DOCS, convert=False)
    api[b"cas"] = api[b"compare_and_set"]  # the old name, kept until 0.3 (CHANGELOG.md)
    engine.register_doc("State.cas", api[b"cas"], DOCS["cas"])
