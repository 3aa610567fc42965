"""``aikit state``, ``aikit sessions`` and ``aikit artifacts``: the data directory's stores from a shell.

The same stores Lua's ``State``, ``Session`` and ``Artifact`` use (in ``$AIKIT_DATA_DIR``), so a
script can read what a notebook left and set what a mission will read. Values are JSON on the
command line (``aikit state set k '{"n": 1}'``; text that is not JSON is stored as a string).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from aikit_kernel.cli.common import error

STATE_EPILOG = """examples:
  aikit state set greeting '"hello"'          JSON values (text that is not JSON is a string)
  aikit state set limits '{"max": 3}' --scope user:alice
  aikit state get limits --scope user:alice   prints {"max": 3}
  aikit state list --prefix lim
  aikit state delete greeting"""
SESSIONS_EPILOG = """examples:
  aikit sessions list --status active
  aikit sessions show 20260101-120000-ab12cd   the session and its artifacts, as JSON"""
ARTIFACTS_EPILOG = """examples:
  aikit artifacts list --prefix report
  aikit artifacts get report.md > report.md
  aikit artifacts get report.md --version 2 -o old.md"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``state``, ``sessions`` and ``artifacts`` subcommands to *subparsers*."""
    fmt = argparse.RawDescriptionHelpFormatter
    state = subparsers.add_parser("state", help="read and write State (the key-value store) from the shell",
                                  description="Get, set, list and delete State keys in the data directory.",
                                  epilog=STATE_EPILOG, formatter_class=fmt)
    actions = state.add_subparsers(dest="state_action", metavar="ACTION", required=True)
    for name, helptext in (("get", "print a key's value as JSON"), ("set", "set a key to a JSON value"),
                           ("list", "list the keys of a scope"), ("delete", "delete a key")):
        action = actions.add_parser(name, help=helptext, description=helptext, epilog=STATE_EPILOG,
                                    formatter_class=fmt)
        if name != "list":
            action.add_argument("key")
        if name == "set":
            action.add_argument("value", help="a JSON value (text that is not JSON is stored as a string)")
            action.add_argument("--ttl", type=float, help="expire after this many seconds")
        if name == "list":
            action.add_argument("--prefix", default="", help="only keys starting with this")
        action.add_argument("--scope", default="global",
                            help="global (default), session (with --session), user:ID, agent:ID, ...")
        action.add_argument("--session", help="the session id scope 'session' refers to")
        action.set_defaults(handler=_state)

    sessions = subparsers.add_parser("sessions", help="list sessions and show one",
                                     description="List the sessions recorded in the data directory, or show one.",
                                     epilog=SESSIONS_EPILOG, formatter_class=fmt)
    actions = sessions.add_subparsers(dest="sessions_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the most recent sessions", epilog=SESSIONS_EPILOG, formatter_class=fmt)
    listing.add_argument("--status", choices=("active", "completed", "failed", "interrupted"))
    listing.add_argument("--limit", type=int, default=20, help="at most this many (default: 20)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=_sessions_list)
    show = actions.add_parser("show", help="one session and its artifacts (JSON)", epilog=SESSIONS_EPILOG,
                              formatter_class=fmt)
    show.add_argument("session_id")
    show.set_defaults(handler=_sessions_show)

    artifacts = subparsers.add_parser("artifacts", help="list artifacts and get one's content",
                                      description="List the artifacts stored in the data directory, or write one out.",
                                      epilog=ARTIFACTS_EPILOG, formatter_class=fmt)
    actions = artifacts.add_subparsers(dest="artifacts_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the artifacts (latest version of each name)", epilog=ARTIFACTS_EPILOG,
                                 formatter_class=fmt)
    listing.add_argument("--session", help="only those of this session")
    listing.add_argument("--prefix", help="only names starting with this")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=_artifacts_list)
    get = actions.add_parser("get", help="write an artifact's content to stdout or a file", epilog=ARTIFACTS_EPILOG,
                             formatter_class=fmt)
    get.add_argument("name")
    get.add_argument("--version", type=int, help="that version (default: the latest)")
    get.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    get.set_defaults(handler=_artifacts_get)


def _reported(fn: Any) -> Any:
    """Turn an aikit error into ``aikit: error: ...`` and exit status 1."""
    def wrapper(args: argparse.Namespace) -> int:
        from aikit_components.errors import AikitError, NotFound

        try:
            return int(fn(args))
        except NotFound as exc:
            return error(exc.message, 3)
        except AikitError as exc:
            return error(exc.message, 1)
    return wrapper


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


@_reported
def _state(args: argparse.Namespace) -> int:
    from aikit_components.errors import NotFound
    from aikit_components.state import State

    with State.open_default(session_id=args.session) as state:
        scope = state.resolve_scope(args.scope)
        if args.state_action == "get":
            if not state.exists(scope, args.key):
                raise NotFound(f"no key {args.key!r} in scope {args.scope!r} (see `aikit state list --scope "
                               f"{args.scope}`)")
            print(_dump(state.get(scope, args.key)))
        elif args.state_action == "set":
            try:
                value = json.loads(args.value)
            except ValueError:
                value = args.value
            state.set(scope, args.key, value, ttl=args.ttl)
        elif args.state_action == "list":
            for key in state.keys(scope, args.prefix):
                print(key)
        elif not state.delete(scope, args.key):
            raise NotFound(f"no key {args.key!r} in scope {args.scope!r}")
    return 0


def _when(timestamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp)) if timestamp else "-"


@_reported
def _sessions_list(args: argparse.Namespace) -> int:
    from aikit_components.config import data_dir
    from aikit_components.sessions import SessionStore

    with SessionStore(data_dir()) as store:
        found = store.list(status=args.status, limit=args.limit)
    if args.json:
        print(_dump([s.to_dict() for s in found]))
        return 0
    for info in found:
        print(f"{info.id}  {info.status:<9}  {_when(info.created_at)}  {info.name or ''}")
    return 0


@_reported
def _sessions_show(args: argparse.Namespace) -> int:
    from aikit_components.artifacts import ArtifactStore
    from aikit_components.config import data_dir
    from aikit_components.sessions import SessionStore

    with SessionStore(data_dir()) as store:
        info = store.get(args.session_id)
    with ArtifactStore(data_dir()) as artifacts:
        produced = artifacts.list(session_id=info.id)
    print(json.dumps({**info.to_dict(), "artifacts": [a.to_dict() for a in produced]}, indent=2, ensure_ascii=False,
                     default=str))
    return 0


@_reported
def _artifacts_list(args: argparse.Namespace) -> int:
    from aikit_components.artifacts import ArtifactStore
    from aikit_components.config import data_dir

    with ArtifactStore(data_dir()) as store:
        found = store.list(session_id=args.session, prefix=args.prefix)
    if args.json:
        print(_dump([a.to_dict() for a in found]))
        return 0
    for info in found:
        print(f"{info.name}  v{info.version}  {info.size} bytes  {info.mime}  {_when(info.created_at)}")
    return 0


@_reported
def _artifacts_get(args: argparse.Namespace) -> int:
    from aikit_components.artifacts import ArtifactStore
    from aikit_components.config import data_dir

    with ArtifactStore(data_dir()) as store:
        _info, content = store.get(args.name, args.version)
    if args.output:
        with open(args.output, "wb") as f:
            f.write(content)
    else:
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
    return 0
