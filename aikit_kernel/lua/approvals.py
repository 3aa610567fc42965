"""The front doors' half of approvals: how a person is asked (see
``aikit_components/control/approvals.py``). A notebook asks with an ``input_request`` on the
kernel's stdin channel, ``aikit run`` / ``aikit repl`` on the terminal; both through the engine's
output sink, and only while the running cell or script may read input (``allow_stdin``, a
terminal attached). Otherwise nobody is asked and a run that needs approval pauses."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from ..output import OutputSink
from .engine import LuaEngine


class EngineAsker:
    """Asks through ``engine``'s output sink (an :class:`~aikit_components.control.approvals.Asker`).

    It holds the engine weakly: components outlive the engines built over them (a worker builds
    one per shipped step), and their approvals must not keep the last one alive. Nobody is asked
    once the engine is closed or gone."""

    def __init__(self, engine: LuaEngine) -> None:
        self._engine = weakref.ref(engine)

    @property
    def engine(self) -> LuaEngine | None:
        """The engine asked through; None once it is closed or collected."""
        engine = self._engine()
        return None if engine is None or engine.closed else engine

    def available(self) -> bool:
        engine = self.engine
        if engine is None or not engine.host.stdin_allowed:
            return False
        can_ask = getattr(engine.host.output, "can_ask", None)
        return bool(can_ask()) if callable(can_ask) else True

    def _output(self) -> OutputSink | None:
        engine = self.engine
        return engine.host.output if engine is not None else None

    def ask(self, prompt: str) -> str | None:
        output = self._output()
        if output is None:
            return None
        output.flush()
        return output.readline(prompt)

    async def aask(self, prompt: str) -> str | None:
        output = self._output()
        if output is None:
            return None
        aread = getattr(output, "aread_line", None)
        if callable(aread):
            return await aread(prompt)
        output.flush()
        return await asyncio.to_thread(output.readline, prompt)


def install_asker(engine: LuaEngine, components: Any) -> None:
    """Let ``components``' approvals ask through ``engine``'s front door."""
    approvals = getattr(components, "approvals", None)
    if approvals is not None:
        approvals.asker = EngineAsker(engine)
