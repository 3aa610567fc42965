"""What a span store remembers of the traces it wrote (see :mod:`.store`): their summary rows, so
a write takes them from here rather than reading them back (a burst of agent runs touches every
trace in every write), and the ids of their spans, so "is this span's parent stored?" is answered
without scanning the trace's rows. Valid while no other connection writes the file."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from .rows import SpanGroup

#: Summary rows remembered; past this many, everything is forgotten and remembering starts again.
SUMMARIES_KEPT = 8192
#: Span ids remembered; past this many, they are forgotten (the traces' spans are then looked up
#: in the file).
SPAN_IDS_KEPT = 1 << 15


def span_ids(rows: Sequence[Any]) -> set[tuple[str, str]]:
    """The (trace id, span id) of ``rows`` and of the spans of the groups among them."""
    ids: set[tuple[str, str]] = set()
    for row in rows:
        if row.__class__ is SpanGroup:
            trace_id = row.row[0]
            ids.update((trace_id, span_id) for span_id in row.members[::3])
        else:
            ids.add((row[0], row[1]))
    return ids


class WrittenTraces:
    """The summary rows and span ids of the traces one store's connection wrote (not thread-safe:
    the store calls it under its lock)."""

    def __init__(self) -> None:
        self._summaries: dict[str, tuple[Any, ...]] = {}
        self._data_version: int | None = None
        # the span ids of the traces this store wrote all of (the traces were new when it first
        # wrote them)
        self._span_ids_of: dict[str, set[str]] = {}
        self._span_ids_kept = 0

    def summaries(self, db: sqlite3.Connection) -> dict[str, tuple[Any, ...]]:
        """The summary rows remembered, while they are what the file holds: they are forgotten
        once another connection (another process, another store) has written to it (asked inside
        the write's transaction, which no other connection can then change)."""
        version = db.execute("PRAGMA data_version").fetchone()[0]  # (this connection's writes leave it)
        if version != self._data_version:
            self.forget()
            self._data_version = version
        return self._summaries

    def span_ids(self, trace_id: str) -> set[str] | None:
        """The ids of the stored spans of ``trace_id``; None when they are not all known."""
        return self._span_ids_of.get(trace_id)

    def remember(self, summaries: dict[str, list[Any]], rows: Sequence[Any], new_traces: set[str]) -> None:
        """Remember what a write has committed: the summary rows of its traces and the ids of its
        spans (``rows`` and groups) of the traces whose every span this store wrote, those new in
        the write (``new_traces``: no summary, so no span was stored) and those already
        remembered. Not the traces whose root has ended: they are rarely written again, and a
        kernel running cell after cell would otherwise hold thousands of them."""
        self._remember_span_ids(rows, new_traces)
        known, span_ids_of = self._summaries, self._span_ids_of
        if len(known) + len(summaries) > SUMMARIES_KEPT:
            self.forget()
        for trace_id, summary in summaries.items():
            if summary[13] and summary[4] is not None:  # root_parentless, end_ns: the root has ended
                known.pop(trace_id, None)
                span_ids_of.pop(trace_id, None)
            else:
                known[trace_id] = tuple(summary)

    def forget(self) -> None:
        """Forget every summary and span id (another writer, a prune)."""
        self._summaries.clear()
        self._span_ids_of.clear()
        self._span_ids_kept = 0

    def _remember_span_ids(self, rows: Sequence[Any], new_traces: set[str]) -> None:
        ids_of = self._span_ids_of
        if not ids_of and not new_traces:
            return
        for trace_id in new_traces:
            ids_of[trace_id] = set()
        get = ids_of.get
        kept = 0
        for row in rows:
            if row.__class__ is SpanGroup:
                ids = get(row.row[0])
                if ids is not None:
                    ids.update(row.members[::3])
                    kept += len(row)
            else:
                ids = get(row[0])
                if ids is not None:
                    ids.add(row[1])
                    kept += 1
        self._span_ids_kept += kept
        if self._span_ids_kept > SPAN_IDS_KEPT:
            ids_of.clear()
            self._span_ids_kept = 0
