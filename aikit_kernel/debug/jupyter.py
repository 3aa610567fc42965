"""Bridge 1: Jupyter's debugger protocol (JupyterLab's debugger panel).

``debug_request`` arrives on the control channel and is answered with ``debug_reply``; DAP events
go out as ``debug_event`` on IOPub. On top of plain DAP, JupyterLab asks for ``debugInfo`` (how
cell files are named: Murmur2 of the cell's source with our seed, between ``tmpFilePrefix`` and
``.lua``), ``dumpCell`` (write a cell's file so breakpoints can be set before it runs),
``inspectVariables`` and ``richInspectVariables`` (the variable explorer).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..lua.cells import HASH_SEED, SUFFIX, CellFiles
from .dap import DapSession, malformed_arguments
from .lua_debugger import THREAD_ID, DebuggerError, LuaDebugger

# JupyterLab's variables tree (@jupyterlab/debugger, VariablesBodyTree's convertType) prints a
# variable's value only when its DAP ``type`` is absent or one of Python's int, float, bool and str;
# for any other type name it prints the type instead (``n: integer``). A Lua scalar's value is a Lua
# literal that already says its type (3, 3.0, true, "text", nil), so these go out without ``type``
# and the tree shows the value; tables, functions and named types keep it (the tree shows it as it
# shows Python's list or dict, and expands the table; the table view lists it in its Type column).
SCALAR_TYPES = frozenset({"nil", "boolean", "integer", "float", "string"})

PublishEvent = Callable[[dict[str, Any], "dict[str, Any] | None"], None]  # (event, parent message)


class JupyterDebugger:
    """Serves ``debug_request`` contents (DAP requests plus Jupyter's extensions)."""

    def __init__(self, debugger: LuaDebugger, cells: CellFiles, publish: PublishEvent) -> None:
        self.debugger = debugger
        self.cells = cells
        self._parent: dict[str, Any] | None = None  # events go out as children of the latest request
        self.session = DapSession(debugger, lambda event: publish(event, self._parent))
        self._lock = asyncio.Lock()  # one request at a time, in arrival order

    async def handle(self, request: dict[str, Any], parent: dict[str, Any] | None = None) -> dict[str, Any]:
        """The ``debug_reply`` content for a ``debug_request`` content (``parent``: its message)."""
        async with self._lock:
            self._parent = parent
            command = request.get("command")
            extension = {
                "debugInfo": self._debug_info, "dumpCell": self._dump_cell,
                "inspectVariables": self._inspect_variables, "richInspectVariables": self._rich_inspect,
                "copyToGlobals": self._copy_to_globals,
            }.get(str(command))
            if extension is None:
                response = await self.session.handle(request)
                if command == "variables" and response.get("success"):
                    response["body"]["variables"] = values_shown(response["body"]["variables"])
                return response
            response = {"seq": 0, "type": "response", "request_seq": request.get("seq", 0), "command": command,
                        "success": True}
            arguments = request.get("arguments") or {}
            try:
                if not isinstance(arguments, dict):
                    raise TypeError(f"the arguments of {command!r} must be an object")
                response["body"] = await extension(arguments)
            except (DebuggerError, OSError) as exc:
                response.update(success=False, message=str(exc))
            except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
                response.update(success=False, message=malformed_arguments(str(command), exc))
            except TimeoutError:
                response.update(success=False, message="the kernel is busy running code; pause it first")
            return response

    def after_reply(self) -> None:
        self.session.flush_after()

    async def _debug_info(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "isStarted": self.session.started,
            "hashMethod": "Murmur2",
            "hashSeed": HASH_SEED,
            "tmpFilePrefix": self.cells.prefix,
            "tmpFileSuffix": SUFFIX,
            "breakpoints": [{"source": path, "breakpoints": bps} for path, bps in self.debugger.breakpoints().items()],
            "stoppedThreads": [THREAD_ID] if self.debugger.is_stopped else [],
            "richRendering": True,
            "exceptionPaths": [],
        }

    async def _dump_cell(self, args: dict[str, Any]) -> dict[str, Any]:
        code = args["code"]
        if not isinstance(code, str):
            raise TypeError("dumpCell needs arguments.code as a string")
        return {"sourcePath": self.cells.dump(code)}

    async def _inspect_variables(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"variables": values_shown(await self.session.run_on_lua(self.debugger.global_variables))}

    async def _rich_inspect(self, args: dict[str, Any]) -> dict[str, Any]:
        name = str(args["variableName"])
        frame = args.get("frameId") if self.debugger.is_stopped else None
        level = int(frame) if frame is not None else None
        result = await self.session.run_on_lua(lambda: self.debugger.evaluate(name, level))
        return {"data": {"text/plain": result["result"]}, "metadata": {}}

    async def _copy_to_globals(self, args: dict[str, Any]) -> dict[str, Any]:
        src, dst = str(args["srcVariableName"]), str(args["dstVariableName"])
        frame = args.get("srcFrameId")
        if not dst.isidentifier():
            raise ValueError(f"{dst!r} is not a Lua name")
        fid = int(frame) if frame is not None else None
        await self.session.run_on_lua(lambda: self.debugger.copy_to_global(src, dst, fid))
        return {}


def values_shown(variables: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """DAP variables as JupyterLab's tree shows their values: scalars without ``type``."""
    return [{k: v for k, v in var.items() if k != "type"} if var.get("type") in SCALAR_TYPES else var
            for var in variables]
