"""The front doors' half of approvals: how a person is asked (see
``aikit_components/control/approvals.py``). A notebook asks with an ``input_request`` on the
kernel's stdin channel, ``aikit run`` / ``aikit repl`` on the terminal; both through the engine's
output sink, and only while the running cell or script may read input (``allow_stdin``, a
terminal attached). Otherwise nobody is asked and a run that needs approval pauses."""

from __future__ import annotations

import asyncio
from typing import Any

from .engine import LuaEngine


class EngineAsker:
    """Asks through ``engine``'s output sink (an :class:`~aikit_components.control.approvals.Asker`)."""

    def __init__(self, engine: LuaEngine) -> None:
        self.engine = engine

    def available(self) -> bool:
        host = self.engine.host
        if not host.stdin_allowed:
            return False
        can_ask = getattr(host.output, "can_ask", None)
        return bool(can_ask()) if callable(can_ask) else True

    def ask(self, prompt: str) -> str | None:
        output = self.engine.host.output
        output.flush()
        return output.readline(prompt)

    async def aask(self, prompt: str) -> str | None:
        output = self.engine.host.output
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
