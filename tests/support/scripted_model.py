"""The test double for the application suite (issue 19): a scripted model server speaking the real
OpenAI chat-completions wire format, non-streamed and streamed (SSE, tool calls included), on
127.0.0.1. It stands in for a capable model so that the applications under
``examples/applications/`` run offline and deterministically; the applications never know about
it: a test points aikit's configuration at it (:meth:`ScriptedModel.env`).

Replies are chosen by **role**, not by arrival order, so agents running in parallel get their own
answers: a role is a piece of text that identifies the caller (a word of the agent's system
prompt, usually its name) and has a queue of replies served in order. A reply is

- a string: the answer text;
- ``{"text": ..., "tool_calls": [{"name": ..., "arguments": {...}}, ...]}``;
- a function of the request (:class:`Turn`) returning one of those, for answers that depend on
  what the agent was sent (the chunk ids a search returned, the failures of a test run).

A role's last reply is not repeated: a request with no reply left gets HTTP 599 with
``{"error": ...}``, so a test notices an unexpected call. ``always`` replies repeat for ever.

    def test_app(scripted_model):
        scripted_model.role("researcher", {"tool_calls": [{"name": "search_notes", "arguments": {"query": "x"}}]},
                            lambda turn: "found " + turn.last_tool_text)
        run_app("research_summarizer", env=scripted_model.env())
        assert scripted_model.calls("researcher") == 2
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

Reply = str | dict[str, Any] | Callable[["Turn"], "str | dict[str, Any]"]
PROVIDER = "scripted"
MODEL = "app-model"

_ids = itertools.count(1)


@dataclass
class Turn:
    """One chat-completions request as the scripted model sees it."""

    body: dict[str, Any]
    role: str = ""

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", [])

    @property
    def system(self) -> str:
        return "\n".join(str(m.get("content") or "") for m in self.messages if m.get("role") == "system")

    @property
    def user(self) -> str:
        """The last user message."""
        users = [m for m in self.messages if m.get("role") == "user"]
        return str(users[-1].get("content") or "") if users else ""

    @property
    def tool_results(self) -> list[str]:
        """The text of every tool result sent so far, in order."""
        return [str(m.get("content") or "") for m in self.messages if m.get("role") == "tool"]

    @property
    def last_tool_text(self) -> str:
        results = self.tool_results
        return results[-1] if results else ""

    @property
    def tools(self) -> list[str]:
        return [t["function"]["name"] for t in self.body.get("tools", [])]

    def tool_json(self, index: int = -1) -> Any:
        """A tool result parsed as JSON (``index`` into :attr:`tool_results`)."""
        return json.loads(self.tool_results[index])


@dataclass
class _Role:
    match: str
    replies: list[Reply]
    always: bool = False
    served: int = 0
    requests: list[Turn] = field(default_factory=list)


class ScriptedModel:
    """An OpenAI-compatible chat-completions server answering from per-role scripts."""

    def __init__(self) -> None:
        self._roles: list[_Role] = []
        self._lock = threading.Lock()
        self.unmatched: list[Turn] = []
        model = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.endswith("/chat/completions"):
                    return self._send_json({"error": {"message": f"no such path {self.path}"}}, 404)
                try:
                    message = model.answer(Turn(body))
                except LookupError as exc:
                    return self._send_json({"error": {"message": str(exc), "type": "scripted_model"}}, 599)
                if body.get("stream"):
                    return self._send_stream(message, body.get("model", MODEL))
                self._send_json(completion(message, body.get("model", MODEL)))

            def _send_json(self, data: Any, status: int = 200) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _send_stream(self, message: dict[str, Any], model_name: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream; charset=utf-8")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for event in stream_events(message, model_name):
                    chunk = f"data: {event}\n\n".encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            do_GET = do_POST

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ script
    def role(self, match: str, *replies: Reply, always: bool = False) -> None:
        """Script the caller whose system prompt (or, failing that, any message) contains ``match``."""
        with self._lock:
            self._roles.append(_Role(match, list(replies), always))

    def calls(self, match: str) -> int:
        """How many requests the role ``match`` received."""
        with self._lock:
            return sum(len(r.requests) for r in self._roles if r.match == match)

    def requests(self, match: str) -> list[Turn]:
        with self._lock:
            return [t for r in self._roles if r.match == match for t in r.requests]

    def answer(self, turn: Turn) -> dict[str, Any]:
        """The assistant message for ``turn`` (``LookupError`` when the script has none)."""
        with self._lock:
            role = self._find(turn)
            if role is None:
                self.unmatched.append(turn)
                raise LookupError(f"no scripted role matches this request (system: {turn.system[:120]!r})")
            turn.role = role.match
            role.requests.append(turn)
            if not role.replies:
                raise LookupError(f"role {role.match!r} has no reply")
            if role.always:
                reply = role.replies[min(role.served, len(role.replies) - 1)]
            elif role.served < len(role.replies):
                reply = role.replies[role.served]
            else:
                raise LookupError(f"role {role.match!r} has no reply left after {role.served}")
            role.served += 1
        if callable(reply):  # outside the lock: a reply function may take its time
            try:
                reply = reply(turn)
            except Exception as exc:  # a test's script did not expect this request: say so to the app
                self.unmatched.append(turn)
                raise LookupError(f"role {turn.role!r}: the reply function failed: {exc!r}; "
                                  f"tool results: {turn.tool_results}") from exc
        return assistant_message(reply)

    def _find(self, turn: Turn) -> _Role | None:
        for role in self._roles:
            if role.match in turn.system:
                return role
        everything = json.dumps(turn.messages)
        for role in self._roles:
            if role.match in everything:
                return role
        return None

    # ------------------------------------------------------------------ wiring
    def env(self) -> dict[str, str]:
        """Environment overrides that make aikit's default model this server (``scripted/app-model``)."""
        prefix = f"AIKIT_PROVIDERS__{PROVIDER.upper()}__"
        return {prefix + "TYPE": "openai", prefix + "BASE_URL": self.url + "/v1", prefix + "API_KEY": "test-key",
                prefix + "RETRIES": "0", prefix + "TIMEOUT_S": "30",
                "AIKIT_MODELS__DEFAULT": f"{PROVIDER}/{MODEL}"}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------------- wire format
def assistant_message(reply: str | dict[str, Any]) -> dict[str, Any]:
    """An OpenAI assistant message from a scripted reply."""
    if isinstance(reply, str):
        return {"role": "assistant", "content": reply}
    calls = [{"id": f"call_{next(_ids):05d}", "type": "function",
              "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments", {}))}}
             for c in reply.get("tool_calls", [])]
    message: dict[str, Any] = {"role": "assistant", "content": reply.get("text")}
    if calls:
        message["tool_calls"] = calls
    return message


def _usage(message: dict[str, Any]) -> dict[str, int]:
    completion_tokens = max(1, len(json.dumps(message)) // 4)
    return {"prompt_tokens": 50, "completion_tokens": completion_tokens, "total_tokens": 50 + completion_tokens}


def completion(message: dict[str, Any], model: str) -> dict[str, Any]:
    """A ``chat.completion`` object as the OpenAI API returns it."""
    finish = "tool_calls" if message.get("tool_calls") else "stop"
    return {"id": f"chatcmpl-{next(_ids):08d}", "object": "chat.completion", "created": 1765000000, "model": model,
            "choices": [{"index": 0, "message": {**message, "refusal": None}, "logprobs": None,
                         "finish_reason": finish}],
            "usage": _usage(message)}


def stream_events(message: dict[str, Any], model: str) -> Iterator[str]:
    """The ``data:`` payloads of a streamed completion: text in a few deltas, each tool call's
    name then its arguments in two pieces, the finish reason, the usage chunk, ``[DONE]``."""
    base = {"id": f"chatcmpl-{next(_ids):08d}", "object": "chat.completion.chunk", "created": 1765000000,
            "model": model}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        return json.dumps({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    yield chunk({"role": "assistant", "content": ""})
    text = message.get("content") or ""
    step = max(1, len(text) // 3)
    for i in range(0, len(text), step):
        yield chunk({"content": text[i:i + step]})
    for index, call in enumerate(message.get("tool_calls", [])):
        args = call["function"]["arguments"]
        half = len(args) // 2
        yield chunk({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                     "function": {"name": call["function"]["name"], "arguments": args[:half]}}]})
        yield chunk({"tool_calls": [{"index": index, "function": {"arguments": args[half:]}}]})
    yield chunk({}, "tool_calls" if message.get("tool_calls") else "stop")
    yield json.dumps({**base, "choices": [], "usage": _usage(message)})
    yield "[DONE]"


@pytest.fixture
def scripted_model() -> Iterator[ScriptedModel]:
    server = ScriptedModel()
    try:
        yield server
    finally:
        server.close()
