"""A trace as a waterfall: a self-contained HTML fragment (inline styles, no script, no external
URL), so it shows the same in the dashboard and in JupyterLab's output area, trusted or not.

JupyterLab sanitizes untrusted output (sanitize-html with Google Caja's lists): it drops
``<script>``, ``<style>``, ``<svg>`` and ``data-*`` attributes but keeps tables, ``<div>``, the
``title`` attribute and checked inline styles (``width``/``margin-left`` in %, ``background-color``,
``border``...). So each bar is a ``<div>`` placed with those styles and its tooltip is its ``title``
attribute; inside it an empty inline ``<svg>`` carries the same text as a ``<title>`` for SVG-aware
tools (in sanitized output its text is left at font size 0, invisible).

One table row per span, nested under its parent (children ordered by start), with a bar on a time
axis shared by the whole trace, coloured by the span's ``aikit.operation.kind``; a column each for
duration, tokens and cost; a tooltip on every bar. Failed spans are red; a span still
running (``end_ns`` None) is drawn open-ended, with a dashed outline up to the end of the axis.
Rows carry ``data-*`` attributes (span id, parent id, depth, kind, status) for tools and tests.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from html import escape
from typing import Any

from .records import SpanRecord

#: Bar colour of each ``aikit.operation.kind`` (a dotted kind falls back on its first part).
KIND_COLOURS: dict[str, str] = {
    "cell": "#4e79a7",
    "script": "#76b7b2",
    "agent": "#f28e2b",
    "llm": "#b07aa1",
    "tool": "#59a14f",
    "workflow": "#edc948",
    "mission": "#edc948",
    "workflow.step": "#c9a227",
    "rag": "#9c755f",
    "state": "#bab0ac",
    "http": "#86bcb6",
    "process": "#a0cbe8",
}
#: Colour of a span whose kind is unknown or missing.
OTHER_COLOUR = "#8c8c8c"
#: Colour of a failed span (bar and name).
ERROR_COLOUR = "#d62728"

_INDENT_PX = 14
_MIN_BAR_PCT = 0.4  # a 1 µs span among seconds still shows as a sliver


def kind_colour(kind: str) -> str:
    """The bar colour of operation kind ``kind`` ("rag.search" falls back on "rag")."""
    return KIND_COLOURS.get(kind) or KIND_COLOURS.get(kind.split(".", 1)[0], OTHER_COLOUR)


def format_duration(ns: int) -> str:
    """A duration for people: "0.42 ms", "12 ms", "3.25 s", "2 min 5 s"."""
    if ns < 10_000_000:
        return f"{ns / 1e6:.2f} ms"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.0f} ms"
    seconds = ns / 1e9
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s"


def format_cost(usd: float | None) -> str:
    """A cost in US dollars with four significant digits ("" when unknown)."""
    if usd is None:
        return ""
    return f"${usd:.4g}" if usd < 1 else f"${usd:,.2f}"


def span_tokens(span: SpanRecord) -> tuple[int, int]:
    """The (input, output) token counts a span carries (0 when absent)."""
    return _int(span.attributes.get("gen_ai.usage.input_tokens")), _int(span.attributes.get("gen_ai.usage.output_tokens"))


def span_cost(span: SpanRecord) -> float | None:
    """The ``aikit.cost.usd`` of a span, or None."""
    cost = span.attributes.get("aikit.cost.usd")
    return float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None


def ordered_tree(spans: Sequence[SpanRecord]) -> Iterator[tuple[SpanRecord, int]]:
    """Yield ``(span, depth)`` depth-first, children after their parent ordered by start; a span
    whose parent is not in ``spans`` is a root."""
    by_id = {s.span_id: s for s in spans}
    children: dict[str | None, list[SpanRecord]] = {}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in by_id and span.parent_span_id != span.span_id else None
        children.setdefault(parent, []).append(span)
    for group in children.values():
        group.sort(key=lambda s: (s.start_ns, s.span_id))
    seen: set[str] = set()
    stack = [(span, 0) for span in reversed(children.get(None, []))]
    while stack:
        span, depth = stack.pop()
        if span.span_id in seen:
            continue
        seen.add(span.span_id)
        yield span, depth
        stack.extend((child, depth + 1) for child in reversed(children.get(span.span_id, [])))
    for span in spans:  # spans caught in a parent cycle: shown flat rather than lost
        if span.span_id not in seen:
            seen.add(span.span_id)
            yield span, 0


def render_waterfall(spans: Sequence[SpanRecord], *, title: str = "", now_ns: int | None = None) -> str:
    """Render ``spans`` (one trace) as a self-contained HTML waterfall fragment.

    ``now_ns`` is where the bars of running spans end (default: the current time).
    """
    wrapper = ('<div class="aikit-waterfall" style="font-family:system-ui,-apple-system,Segoe UI,sans-serif;'
               'font-size:12px;line-height:1.35;color:#222;max-width:100%;overflow-x:auto">')
    if not spans:
        head = f'<div style="font-weight:600">{escape(title)}</div>' if title else ""
        return f'{wrapper}{head}<div class="aikit-waterfall-empty" style="color:#666">no spans</div></div>'
    now = time.time_ns() if now_ns is None else now_ns
    start = min(s.start_ns for s in spans)
    end = max(max((s.end_ns if s.end_ns is not None else now) for s in spans), max(s.start_ns for s in spans))
    total = max(end - start, 1)
    rows = [_row(span, depth, start, total, now) for span, depth in ordered_tree(spans)]
    trace_id = spans[0].trace_id
    return "".join([
        wrapper.replace('class="aikit-waterfall"', f'class="aikit-waterfall" data-trace-id="{escape(trace_id)}"', 1),
        _header(spans, title, total),
        _legend(spans),
        '<table class="aikit-waterfall-table" style="border-collapse:collapse;width:100%;min-width:640px">',
        '<thead><tr style="text-align:left;color:#555;border-bottom:1px solid #ccc">',
        '<th style="padding:2px 6px;font-weight:600">span</th>',
        '<th style="padding:2px 6px;font-weight:600;width:45%">',
        f'<span style="float:right;font-weight:400">{escape(format_duration(total))}</span>0</th>',
        '<th style="padding:2px 6px;font-weight:600;text-align:right">duration</th>',
        '<th style="padding:2px 6px;font-weight:600;text-align:right">tokens in/out</th>',
        '<th style="padding:2px 6px;font-weight:600;text-align:right">cost</th>',
        '</tr></thead><tbody>', *rows, '</tbody></table></div>',
    ])


def _header(spans: Sequence[SpanRecord], title: str, total: int) -> str:
    tokens_in = sum(span_tokens(s)[0] for s in spans)
    tokens_out = sum(span_tokens(s)[1] for s in spans)
    costs = [c for c in (span_cost(s) for s in spans) if c is not None]
    errors = sum(1 for s in spans if s.status == "ERROR")
    running = any(s.end_ns is None for s in spans)
    parts = [f"{len(spans)} span{'s' if len(spans) != 1 else ''}", format_duration(total) + (" so far" if running else "")]
    if tokens_in or tokens_out:
        parts.append(f"{tokens_in} in / {tokens_out} out tokens")
    if costs:
        parts.append(format_cost(sum(costs)))
    if errors:
        parts.append(f'<span style="color:{ERROR_COLOUR};font-weight:600">{errors} error{"s" if errors != 1 else ""}</span>')
    if running:
        parts.append('<span style="color:#1f77b4">running</span>')
    facts = " · ".join(p if p.startswith("<span") else escape(p) for p in parts)
    head = f'<span style="font-weight:600">{escape(title)}</span> ' if title else ""
    return (f'<div class="aikit-waterfall-summary" style="margin:2px 0 4px 0">{head}'
            f'<span style="color:#555">{facts}</span></div>')


def _legend(spans: Sequence[SpanRecord]) -> str:
    kinds = sorted({_kind(s) for s in spans})
    items = "".join(
        f'<span data-kind="{escape(k)}" style="margin-right:10px;white-space:nowrap">'
        f'<span style="display:inline-block;width:10px;height:10px;background:{kind_colour(k)};'
        f'margin-right:3px;vertical-align:-1px"></span>{escape(k or "other")}</span>'
        for k in kinds)
    return f'<div class="aikit-waterfall-legend" style="margin-bottom:4px;color:#444">{items}</div>'


def _row(span: SpanRecord, depth: int, start: int, total: int, now: int) -> str:
    kind = _kind(span)
    failed = span.status == "ERROR"
    running = span.end_ns is None
    colour = ERROR_COLOUR if failed else kind_colour(kind)
    end = now if running else span.end_ns
    duration = max((end or span.start_ns) - span.start_ns, 0)
    left = 100.0 * (span.start_ns - start) / total
    width = 100.0 - left if running else max(100.0 * duration / total, _MIN_BAR_PCT)
    left = min(left, 100.0 - _MIN_BAR_PCT)
    width = max(min(width, 100.0 - left), _MIN_BAR_PCT)
    tokens_in, tokens_out = span_tokens(span)
    tokens = f"{tokens_in} / {tokens_out}" if tokens_in or tokens_out else ""
    cost = format_cost(span_cost(span))
    shown_duration = format_duration(duration) + ("…" if running else "")
    tip = escape(_tooltip(span, kind, shown_duration, tokens_in, tokens_out, cost))
    if running:  # open-ended: a pale, dashed bar up to the end of the axis
        paint = f"background-color:{_rgba(colour, 0.3)};border:1px dashed {colour};"
    else:
        paint = f"background-color:{colour};"
    status = "running" if running else ("error" if failed else span.status.lower())
    name_colour = f"color:{ERROR_COLOUR};font-weight:600;" if failed else ""
    mark = "✗ " if failed else ""
    cell = "padding:1px 6px;white-space:nowrap;border-bottom:1px solid #eee;"
    return "".join([
        f'<tr class="aikit-span" data-span-id="{escape(span.span_id)}" data-parent-id="{escape(span.parent_span_id or "")}" '
        f'data-depth="{depth}" data-kind="{escape(kind)}" data-status="{status}" data-colour="{colour}" title="{tip}">',
        f'<td style="{cell}padding-left:{6 + depth * _INDENT_PX}px;{name_colour}max-width:360px;overflow:hidden;'
        f'text-overflow:ellipsis">{mark}{escape(span.name)}</td>',
        f'<td style="{cell}"><div class="aikit-bar" title="{tip}" style="margin-left:{left:.3f}%;width:{width:.3f}%;'
        f'height:10px;box-sizing:border-box;border-radius:2px;{paint}font-size:0px;line-height:0px;overflow:hidden">',
        f'<svg width="100%" height="10"><title>{tip}</title></svg></div></td>',
        f'<td style="{cell}text-align:right">{escape(shown_duration)}</td>',
        f'<td style="{cell}text-align:right">{escape(tokens)}</td>',
        f'<td style="{cell}text-align:right">{escape(cost)}</td></tr>',
    ])


def _tooltip(span: SpanRecord, kind: str, duration: str, tokens_in: int, tokens_out: int, cost: str) -> str:
    attrs = span.attributes
    lines = [span.name, f"kind: {kind or 'other'}", f"duration: {duration}"]
    for label, key in (("agent", "gen_ai.agent.name"), ("model", "gen_ai.request.model"), ("tool", "gen_ai.tool.name")):
        if attrs.get(key) not in (None, ""):
            lines.append(f"{label}: {attrs[key]}")
    if tokens_in or tokens_out:
        lines.append(f"tokens: {tokens_in} in / {tokens_out} out")
    if cost:
        lines.append(f"cost: {cost}")
    if span.end_ns is None:
        lines.append("status: running")
    elif span.status == "ERROR":
        error_type = attrs.get("error.type")
        detail = ": ".join(str(p) for p in (error_type, span.status_message) if p)
        lines.append(f"status: ERROR{' - ' + detail if detail else ''}")
    else:
        lines.append(f"status: {span.status}")
    return "\n".join(lines)


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _kind(span: SpanRecord) -> str:
    kind = span.attributes.get("aikit.operation.kind")
    return kind if isinstance(kind, str) else ""


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0
