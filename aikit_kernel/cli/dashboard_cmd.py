"""``aikit dashboard``: serve the local runs dashboard (see :mod:`aikit_kernel.dashboard`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aikit_kernel.cli.common import Subparsers, add_command, error

EXAMPLES = ("aikit dashboard                      http://127.0.0.1:8080/, this machine only",
            "aikit dashboard --port 0             any free port (the URL is printed)",
            "aikit dashboard --host 192.168.1.20 --new-token",
            "                                     reachable from the LAN; open the printed URL with its ?token=")
NOTES = ("Binding an address other than loopback needs a token (--token, --new-token or [dashboard] token in "
         "aikit.toml); every request must present it. Settings: [dashboard] host, port and token; the span store "
         "is [telemetry] store_path, else <data dir>/traces.sqlite; mission run records are read from "
         "<data dir>/runs.")


def register(subparsers: Subparsers) -> None:
    """Add the ``dashboard`` subcommand to *subparsers*."""
    parser = add_command(
        subparsers, "dashboard", "serve a local web dashboard of recent runs and their traces",
        description="Serve a local web app over the span store and the run records: recent runs (cells, scripts, "
                    "agents, workflows, missions) with status, duration, tokens and cost, errors first; a run's "
                    "trace as a waterfall; live updates while runs go. " + NOTES,
        examples=EXAMPLES, handler=_dashboard)
    parser.add_argument("--host", help="address to bind (default [dashboard] host, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to bind, 0 for any free one (default [dashboard] port, 8080)")
    token = parser.add_mutually_exclusive_group()
    token.add_argument("--token", metavar="T", help="require this access token (default [dashboard] token)")
    token.add_argument("--new-token", action="store_true", help="require a new random token, printed at start")
    parser.add_argument("--store", metavar="PATH", help="the span store file (default: see above)")


def _dashboard(args: argparse.Namespace) -> int:
    from aikit_components.config import Config, data_dir
    from aikit_components.errors import AikitError
    from aikit_components.telemetry import TelemetrySettings, open_span_store
    from aikit_kernel.dashboard import AccessError, AccessPolicy, DashboardServer, new_token

    try:
        config = Config.load()
        directory = data_dir()
    except (AikitError, OSError, ValueError) as exc:
        return error(f"dashboard: {exc}")
    host = args.host or str(config.get("dashboard.host") or "127.0.0.1")
    port = args.port if args.port is not None else int(config.get("dashboard.port") or 8080)
    if not 0 <= port <= 65535:
        return error(f"dashboard: --port must be between 0 and 65535, got {port}", 2)
    token = new_token() if args.new_token else (args.token or config.secret("dashboard.token") or None)
    store = Path(args.store or config.get("telemetry.store_path") or directory / "traces.sqlite").expanduser()
    settings = TelemetrySettings.from_config(config, directory)
    try:
        policy = AccessPolicy.for_bind(host, port, token)
        opened = (lambda: open_span_store(settings)) if settings.storage is not None and not args.store else store
        server = DashboardServer(opened, directory / "runs", policy)
    except AccessError as exc:
        return error(f"dashboard: {exc}", 2)
    except OSError as exc:
        if exc.filename is not None and str(store).startswith(str(exc.filename)):  # the store's directory
            return error(f"dashboard: cannot open the span store {store}: {exc.strerror or exc}")
        return error(f"dashboard: cannot serve on {host}:{port}: {exc.strerror or exc}")
    except Exception as exc:  # noqa: BLE001 - sqlite3 errors: a bad --store path, a corrupt file
        return error(f"dashboard: cannot open the span store {store}: {exc}")
    url = server.url + (f"?token={policy.token}" if policy.token else "")
    print(f"aikit dashboard: serving {url}", flush=True)
    print(f"  span store: {store}; run records: {directory / 'runs'}; Ctrl-C to stop", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print(file=sys.stderr)
    return 0
