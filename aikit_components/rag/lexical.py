"""Lexical retrieval: BM25 over the chunks, by SQLite's FTS5.

FTS5 (part of SQLite, which Python ships) keeps an inverted index in the collection's own
database, updated in the same transaction as the chunks (triggers), so it is incremental,
durable and never out of step with the stored text; ``bm25()`` ranks with k1 = 1.2, b = 0.75.
A separate BM25 library (bm25s, rank-bm25) would hold a second copy of the corpus in memory and
rebuild it on every upsert or delete.

The tokenizer is ``porter unicode61``: Unicode-aware words, case- and accent-folded, English
stemming. A user's query is never FTS5 syntax: its words are quoted and OR-ed, so any text
(``"what's C++?"``) is a valid query.
"""

from __future__ import annotations

import re

__all__ = ["DESCRIPTION", "FTS_SCHEMA", "match_expression"]

DESCRIPTION = "BM25 (SQLite FTS5, porter stemming)"

FTS_SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    text, content='chunks', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2');
CREATE TRIGGER IF NOT EXISTS chunks_ai AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS chunks_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
"""

_WORD = re.compile(r"\w+", re.UNICODE)
MAX_QUERY_TERMS = 64


def match_expression(query: str) -> str | None:
    """An FTS5 MATCH expression for free text: each distinct word quoted, OR-ed (None when the
    query has no word at all)."""
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(query)))[:MAX_QUERY_TERMS]
    if not words:
        return None
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words)
