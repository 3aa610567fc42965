"""The dashboard's HTTP server.

Built on the standard library's ``ThreadingHTTPServer``: the app is a handful of GET routes and one
server-sent event stream for a single user, which a thread per connection serves well; it needs no
async framework, adds no dependency, and keeps the server's whole behaviour (access checks
included) in this file. Every call into the span store runs on one dedicated thread
(:class:`StoreThread`), so the store is used as a single-threaded object whatever its
implementation allows.

Routes (GET and HEAD only):

- ``/``, ``/app.js``, ``/app.css``: the page;
- ``/api/runs?kind=&status=&agent=&errors_first=1&limit=50``: recent runs as JSON;
- ``/api/runs/trace/<trace id>/waterfall`` and ``/api/runs/record/<run id>/waterfall``: a run's
  waterfall (HTML fragment); ``/api/traces/<trace id>``: its spans as JSON;
- ``/trace/<trace id>``: a standalone page with the waterfall (no script needed);
- ``/api/events``: server-sent events, ``hello`` on connect then ``change`` with
  ``{"traces": [...], "records": bool, "full": bool}`` whenever runs change.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from html import escape
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from aikit_components.telemetry.records import TraceSummary
from aikit_components.telemetry.store import SpanStore
from aikit_components.telemetry.waterfall import render_waterfall

from .access import AccessPolicy
from .feed import ChangeFeed
from .runs import RunFilter, merge_runs, read_run_record, read_run_records, record_run, record_spans, trace_run

log = logging.getLogger("aikit.dashboard")

T = TypeVar("T")

_TRACE_ID = re.compile(r"^[0-9a-f]{8,32}$")
_RUN_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_HEARTBEAT_S = 15.0
_STATIC = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript; charset=utf-8"),
           "/app.css": ("app.css", "text/css; charset=utf-8")}
_SECURITY_HEADERS = {
    # Inline styles are needed by the waterfall's style attributes; scripts only from /app.js.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class StoreThread:
    """Runs every span store call on one thread that owns the store."""

    def __init__(self, open_store: Callable[[], SpanStore]) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="aikit-dashboard-store")
        self._store: SpanStore = self._pool.submit(open_store).result()

    def call(self, fn: Callable[[SpanStore], T], timeout: float = 30.0) -> T:
        """``fn(store)`` on the store's thread."""
        return self._pool.submit(fn, self._store).result(timeout=timeout)

    def close(self) -> None:
        """Close the store and stop the thread."""
        try:
            self._pool.submit(self._store.close).result(timeout=10)
        finally:
            self._pool.shutdown(wait=False)


class DashboardServer:
    """The dashboard over the span store at ``store_path`` and the run records in ``runs_dir``,
    bound to ``host``:``port`` (0 picks a free port) with ``policy``'s access rules."""

    def __init__(self, store_path: Path | Callable[[], Any], runs_dir: Path | None, policy: AccessPolicy, *,
                 poll_interval: float = 0.5) -> None:
        # a path (a SQLite store) or what opens the store (the PostgreSQL one of [storage] url)
        self.store = StoreThread(store_path if callable(store_path) else (lambda: SpanStore(store_path)))
        self.runs_dir = runs_dir
        try:
            self.feed = ChangeFeed(lambda cursor: self.store.call(lambda s: s.changed_since(cursor)),
                                   self.store.call(lambda s: s.change_cursor()), runs_dir, poll_interval)
            self.httpd = _HTTPServer((policy.host, policy.port), _Handler, self)
        except BaseException:  # the port is taken, say: do not leave the store open
            self.store.close()
            raise
        self.policy = AccessPolicy(policy.host, self.httpd.server_address[1], policy.token)

    @property
    def url(self) -> str:
        """The base URL the dashboard is served at (without the token)."""
        host = self.policy.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.policy.port}/"

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown` (from another thread) or Ctrl-C."""
        self.feed.start()
        try:
            self.httpd.serve_forever(poll_interval=0.5)
        finally:
            self.close()

    def shutdown(self) -> None:
        """Stop serving (call from another thread than :meth:`serve_forever`)."""
        self.feed.stop()
        self.httpd.shutdown()

    def close(self) -> None:
        """Release the socket, the feed and the store."""
        self.feed.stop()
        self.httpd.server_close()
        self.store.close()

    # ---- data ---------------------------------------------------------------------------------

    def runs(self, wanted: RunFilter) -> list[dict[str, Any]]:
        """The runs the list shows."""
        # Filters the store does not apply (kind, running, ok) act on a deeper window of traces.
        depth = wanted.limit if wanted.kind is None and wanted.status in (None, "error") else min(4 * wanted.limit, 1000)
        errors_only = wanted.status == "error"
        summaries = self.store.call(lambda s: s.traces(limit=depth, agent=wanted.agent, errors_only=errors_only))
        now = time.time_ns()
        traced = self.store.call(lambda s: _traced_run_ids(s, summaries))
        records = [record_run(r) for r in read_run_records(self.runs_dir, wanted.limit) if r["run_id"] not in traced]
        return merge_runs((trace_run(s, now) for s in summaries), records, wanted)

    def run_waterfall(self, source: str, run_id: str) -> str:
        """A run's waterfall; KeyError when unknown."""
        if source == "trace":
            spans = self.store.call(lambda s: s.trace(run_id))
            return render_waterfall(spans, title=spans[0].name if spans else run_id)
        record = read_run_record(self.runs_dir, run_id)
        if isinstance(record.get("trace_id"), str):
            try:
                spans = self.store.call(lambda s: s.trace(record["trace_id"]))
                return render_waterfall(spans, title=spans[0].name if spans else run_id)
            except KeyError:
                pass  # the trace was pruned or tracing was off: show the record's steps
        spans = record_spans(record)
        return render_waterfall(spans, title=f"{spans[0].name} (run {run_id}, from its run record)")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], app: DashboardServer) -> None:
        self.app = app
        infos = socket.getaddrinfo(address[0], address[1], type=socket.SOCK_STREAM)
        self.address_family = infos[0][0] if infos else socket.AF_INET
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "aikit-dashboard"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s %s", self.address_string(), format % args)

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch(head=False)

    def _not_allowed(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"only GET and HEAD\n", "text/plain", extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed  # noqa: N815

    # ---- dispatch -----------------------------------------------------------------------------

    def _dispatch(self, head: bool) -> None:
        app = self.server.app
        policy = app.policy
        if not policy.host_allowed(self.headers.get("Host")):
            self._send(HTTPStatus.FORBIDDEN, b"this dashboard answers only to loopback host names\n", "text/plain")
            return
        token, in_url = policy.presented_token(self.path, self.headers)
        if not policy.token_ok(token):
            self._send(HTTPStatus.UNAUTHORIZED, b"a valid dashboard token is needed: open the URL printed by "
                       b"`aikit dashboard` (it ends with ?token=...)\n", "text/plain",
                       extra={"WWW-Authenticate": 'Bearer realm="aikit dashboard"'})
            return
        parts = urlsplit(self.path)
        if in_url and policy.token is not None:  # keep the token in a cookie, out of the address bar
            query = "&".join(p for p in parts.query.split("&") if not p.startswith("token="))
            self._send(HTTPStatus.SEE_OTHER, b"", "text/plain",
                       extra={"Location": parts.path + (f"?{query}" if query else ""),
                              "Set-Cookie": policy.set_cookie_header()})
            return
        path = parts.path
        params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            self._route(path, params, head)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:  # noqa: BLE001 - one bad request must not take the server down
            log.exception("dashboard: %s failed", path)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {exc}\n".encode(), "text/plain")

    def _route(self, path: str, params: dict[str, str], head: bool) -> None:
        app = self.server.app
        if path in _STATIC:
            name, mime = _STATIC[path]
            body = resources.files(__package__).joinpath("static", name).read_bytes()
            self._send(HTTPStatus.OK, body, mime, head=head)
        elif path == "/api/runs":
            wanted = _run_filter(params)
            if isinstance(wanted, str):
                self._send(HTTPStatus.BAD_REQUEST, wanted.encode() + b"\n", "text/plain")
                return
            body = json.dumps({"runs": app.runs(wanted), "now": time.time()}).encode()
            self._send(HTTPStatus.OK, body, "application/json", head=head)
        elif path == "/api/events":
            self._events(head)
        elif m := re.fullmatch(r"/api/runs/(trace|record)/([^/]+)/waterfall", path):
            source, run_id = m.group(1), unquote(m.group(2))
            if not _valid_id(source, run_id):
                self._send(HTTPStatus.BAD_REQUEST, b"malformed run id\n", "text/plain")
                return
            try:
                html = app.run_waterfall(source, run_id)
            except KeyError:
                self._send(HTTPStatus.NOT_FOUND, f"no run {run_id}\n".encode(), "text/plain")
                return
            self._send(HTTPStatus.OK, html.encode(), "text/html; charset=utf-8", head=head)
        elif m := re.fullmatch(r"/api/traces/([^/]+)", path):
            self._trace_json(m.group(1), head)
        elif m := re.fullmatch(r"/trace/([^/]+)", path):
            self._trace_page(m.group(1), head)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    def _trace_json(self, trace_id: str, head: bool) -> None:
        if not _TRACE_ID.match(trace_id):
            self._send(HTTPStatus.BAD_REQUEST, b"malformed trace id\n", "text/plain")
            return
        try:
            spans = self.server.app.store.call(lambda s: s.trace(trace_id))
        except KeyError:
            self._send(HTTPStatus.NOT_FOUND, f"no trace {trace_id}\n".encode(), "text/plain")
            return
        body = json.dumps({"trace_id": spans[0].trace_id if spans else trace_id,
                           "spans": [asdict(s) for s in spans]}, default=str).encode()
        self._send(HTTPStatus.OK, body, "application/json", head=head)

    def _trace_page(self, trace_id: str, head: bool) -> None:
        if not _TRACE_ID.match(trace_id):
            self._send(HTTPStatus.BAD_REQUEST, b"malformed trace id\n", "text/plain")
            return
        try:
            fragment = self.server.app.run_waterfall("trace", trace_id)
        except KeyError:
            self._send(HTTPStatus.NOT_FOUND, f"no trace {trace_id}\n".encode(), "text/plain")
            return
        page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>trace {escape(trace_id)}</title>'
                f'</head><body style="margin:16px">{fragment}</body></html>')
        self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8", head=head)

    # ---- server-sent events -------------------------------------------------------------------

    def _events(self, head: bool) -> None:
        feed = self.server.app.feed
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        for name, value in _SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()
        self.close_connection = True
        if head:
            return
        seq = feed.seq
        self._event("hello", {"seq": seq})
        while not feed.stopped:
            newest, changes = feed.wait(seq, _HEARTBEAT_S)
            if changes is None:  # fell behind the feed's history: the page reloads everything
                self._event("change", {"traces": [], "records": True, "full": True})
            elif changes:
                traces = sorted({t for c in changes for t in c.traces})
                self._event("change", {"traces": traces, "records": any(c.records for c in changes), "full": False})
            else:
                self.wfile.write(b": keep-alive\n\n")  # also notices a client that went away
                self.wfile.flush()
            seq = newest

    def _event(self, name: str, data: dict[str, Any]) -> None:
        self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()

    # ---- responses ----------------------------------------------------------------------------

    def _send(self, status: HTTPStatus, body: bytes, mime: str, *, head: bool = False,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", mime)
        self.send_header("Content-Length", str(len(body)))
        for name, value in {**_SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)


def _valid_id(source: str, run_id: str) -> bool:
    return bool(_TRACE_ID.match(run_id) if source == "trace" else _RUN_ID.match(run_id))


def _run_filter(params: dict[str, str]) -> RunFilter | str:
    """The list filter of a /api/runs query, or an error message."""
    try:
        limit = int(params.get("limit", "50"))
    except ValueError:
        return "limit must be an integer"
    if not 1 <= limit <= 1000:
        return "limit must be between 1 and 1000"
    status = params.get("status") or None
    if status not in (None, "ok", "error", "running"):
        return "status must be ok, error or running"
    return RunFilter(limit=limit, kind=params.get("kind") or None, status=status, agent=params.get("agent") or None,
                     errors_first=params.get("errors_first", "1") not in ("0", "false", "no"))


def serve_in_thread(server: DashboardServer) -> threading.Thread:
    """Start ``server`` on a daemon thread (for embedding and tests); stop it with ``shutdown``."""
    thread = threading.Thread(target=server.serve_forever, name="aikit-dashboard", daemon=True)
    thread.start()
    return thread


def _traced_run_ids(store: SpanStore, summaries: list[TraceSummary]) -> set[str]:
    """The workflow/mission run ids that the listed traces record (their run records would be the
    same runs again)."""
    ids: set[str] = set()
    for summary in summaries:
        if summary.root_kind not in ("workflow", "mission", "script"):
            continue
        for span in store.trace(summary.trace_id):
            run_id = span.attributes.get("aikit.workflow.run_id")
            if run_id:
                ids.add(str(run_id))
    return ids
