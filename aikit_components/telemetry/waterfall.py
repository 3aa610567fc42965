"""A trace as HTML: a placeholder kept until the dashboard's renderer replaces this module (the
integrator takes ``dashboard``'s version; the signature is the telemetry contract's)."""

from __future__ import annotations

import html
from collections.abc import Sequence

from .records import SpanRecord

__all__ = ["render_waterfall"]


def render_waterfall(spans: Sequence[SpanRecord], *, title: str = "") -> str:
    """A self-contained HTML fragment: one row per span, indented by depth, with its duration."""
    depth: dict[str, int] = {}
    rows = []
    for span in spans:
        level = depth.get(span.parent_span_id or "", -1) + 1
        depth[span.span_id] = level
        ms = "running" if span.end_ns is None else f"{(span.end_ns - span.start_ns) / 1e6:.1f} ms"
        colour = "#c0392b" if span.status == "ERROR" else "#222"
        rows.append(f'<div style="margin-left:{level * 16}px;color:{colour}">{html.escape(span.name)} '
                    f'<span style="color:#888">{ms}</span></div>')
    head = f"<h4>{html.escape(title)}</h4>" if title else ""
    return f'<div class="aikit-waterfall">{head}{"".join(rows)}</div>'
