"""Realistic span trees for the waterfall and dashboard tests: what a notebook cell running an agent
with tools records (per the GenAI conventions and the telemetry contract), built with explicit
times so tests can check positions.

    spans = agent_cell_trace()             # finished, one failed tool call
    spans = agent_cell_trace(running=True) # the cell and the agent still running
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import Any

from aikit_components.telemetry.records import SpanRecord

MS = 1_000_000
#: Start of the traces built here (a fixed Unix time in ns: 2026-01-01T00:00:00Z).
T0 = 1_767_225_600 * 1_000_000_000


def new_trace_id() -> str:
    """A fresh 32-hex-digit trace id."""
    return secrets.token_hex(16)


def new_span_id() -> str:
    """A fresh 16-hex-digit span id."""
    return secrets.token_hex(8)


def span(trace_id: str, name: str, kind: str, start_ms: float, end_ms: float | None, *,
         parent: SpanRecord | None = None, status: str = "OK", message: str = "", t0: int = T0,
         **attributes: Any) -> SpanRecord:
    """One span of ``trace_id`` (times in ms after ``t0``; ``end_ms`` None for a running span).
    Keyword attributes use ``__`` for dots: ``gen_ai__agent__name="writer"``."""
    attrs = {"aikit.operation.kind": kind, **{k.replace("__", "."): v for k, v in attributes.items()}}
    return SpanRecord(trace_id=trace_id, span_id=new_span_id(), parent_span_id=parent.span_id if parent else None,
                      name=name, kind="CLIENT" if kind == "llm" else "INTERNAL", start_ns=t0 + int(start_ms * MS),
                      end_ns=None if end_ms is None else t0 + int(end_ms * MS),
                      status=status if end_ms is not None else "UNSET",
                      status_message=message, attributes=attrs, events=[])


def agent_cell_trace(*, running: bool = False, trace_id: str | None = None, t0: int = T0) -> list[SpanRecord]:
    """A cell (execute_request) running agent "writer": two model calls, three tool calls (one
    failing with a permission error), a RAG search and a State write; ``running`` leaves the cell,
    the agent and its last model call open."""
    tid = trace_id or new_trace_id()
    cell = span(tid, "execute_request", "cell", 0, None if running else 1500, t0=t0,
                jupyter__msg_id="m-1", jupyter__execution_count=3, jupyter__session_id="s-1")
    agent = span(tid, "invoke_agent writer", "agent", 10, None if running else 1490, parent=cell, t0=t0,
                 gen_ai__agent__name="writer")
    chat1 = span(tid, "chat gpt-4o-mini", "llm", 20, 420, parent=agent, t0=t0, gen_ai__request__model="gpt-4o-mini",
                 gen_ai__usage__input_tokens=812, gen_ai__usage__output_tokens=64, aikit__cost__usd=0.000160)
    read = span(tid, "execute_tool read_file", "tool", 430, 445, parent=agent, t0=t0, gen_ai__tool__name="read_file")
    denied = span(tid, "execute_tool write_file", "tool", 446, 450, parent=agent, t0=t0, gen_ai__tool__name="write_file",
                  status="ERROR", message="path /etc/passwd is outside the allowed paths", error__type="PermissionDenied")
    search = span(tid, "retrieval notes", "rag.search", 451, 470, parent=agent, t0=t0)
    write = span(tid, "state.write notes/last", "state.write", 471, 472, parent=agent, t0=t0)
    chat2 = span(tid, "chat gpt-4o-mini", "llm", 480, None if running else 1480, parent=agent, t0=t0,
                 gen_ai__request__model="gpt-4o-mini",
                 **({} if running else {"gen_ai__usage__input_tokens": 1020, "gen_ai__usage__output_tokens": 230,
                                        "aikit__cost__usd": 0.000291}))
    return [cell, agent, chat1, read, denied, search, write, chat2]


def finished(spans: list[SpanRecord], end_ms: float, t0: int = T0) -> list[SpanRecord]:
    """``spans`` with every running span ended at ``end_ms`` with status OK."""
    return [replace(s, end_ns=t0 + int(end_ms * MS), status="OK") if s.end_ns is None else s for s in spans]
