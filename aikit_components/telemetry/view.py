"""A trace as plain data and text: span rows nested by parent (what ``aikit trace show`` draws
with rich, and what a trace's ``tostring`` gives in Lua)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .records import SpanRecord

__all__ = ["SpanRow", "describe_span", "rows", "text_tree"]


@dataclass(frozen=True, slots=True)
class SpanRow:
    span: SpanRecord
    depth: int


def rows(spans: Sequence[SpanRecord]) -> list[SpanRow]:
    """The spans depth-first (children after their parent, by start time); spans whose parent is
    missing are roots."""
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[SpanRecord]] = {}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in ids else None
        children.setdefault(parent, []).append(span)
    out: list[SpanRow] = []
    stack = [(s, 0) for s in reversed(sorted(children.get(None, []), key=lambda s: s.start_ns))]
    while stack:
        span, depth = stack.pop()
        out.append(SpanRow(span, depth))
        stack.extend((c, depth + 1) for c in reversed(sorted(children.get(span.span_id, []), key=lambda s: s.start_ns)))
    return out


def duration_text(span: SpanRecord) -> str:
    if span.end_ns is None:
        return "running"
    ms = (span.end_ns - span.start_ns) / 1e6
    return f"{ms:.1f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def describe_span(span: SpanRecord) -> str:
    """``name  12.3 ms  tokens 10→5  $0.0001  ERROR timeout: ...`` for one span."""
    a: dict[str, Any] = span.attributes
    parts = [span.name, duration_text(span)]
    if "gen_ai.usage.input_tokens" in a or "gen_ai.usage.output_tokens" in a:
        parts.append(f"tokens {a.get('gen_ai.usage.input_tokens', 0)}→{a.get('gen_ai.usage.output_tokens', 0)}")
    if isinstance(a.get("aikit.cost.usd"), (int, float)):
        parts.append(f"${a['aikit.cost.usd']:.6f}")
    if span.status == "ERROR":
        first_line = span.status_message.strip().splitlines()[0] if span.status_message.strip() else ""
        parts.append(f"ERROR {a.get('error.type', '')}: {first_line}".rstrip(": "))
    return "  ".join(parts)


def text_tree(spans: Sequence[SpanRecord]) -> str:
    """The trace as indented lines, one per span."""
    return "\n".join("  " * r.depth + describe_span(r.span) for r in rows(spans))
