"""``aikit db status|migrate``: the schema versions of the stores ([storage] url: PostgreSQL,
else the SQLite files of the data directory) and applying pending migrations."""

from __future__ import annotations

import argparse
import json
from typing import Any

from aikit_kernel.cli.common import Subparsers, add_actions, add_command, reported


def register(subparsers: Subparsers) -> None:
    """Add the ``db`` subcommand (``status``, ``migrate``) to *subparsers*."""
    parser = add_command(
        subparsers, "db", "show or migrate the storage schemas",
        description=("Show the schema version of each store (state, sessions and artifacts, history, RAG) "
                     "against the version this aikit writes, or migrate them. The stores are in PostgreSQL "
                     "when [storage] url (or AIKIT_STORAGE__URL) is set, else SQLite files in the data "
                     "directory. Stores also migrate by themselves on first use."),
        examples=("aikit db status", "aikit db migrate"))
    actions = add_actions(parser, "db_action")
    show = add_command(actions, "status", "print each store's schema version", description="Print each store's "
                       "schema version, the version this aikit writes, and what to do.",
                       examples=("aikit db status", "aikit db status --json"), handler=_status)
    show.add_argument("--json", action="store_true", help="print JSON")
    run = add_command(actions, "migrate", "apply pending schema migrations",
                      description="Apply every pending migration, each component in one transaction.",
                      examples=("aikit db migrate",), handler=_migrate)
    run.add_argument("--json", action="store_true", help="print JSON")


def _ask(args: argparse.Namespace, action: str) -> Any:
    """What ``schema_admin.<action>`` answers for the configured stores; None when it was printed
    as JSON (``--json``), which is all there is to do then."""
    from aikit_components.config import Config, data_dir
    from aikit_components.storage import schema_admin
    from aikit_components.storage.settings import StorageSettings

    answer = getattr(schema_admin, action)(StorageSettings.from_config(Config.load()), data_dir())
    if args.json:
        print(json.dumps(answer, indent=2))
        return None
    return answer


@reported
def _status(args: argparse.Namespace) -> int:
    report = _ask(args, "status")
    if report is None:
        return 0
    print(f"storage: {report['backend']} ({report['where']})")
    for row in report["components"]:
        print(f"  {row['component']:<9} schema {row['version']} (this aikit: {row['code_version']})  {row['state']}")
    newer = [r["component"] for r in report["components"] if r["version"] > r["code_version"]]
    return 1 if newer else 0


@reported
def _migrate(args: argparse.Namespace) -> int:
    done = _ask(args, "migrate")
    if done is None:
        return 0
    for row in done:
        change = "up to date" if row["from"] == row["to"] else f"migrated {row['from']} -> {row['to']}"
        print(f"{row['component']:<9} schema {row['to']}: {change}")
    return 0
