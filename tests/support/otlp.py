"""A real OTLP/HTTP receiver on loopback for the tracing tests: it decodes each
``ExportTraceServiceRequest`` (protobuf, ``opentelemetry-proto``) into plain span dicts, and can
be told to refuse (HTTP 503) or to hang (hold every request until released)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

_KINDS = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


def _value(v: Any) -> Any:
    field = v.WhichOneof("value")
    if field == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, field) if field else None


def decode(body: bytes) -> list[dict[str, Any]]:
    """The spans of one ExportTraceServiceRequest, as dicts with hex ids."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for rs in request.resource_spans:
        resource = {a.key: _value(a.value) for a in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                spans.append({"trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                              "parent_span_id": s.parent_span_id.hex() or None, "name": s.name,
                              "kind": _KINDS.get(s.kind, str(s.kind)), "status": s.status.code,
                              "attributes": {a.key: _value(a.value) for a in s.attributes},
                              "events": [e.name for e in s.events], "resource": resource,
                              "scope": ss.scope.name})
    return spans


class Receiver:
    """``mode``: "ok" (200), "refuse" (503 every time) or "hang" (hold until :meth:`release`)."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.spans: list[dict[str, Any]] = []
        self.requests = 0
        self.headers: list[dict[str, str]] = []
        self.metrics_requests = 0
        self._released = threading.Event()
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._changed:
                    receiver.requests += 1
                    receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                    receiver._changed.notify_all()
                if receiver.mode == "hang":
                    receiver._released.wait(60)
                if receiver.mode == "refuse":
                    self.send_response(503)
                    self.end_headers()
                    return
                if self.path.endswith("/v1/traces"):
                    spans = decode(body)
                    with receiver._changed:
                        receiver.spans.extend(spans)
                        receiver._changed.notify_all()
                else:
                    with receiver._changed:
                        receiver.metrics_requests += 1
                        receiver._changed.notify_all()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def wait_for(self, condition: Callable[[Receiver], bool], timeout: float = 30.0) -> None:
        """Wait until ``condition(self)`` holds (raises TimeoutError after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"receiver: condition not met; {self.requests} requests, "
                                       f"{len(self.spans)} spans: {[s['name'] for s in self.spans]}")
                self._changed.wait(remaining)

    def named(self, name: str) -> list[dict[str, Any]]:
        return [s for s in self.spans if s["name"] == name]

    def release(self) -> None:
        self._released.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def otlp_receiver() -> Iterator[Callable[..., Receiver]]:
    """Factory: ``otlp_receiver(mode="ok")`` starts a receiver, closed after the test."""
    made: list[Receiver] = []

    def make(mode: str = "ok") -> Receiver:
        receiver = Receiver(mode)
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        receiver.close()
