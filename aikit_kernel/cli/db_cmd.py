"""``aikit db status|migrate``: the schema versions of the stores ([storage] url: PostgreSQL,
else the SQLite files of the data directory) and applying pending migrations."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from aikit_kernel.cli.common import error

if TYPE_CHECKING:
    from aikit_components.storage.settings import StorageSettings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``db`` subcommand (``status``, ``migrate``) to *subparsers*."""
    parser = subparsers.add_parser(
        "db",
        help="show or migrate the storage schemas",
        description=("Show the schema version of each store (state, sessions and artifacts, history, RAG) "
                     "against the version this aikit writes, or migrate them. The stores are in PostgreSQL "
                     "when [storage] url (or AIKIT_STORAGE__URL) is set, else SQLite files in the data "
                     "directory. Stores also migrate by themselves on first use."),
    )
    actions = parser.add_subparsers(dest="db_action", metavar="ACTION", required=True)
    show = actions.add_parser("status", help="print each store's schema version", description="Print each store's "
                              "schema version, the version this aikit writes, and what to do.")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=_status)
    run = actions.add_parser("migrate", help="apply pending schema migrations",
                             description="Apply every pending migration, each component in one transaction.")
    run.add_argument("--json", action="store_true", help="print JSON")
    run.set_defaults(handler=_migrate)


def _settings() -> tuple[StorageSettings, Path]:
    from aikit_components.config import Config, data_dir
    from aikit_components.storage.settings import StorageSettings

    return StorageSettings.from_config(Config.load()), data_dir()


def _status(args: argparse.Namespace) -> int:
    from aikit_components.errors import AikitError
    from aikit_components.storage import schema_admin

    try:
        storage, directory = _settings()
        report = schema_admin.status(storage, directory)
    except AikitError as exc:
        return error(exc.message)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"storage: {report['backend']} ({report['where']})")
    for row in report["components"]:
        print(f"  {row['component']:<9} schema {row['version']} (this aikit: {row['code_version']})  {row['state']}")
    newer = [r["component"] for r in report["components"] if r["version"] > r["code_version"]]
    return 1 if newer else 0


def _migrate(args: argparse.Namespace) -> int:
    from aikit_components.errors import AikitError
    from aikit_components.storage import schema_admin

    try:
        storage, directory = _settings()
        done = schema_admin.migrate(storage, directory)
    except AikitError as exc:
        return error(exc.message)
    if args.json:
        print(json.dumps(done, indent=2))
        return 0
    for row in done:
        change = "up to date" if row["from"] == row["to"] else f"migrated {row['from']} -> {row['to']}"
        print(f"{row['component']:<9} schema {row['to']}: {change}")
    return 0
