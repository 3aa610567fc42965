"""``aikit audit list|verify|export``: read and check the audit ledger (``<data_dir>/audit.sqlite``, or
the database of ``[storage] url``).

- ``list [--since WHEN] [--type TYPE ...] [--json]``: entries, oldest first. ``WHEN`` is a duration
  back from now (``30m``, ``2h``, ``7d``), an ISO date or time (``2026-12-06``,
  ``2026-12-06T08:00``, UTC unless it says otherwise) or Unix seconds.
- ``verify``: walk the hash chain; exit 0 when it is intact, 1 naming the first entry that was
  altered, removed or reordered (and a truncated tail).
- ``export [--since WHEN]``: every entry as JSON lines, with its hashes, for another system to keep.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from aikit_kernel.cli.common import error

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``audit`` subcommand (list, verify, export) to *subparsers*."""
    parser = subparsers.add_parser("audit", help="list, verify and export the audit ledger",
                                   description="The hash-chained audit ledger of the data directory: what ran, "
                                               "who approved it, what was denied (docs/security.md).")
    parser.add_argument("--data-dir", metavar="DIR", help="the data directory (default: AIKIT_DATA_DIR or "
                                                          "~/.local/share/aikit)")
    actions = parser.add_subparsers(dest="audit_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="entries, oldest first")
    listing.add_argument("--since", metavar="WHEN", help="only entries since WHEN (30m, 2h, 7d, an ISO date or time)")
    listing.add_argument("--type", action="append", default=[], metavar="TYPE",
                         help="only entries of this type or type prefix (repeatable: tool, process, http, ...)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(handler=_list)
    verify = actions.add_parser("verify", help="check the hash chain (exit 0 when intact)")
    verify.add_argument("--json", action="store_true", help="print {ok, entries, head, problem, seq} as JSON")
    verify.set_defaults(handler=_verify)
    export = actions.add_parser("export", help="every entry as JSON lines")
    export.add_argument("--since", metavar="WHEN", help="only entries since WHEN")
    export.set_defaults(handler=_export)


def parse_since(text: str, now: float | None = None) -> float:
    """``WHEN`` of ``--since`` as Unix seconds; ValueError with a message naming the forms."""
    now = time.time() if now is None else now
    match = _DURATION.match(text)
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since {text!r}: give a duration back from now (30m, 2h, 7d), an ISO date or time "
                         "(2026-12-06, 2026-12-06T08:00) or Unix seconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _open(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from aikit_components.config import Config, data_dir
    from aikit_components.control.audit import FILE_NAME, AuditLedger
    from aikit_components.storage.settings import StorageSettings

    storage = StorageSettings.from_config(Config.load())
    if storage.postgres:  # [storage] url: the ledger every kernel on that database appends to
        from aikit_components.control.pg_audit import PostgresAuditLedger

        ledger = PostgresAuditLedger(storage.database())
        return ledger, ledger.path
    directory = Path(args.data_dir).expanduser() if args.data_dir else data_dir()
    path = directory / FILE_NAME
    if not path.exists():
        return None, path
    return AuditLedger(path), path


def _since(args: argparse.Namespace) -> float | None:
    return parse_since(args.since) if getattr(args, "since", None) else None


def _list(args: argparse.Namespace) -> int:
    from aikit_components.errors import AikitError

    try:
        since = _since(args)
        ledger, path = _open(args)
    except (ValueError, AikitError) as exc:
        return error(str(exc))
    if ledger is None:
        print(f"no audit ledger yet ({path})", file=sys.stderr)
        return 0
    with_types = tuple(args.type)
    for entry in ledger.entries(since, with_types):
        if args.json:
            print(json.dumps(entry.to_dict(), ensure_ascii=False, default=str))
            continue
        when = datetime.fromtimestamp(entry.at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        fields = " ".join(f"{k}={_short(v)}" for k, v in sorted(entry.data.items()) if k != "config")
        print(f"{entry.seq:>6}  {when}  {entry.type:<18} {fields}")
    ledger.close()
    return 0


def _short(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _verify(args: argparse.Namespace) -> int:
    from aikit_components.errors import AikitError

    try:
        ledger, path = _open(args)
    except AikitError as exc:
        return error(str(exc))
    if ledger is None:
        print(f"no audit ledger yet ({path}): nothing to verify")
        return 0
    result = ledger.verify()
    ledger.close()
    if args.json:
        print(json.dumps(result.to_dict()))
    elif result.ok:
        print(f"audit ledger intact: {result.entries} entries, head {result.head}")
    if not result.ok:
        return error(f"audit ledger {path} is not intact: {result.problem}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from aikit_components.errors import AikitError

    try:
        since = _since(args)
        ledger, _ = _open(args)
    except (ValueError, AikitError) as exc:
        return error(str(exc))
    if ledger is None:
        return 0
    for entry in ledger.entries(since):
        sys.stdout.write(json.dumps(entry.to_dict(), ensure_ascii=False, sort_keys=True, default=str) + "\n")
    ledger.close()
    return 0
