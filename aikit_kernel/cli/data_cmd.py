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
from collections.abc import Callable
from typing import Any, TypeVar

from aikit_kernel.cli.common import Subparsers, add_actions, add_command, print_records, reported

T = TypeVar("T")

STATE_EXAMPLES = ("aikit state set greeting '\"hello\"'          JSON values (text that is not JSON is a string)",
                  "aikit state set limits '{\"max\": 3}' --scope user:alice",
                  "aikit state get limits --scope user:alice   prints {\"max\": 3}",
                  "aikit state list --prefix lim",
                  "aikit state delete greeting")
SESSIONS_EXAMPLES = ("aikit sessions list --status active",
                     "aikit sessions show 20260101-120000-ab12cd   the session and its artifacts, as JSON")
ARTIFACTS_EXAMPLES = ("aikit artifacts list --prefix report",
                      "aikit artifacts get report.md > report.md",
                      "aikit artifacts get report.md --version 2 -o old.md")
#: ``aikit state ACTION``: (action, one-line help).
STATE_ACTIONS = (("get", "print a key's value as JSON"), ("set", "set a key to a JSON value"),
                 ("list", "list the keys of a scope"), ("delete", "delete a key"))


def register(subparsers: Subparsers) -> None:
    """Add the ``state``, ``sessions`` and ``artifacts`` subcommands to *subparsers*."""
    state = add_command(subparsers, "state", "read and write State (the key-value store) from the shell",
                        description="Get, set, list and delete State keys in the data directory.",
                        examples=STATE_EXAMPLES)
    actions = add_actions(state, "state_action")
    for name, helptext in STATE_ACTIONS:
        action = add_command(actions, name, helptext, examples=STATE_EXAMPLES, handler=_state)
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

    sessions = add_command(subparsers, "sessions", "list sessions and show one",
                           description="List the sessions recorded in the data directory, or show one.",
                           examples=SESSIONS_EXAMPLES)
    actions = add_actions(sessions, "sessions_action")
    listing = add_command(actions, "list", "the most recent sessions", examples=SESSIONS_EXAMPLES,
                          handler=_sessions_list)
    listing.add_argument("--status", choices=("active", "completed", "failed", "interrupted"))
    listing.add_argument("--limit", type=int, default=20, help="at most this many (default: 20)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    show = add_command(actions, "show", "one session and its artifacts (JSON)", examples=SESSIONS_EXAMPLES,
                       handler=_sessions_show)
    show.add_argument("session_id")

    artifacts = add_command(subparsers, "artifacts", "list artifacts and get one's content",
                            description="List the artifacts stored in the data directory, or write one out.",
                            examples=ARTIFACTS_EXAMPLES)
    actions = add_actions(artifacts, "artifacts_action")
    listing = add_command(actions, "list", "the artifacts (latest version of each name)",
                          examples=ARTIFACTS_EXAMPLES, handler=_artifacts_list)
    listing.add_argument("--session", help="only those of this session")
    listing.add_argument("--prefix", help="only names starting with this")
    listing.add_argument("--json", action="store_true", help="print JSON")
    get = add_command(actions, "get", "write an artifact's content to stdout or a file", examples=ARTIFACTS_EXAMPLES,
                      handler=_artifacts_get)
    get.add_argument("name")
    get.add_argument("--version", type=int, help="that version (default: the latest)")
    get.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


@reported
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


def _found(get: Callable[[], T], message: str) -> T:
    """``get()``; when it finds nothing, NotFound with ``message`` (which names the command that
    lists what exists, where the component's own message names its Python/Lua ``list()``)."""
    from aikit_components.errors import NotFound

    try:
        return get()
    except NotFound:
        raise NotFound(message) from None


def _when(timestamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp)) if timestamp else "-"


@reported
def _sessions_list(args: argparse.Namespace) -> int:
    from aikit_components.config import data_dir
    from aikit_components.sessions import SessionStore

    with SessionStore(data_dir()) as store:
        found = [s.to_dict() for s in store.list(status=args.status, limit=args.limit)]
    if not args.json:
        found = [{**s, "created": _when(s["created_at"])} for s in found]
    print_records(found, ("id", "status", "created", "name"), args.json)
    return 0


@reported
def _sessions_show(args: argparse.Namespace) -> int:
    from aikit_components.artifacts import ArtifactStore
    from aikit_components.config import data_dir
    from aikit_components.sessions import SessionStore

    with SessionStore(data_dir()) as store:
        info = _found(lambda: store.get(args.session_id),
                      f"no session with id {args.session_id!r} (`aikit sessions list` shows them)")
    with ArtifactStore(data_dir()) as artifacts:
        produced = artifacts.list(session_id=info.id)
    print(json.dumps({**info.to_dict(), "artifacts": [a.to_dict() for a in produced]}, indent=2, ensure_ascii=False,
                     default=str))
    return 0


@reported
def _artifacts_list(args: argparse.Namespace) -> int:
    from aikit_components.artifacts import ArtifactStore
    from aikit_components.config import data_dir

    with ArtifactStore(data_dir()) as store:
        found = [a.to_dict() for a in store.list(session_id=args.session, prefix=args.prefix)]
    if not args.json:
        found = [{**a, "v": f"v{a['version']}", "bytes": f"{a['size']} bytes", "created": _when(a["created_at"])}
                 for a in found]
    print_records(found, ("name", "v", "bytes", "mime", "created"), args.json)
    return 0


@reported
def _artifacts_get(args: argparse.Namespace) -> int:
    from aikit_components.artifacts import ArtifactStore
    from aikit_components.config import data_dir

    with ArtifactStore(data_dir()) as store:
        _info, content = _found(lambda: store.get(args.name, args.version),
                                f"no artifact named {args.name!r}"
                                + (f" with version {args.version}" if args.version is not None else "")
                                + " (`aikit artifacts list` shows them)")
    if args.output:
        with open(args.output, "wb") as f:
            f.write(content)
    else:
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
    return 0
