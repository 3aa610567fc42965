"""The one way to build a Lua runtime: a :class:`LuaEngine` with every aikit global, wired to the
process's components and limited by the kernel settings.

The kernel (:class:`aikit_kernel.interpreter.LuaInterpreter`), ``aikit run``, ``aikit debug``,
``aikit repl`` and the test fixtures all build theirs here:

* :func:`open_lua_runtime` — what a process does: load the config and the ``[kernel]`` settings,
  open the components (resuming ``kernel.resume_session`` / ``$AIKIT_SESSION`` when set), build.
* :func:`build_lua_runtime` — around components you already opened (tests:
  ``Components.open(config=..., data_dir=tmp, plugins=False)``), or none (a bare sandbox with
  ``display`` only).

Not to be confused with :mod:`aikit_kernel.runtime`, the process's I/O loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aikit_components.errors import AikitError
from aikit_components.security import SecurityPolicy

from . import runtime
from .lua.api import install_globals
from .lua.approvals import install_asker
from .lua.engine import LuaEngine
from .output import OutputSink
from .settings import KernelSettings, LoadedSettings, load_settings

if TYPE_CHECKING:
    from aikit_components.components import Components

    from .lua.api.run import RunScope

log = logging.getLogger(__name__)


@dataclass
class LuaRuntime:
    """A ready Lua runtime: the engine, where its output goes, the components its globals use (None for a bare sandbox),
    the run scope to renew for every cell or script (tool budgets; None without components), the
    settings it was built with, and why components are missing when they could not be opened."""

    engine: LuaEngine
    output: OutputSink
    components: Components | None
    scope: RunScope | None
    settings: KernelSettings
    startup_error: str | None = None
    #: What the user must be told at start (settings of an untrusted project file that were ignored).
    notices: tuple[str, ...] = ()

    def close(self, status: str | None = "completed") -> None:
        """Close the engine, then the components (completing the session with ``status``; None
        leaves it open to resume)."""
        self.engine.close()
        if self.components is not None:
            self.components.close(status)


def build_lua_runtime(output: OutputSink, components: Components | None = None, *,
                      settings: KernelSettings | None = None, policy: SecurityPolicy | None = None,
                      startup_error: str | None = None) -> LuaRuntime:
    """A Lua runtime around already-open ``components`` (or none).

    ``settings`` default to those of ``components.config`` (or the built-in defaults without
    components); ``policy`` defaults to the components' security policy (or the default policy).
    """
    if settings is None:
        settings = KernelSettings.from_config(components.config) if components is not None else KernelSettings()
    if policy is None and components is not None:
        policy = components.policy
    engine = LuaEngine(output, policy, max_memory=settings.max_memory_bytes)
    try:
        scope = install_globals(engine, components)
        if components is not None:
            install_asker(engine, components)
    except BaseException:
        engine.close()  # the caller gets no engine to close; the components stay the caller's
        raise
    return LuaRuntime(engine, output, components, scope, settings, startup_error)


def open_lua_runtime(output: OutputSink, *, session_name: str | None = None, loaded: LoadedSettings | None = None,
                     strict: bool = False, warm_up: bool = False, metric_readers: list[Any] | None = None) -> LuaRuntime:
    """Load the settings (unless ``loaded``), open the process's components and build a runtime.

    With ``strict`` (scripts) a broken config or data directory raises :class:`AikitError`;
    otherwise (the kernel, the REPL) the runtime comes up without components and
    :attr:`LuaRuntime.startup_error` says why, for the first cell to show. ``warm_up`` builds the
    tool registry in the background (a long-lived kernel). ``metric_readers``: OTel metric readers
    for the components' telemetry (``aikit serve --metrics-port``).
    """
    from aikit_components.components import Components

    runtime.get_loop()
    loaded = loaded if loaded is not None else load_settings()
    if strict and loaded.error is not None:
        raise AikitError(loaded.error)
    if loaded.config is None:
        return build_lua_runtime(output, settings=loaded.settings, startup_error=loaded.error)
    try:
        components = Components.open(config=loaded.config, loop_getter=runtime.get_loop, session_name=session_name,
                                     session_id=loaded.settings.resume_session, metric_readers=metric_readers)
    except AikitError as exc:
        if strict:
            raise
        log.error("components unavailable: %s", exc)
        return build_lua_runtime(output, settings=loaded.settings, startup_error=exc.message)
    if warm_up:
        components.warm_up()
    lua = build_lua_runtime(output, components, settings=loaded.settings, startup_error=loaded.error)
    lua.notices = tuple(loaded.config.notices)
    return lua
