"""``aikit db status|migrate``: the schema versions of the stores ([storage] url: PostgreSQL,
else the SQLite files of the data directory) and applying pending migrations."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from aikit_kernel.cli.common import Subparsers, add_actions, add_command, reported

if TYPE_CHECKING:
    from aikit_components.storage.settings import StorageSettings


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


def _settings() -> tuple[StorageSettings, Path]:
    from aikit_components.config import Config, data_dir
    from aikit_components.storage.settings import StorageSettings

    return StorageSettings.from_config(Config.load()), data_dir()


@reported
def _status(args: argparse.Namespace) -> int:
    from aikit_components.storage import schema_admin

    storage, directory = _settings()
    report = schema_admin.status(storage, directory)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"storage: {report['backend']} ({report['where']})")
    for row in report["components"]:
        print(f"  {row['component']:<9} schema {row['version']} (this aikit: {row['code_version']})  {row['state']}")
    newer = [r["component"] for r in report["components"] if r["version"] > r["code_version"]]
    return 1 if newer else 0


@reported
def _migrate(args: argparse.Namespace) -> int:
    from aikit_components.storage import schema_admin

    storage, directory = _settings()
    done = schema_admin.migrate(storage, directory)
    if args.json:
        print(json.dumps(done, indent=2))
        return 0
    for row in done:
        change = "up to date" if row["from"] == row["to"] else f"migrated {row['from']} -> {row['to']}"
        print(f"{row['component']:<9} schema {row['to']}: {change}")
    return 0
