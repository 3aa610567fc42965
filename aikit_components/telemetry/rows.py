"""What the SQLite span store (:mod:`.store`) and the PostgreSQL one (:mod:`.pg_store`) share: a
span as a row (:data:`ROW_FIELDS`), runs of alike spans as a :class:`SpanGroup`, and the trace
summaries kept up to date span by span as rows are written (:func:`summarize`)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from .records import SpanRecord, TraceSummary

__all__ = ["PRUNE_EVERY_S", "ROW_FIELDS", "TRACE_SEPARATOR", "SpanGroup", "expand_groups", "record_row",
           "resolve_trace_id", "span_record", "summarize", "trace_filter", "trace_summary", "usage"]

#: The fields of a span row, as :meth:`SpanStore.write_rows` takes them: the record's fields with
#: the attributes and events as JSON text, then the columns the store indexes and sums. What is
#: absent is a sentinel, never None: ``""`` for parent_span_id (a root) and agent, ``-1`` for
#: end_ns (running), input_tokens and output_tokens, ``-1.0`` for cost_usd. (Python 3.11's sqlite3
#: sends a None parameter through its adapter look-up, an exception made and cleared each time,
#: which cost more than the rest of the row; the statement turns the sentinels into NULL.)
ROW_FIELDS = ("trace_id", "span_id", "parent_span_id", "name", "kind", "start_ns", "end_ns", "status",
              "status_message", "attributes_json", "events_json", "op_kind", "agent", "input_tokens",
              "output_tokens", "cost_usd")

TRACE_SEPARATOR = "\x1f"  # separates the agent names of a trace in one column
PRUNE_EVERY_S = 60.0


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def usage(attrs: dict[str, Any]) -> tuple[int, int, float]:
    """Tokens in and out and cost of a span's attributes, as a row's columns (-1 when absent)."""
    tokens_in, tokens_out = _int(attrs.get("gen_ai.usage.input_tokens")), _int(attrs.get("gen_ai.usage.output_tokens"))
    cost = _number(attrs.get("aikit.cost.usd"))
    return -1 if tokens_in is None else tokens_in, -1 if tokens_out is None else tokens_out, -1.0 if cost is None else cost


def record_row(span: SpanRecord) -> tuple[Any, ...]:
    """``span`` as a row (:data:`ROW_FIELDS`)."""
    attrs = span.attributes
    agent = attrs.get("gen_ai.agent.name")
    return (span.trace_id, span.span_id, span.parent_span_id or "", span.name, span.kind, span.start_ns,
            -1 if span.end_ns is None else span.end_ns, span.status, span.status_message,
            json.dumps(attrs, default=str, ensure_ascii=False), json.dumps(span.events, default=str, ensure_ascii=False),
            str(attrs.get("aikit.operation.kind", "")), "" if agent is None else str(agent)) + usage(attrs)


class SpanGroup:
    """Ended spans that share all but their ids and times (a loop calling one tool), as tracing's
    writer hands them to :meth:`SpanStore.write_rows` among rows: ``row`` is the first one's row
    (:data:`ROW_FIELDS`), ``members`` the span_id, start_ns and end_ns of each, the first
    included, one after the other. New spans (never written running), none failed: the store
    inserts them with the group statement and counts them in their trace's summary at once."""

    __slots__ = ("members", "row")

    def __init__(self, row: tuple[Any, ...]) -> None:
        self.row = row
        self.members: list[Any] = [row[1], row[5], row[6]]

    def __len__(self) -> int:
        return len(self.members) // 3

    def rows(self) -> list[tuple[Any, ...]]:
        """The group as rows."""
        row, members = self.row, self.members
        head, middle, tail = row[:1], row[2:5], row[7:]
        return [head + (members[i],) + middle + (members[i + 1], members[i + 2]) + tail
                for i in range(0, len(members), 3)]


def expand_groups(rows: Sequence[Any]) -> list[tuple[Any, ...]]:
    """``rows`` with each :class:`SpanGroup` among them replaced by its rows."""
    out: list[tuple[Any, ...]] = []
    for row in rows:
        if row.__class__ is SpanGroup:
            out += row.rows()
        else:
            out.append(row)
    return out


def span_record(row: Sequence[Any]) -> SpanRecord:
    return SpanRecord(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8],
                      json.loads(row[9]), json.loads(row[10]))


def trace_summary(row: Sequence[Any]) -> TraceSummary:
    return TraceSummary(*row[:11])


def summarize(row: tuple[Any, ...], old: tuple[Any, ...] | None, summaries: dict[str, list[Any]],
              fetch_trace: Callable[[str], Sequence[Any] | None], has_span: Callable[[str, str], bool]) -> None:
    """Fold the span ``row`` (:data:`ROW_FIELDS`; ``old``: what was stored of it before, see
    ``_previous``) into the summary rows of its trace in ``summaries`` (trace id -> the columns of
    the traces table), fetching a trace's stored summary with ``fetch_trace`` the first time and
    asking ``has_span`` whether a parent is stored. Shared by the SQLite and PostgreSQL stores."""
    trace_id, span_id, parent, name, _, start, end, status = row[:8]
    t = summaries.get(trace_id)
    if t is None:
        found = fetch_trace(trace_id)
        t = list(found) if found is not None else [trace_id, name, row[11], start, None, 0, 0, 0, 0, None,
                                                   "running", "", span_id, 0, start]
        summaries[trace_id] = t
    # trace_id, root_name, root_kind, start_ns, end_ns, span_count, error_count, input_tokens,
    # output_tokens, cost_usd, status, agents, root_span_id, root_parentless, root_start_ns
    if start < t[3]:
        t[3] = start
    tokens_in, tokens_out, cost = row[13], row[14], row[15]  # -1 when absent
    if old is None:
        t[5] += 1
        if status == "ERROR":
            t[6] += 1
        if tokens_in > 0:
            t[7] += tokens_in
        if tokens_out > 0:
            t[8] += tokens_out
        if cost >= 0:
            t[9] = (t[9] or 0.0) + cost
    else:
        old_status, old_in, old_out, old_cost = old
        t[6] += (status == "ERROR") - (old_status == "ERROR")
        t[7] += max(tokens_in, 0) - (old_in or 0)
        t[8] += max(tokens_out, 0) - (old_out or 0)
        if cost >= 0 or old_cost is not None:
            t[9] = (t[9] or 0.0) + max(cost, 0.0) - (old_cost or 0.0)
    agent = row[12]
    if agent and TRACE_SEPARATOR + agent + TRACE_SEPARATOR not in (t[11] or ""):
        t[11] = (t[11] or TRACE_SEPARATOR) + agent + TRACE_SEPARATOR
    is_root = t[12] == span_id
    if not is_root and not t[13]:  # the root so far is a stand-in
        is_root = not parent or (start <= t[14] and not has_span(trace_id, parent))
    if is_root:
        t[1], t[2], t[4], t[12], t[13], t[14] = name, row[11], end if end >= 0 else None, span_id, int(not parent), \
            start
        t[10] = "running" if end < 0 else ("error" if status == "ERROR" else "ok")


def trace_filter(agent: str | None, errors_only: bool, since_ns: int | None,
                 contains: str = "instr(agents, ?) > 0") -> tuple[str, list[Any]]:
    """The WHERE clause (``""`` for none) and parameters of :meth:`SpanStore.traces`'s filters;
    ``contains`` is the dialect's "agents holds ?" test (PostgreSQL: ``strpos``)."""
    where: list[str] = []
    args: list[Any] = []
    if agent:
        where.append(contains)
        args.append(TRACE_SEPARATOR + agent + TRACE_SEPARATOR)
    if errors_only:
        where.append("error_count > 0")
    if since_ns is not None:
        where.append("start_ns >= ?")
        args.append(int(since_ns))
    return (" WHERE " + " AND ".join(where) if where else ""), args


def resolve_trace_id(trace_id: str, matching: Callable[[str], list[Any]]) -> str:
    """The full id of ``trace_id``, which may be a unique prefix of 8 or more hex digits;
    ``matching(prefix)`` gives up to two stored ids starting with it. KeyError when unknown or
    ambiguous."""
    given = str(trace_id).strip().lower()
    if len(given) == 32:
        return given
    if len(given) < 8 or any(c not in "0123456789abcdef" for c in given):
        raise KeyError(trace_id)
    rows = matching(given)
    if len(rows) != 1:
        raise KeyError(f"{trace_id} ({'ambiguous' if rows else 'unknown'})")
    return str(rows[0][0])
