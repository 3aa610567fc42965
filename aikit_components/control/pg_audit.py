"""The audit ledger in PostgreSQL (``[storage] url``): one chain that every kernel and server on the
database appends to, in the tables ``aikit_audit_entries`` and ``aikit_audit_meta`` (component
``audit`` of the storage migrations).

Same entries, hashes, group commit and verification as the SQLite ledger (:mod:`.audit`); what differs
is where the rows go. An append reads the newest entry and writes the new ones and the head in one
transaction holding an advisory lock, so appends from many processes and machines form one chain
(the counterpart of SQLite's ``BEGIN IMMEDIATE``), and a failure leaves nothing half-written.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import AikitError
from ..storage.postgres import PostgresDatabase, advisory_key, from_qmark
from .audit import AuditLedger, chain_rows

_APPEND_LOCK = advisory_key("aikit", "audit")
_TABLES = re.compile(r"\b(entries|meta)\b")


def translate(sql: str) -> str:
    """A statement of the SQLite ledger on the PostgreSQL tables (``?`` placeholders become ``%s``)."""
    return from_qmark(_TABLES.sub(lambda m: f"aikit_audit_{m.group(1)}", sql))


class PostgresAuditLedger(AuditLedger):
    """The audit ledger in the database ``db`` (migrated on first use)."""

    uses_tail = False  # a tail file is a file of one machine; every entry goes to the database

    def __init__(self, db: PostgresDatabase, *, session: str | None = None) -> None:
        self.db = db
        self._start(db.where, session)  # named in messages where the SQLite ledger names its file
        db.ensure_schema("audit")  # a database newer than this code is refused here

    def _check_version(self) -> None:  # the storage migrations keep the version
        pass

    def _commit(self, batch: list[Any]) -> AikitError | None:
        """Chain and write ``batch`` in one transaction under the append lock; the error for its
        recorders, if it failed."""
        try:
            with self.db.transaction("append to the audit ledger", lock=_APPEND_LOCK) as conn:
                newest = conn.execute(translate("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1")).fetchone()
                rows, seq, prev = chain_rows(newest, batch)
                with conn.cursor() as cursor:
                    cursor.executemany(translate("INSERT INTO entries (seq, at, type, session, data, prev, hash) "
                                                 "VALUES (?, ?, ?, ?, ?, ?, ?)"), rows)
                conn.execute(translate("INSERT INTO meta (key, value) VALUES ('head', ?) "
                                       "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"), (f"{seq} {prev}",))
        except AikitError as exc:
            return exc
        return None

    def _fetchall(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.db.query("read the audit ledger", translate(sql), params)

    def _fetchone(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        rows = self._fetchall(sql, params)
        return rows[0] if rows else None

    def _close_connection(self) -> None:
        self.db.close()


def open_ledger(data_dir: Any, storage: Any, *, session: str | None = None) -> AuditLedger:
    """The ledger of this configuration: in PostgreSQL when ``[storage] url`` is set, else
    ``<data_dir>/audit.sqlite``."""
    if storage.postgres:
        return PostgresAuditLedger(storage.database(), session=session)
    return AuditLedger.in_dir(data_dir, session=session)


__all__ = ["PostgresAuditLedger", "open_ledger", "translate"]
