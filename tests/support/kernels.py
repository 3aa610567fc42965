"""Real aikit kernels over ZMQ for the integration tests: start/stop, request helpers, ``Result``.

Every kernel gets its own ``AIKIT_DATA_DIR`` (a fresh temporary directory) so the history SQLite
files of parallel xdist workers never collide. Helpers collect the IOPub messages that belong to
one request (by parent ``msg_id``) until its ``status: idle``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from jupyter_client.session import Session

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 60
DEFAULT_TIMEOUT = 15


def kernel_env(data_dir: str | os.PathLike[str], **extra: Any) -> dict[str, str]:
    """The environment for a kernel process: ours, minus inherited AIKIT_* settings, plus a
    private data directory and ``extra`` (values are stringified)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIKIT_")}
    env["AIKIT_DATA_DIR"] = str(data_dir)
    if "AIKIT_TRUST_PROJECT_CONFIG" in os.environ:  # tests/conftest.py
        env["AIKIT_TRUST_PROJECT_CONFIG"] = os.environ["AIKIT_TRUST_PROJECT_CONFIG"]
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env.update({k: str(v) for k, v in extra.items()})
    return env


@dataclass
class Result:
    """One request's shell reply and the IOPub messages it caused (status messages included)."""

    reply: dict[str, Any]
    iopub: list[dict[str, Any]] = field(default_factory=list)

    @property
    def content(self) -> dict[str, Any]:
        return self.reply["content"]

    @property
    def outputs(self) -> list[dict[str, Any]]:
        """IOPub messages other than status and execute_input."""
        return [m for m in self.iopub if m["msg_type"] not in ("status", "execute_input")]

    def of_type(self, msg_type: str) -> list[dict[str, Any]]:
        return [m for m in self.iopub if m["msg_type"] == msg_type]

    @property
    def stdout(self) -> str:
        return "".join(m["content"]["text"] for m in self.of_type("stream") if m["content"]["name"] == "stdout")

    @property
    def result_text(self) -> str | None:
        results = self.of_type("execute_result")
        return results[0]["content"]["data"]["text/plain"] if results else None


def messages_until(get: Callable[..., dict[str, Any]], timeout: float,
                   missing: Callable[[], str]) -> Iterator[dict[str, Any]]:
    """Messages from ``get(timeout=...)`` (a client's ``get_iopub_msg`` / ``get_shell_msg``) until
    ``timeout`` seconds have passed, then ``TimeoutError(missing())``: it never ends without raising,
    so a caller returns from inside its loop."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(missing())
        try:
            msg = get(timeout=remaining)
        except Empty:
            continue
        yield msg


class Kernel:
    """A started kernel: its manager, a blocking client and request helpers."""

    def __init__(self, km: KernelManager, kc: BlockingKernelClient, data_dir: Path) -> None:
        self.km = km
        self.kc = kc
        self.data_dir = data_dir

    # ------------------------------------------------------------------ iopub
    def collect_iopub(self, msg_ids: list[str], timeout: float = DEFAULT_TIMEOUT,
                      arrival: list[dict[str, Any]] | None = None) -> dict[str, list[dict[str, Any]]]:
        """IOPub messages per parent msg_id, until each of ``msg_ids`` has published idle
        (``arrival``, when given, receives the same messages in arrival order)."""
        wanted: dict[str, list[dict[str, Any]]] = {m: [] for m in msg_ids}
        done: set[str] = set()
        if not wanted:
            return wanted
        for msg in messages_until(self.kc.get_iopub_msg, timeout,
                                  lambda: f"no idle on IOPub for {sorted(set(wanted) - done)} within {timeout} s"):
            parent = msg.get("parent_header", {}).get("msg_id")
            if parent not in wanted:
                continue
            wanted[parent].append(msg)
            if arrival is not None:
                arrival.append(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                done.add(parent)
                if len(done) == len(wanted):
                    return wanted

    def wait_for_iopub(self, msg_id: str, msg_type: str, timeout: float = DEFAULT_TIMEOUT) -> list[dict[str, Any]]:
        """IOPub messages of ``msg_id`` up to and including the first one of ``msg_type``."""
        seen: list[dict[str, Any]] = []
        for msg in messages_until(self.kc.get_iopub_msg, timeout,
                                  lambda: f"no {msg_type} for {msg_id} within {timeout} s"):
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            seen.append(msg)
            if msg["msg_type"] == msg_type:
                return seen

    # ------------------------------------------------------------------ shell
    def shell_reply(self, msg_id: str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """The shell reply to ``msg_id`` (replies to other requests are skipped)."""
        for msg in messages_until(self.kc.get_shell_msg, timeout,
                                  lambda: f"no shell reply to {msg_id} within {timeout} s"):
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                return msg

    def shell_replies(self, msg_ids: list[str], timeout: float = DEFAULT_TIMEOUT) -> dict[str, dict[str, Any]]:
        """The shell replies to each of ``msg_ids``, by msg_id."""
        got: dict[str, dict[str, Any]] = {}
        if not msg_ids:
            return got
        for msg in messages_until(self.kc.get_shell_msg, timeout,
                                  lambda: f"missing shell replies for {sorted(set(msg_ids) - set(got))}"):
            parent = msg.get("parent_header", {}).get("msg_id")
            if parent in msg_ids:
                got[parent] = msg
                if len(got) == len(msg_ids):
                    return got

    def request(self, msg_id: str, timeout: float = DEFAULT_TIMEOUT) -> Result:
        reply = self.shell_reply(msg_id, timeout)
        return Result(reply, self.collect_iopub([msg_id], timeout)[msg_id])

    def execute(self, code: str, timeout: float = DEFAULT_TIMEOUT, **kwargs: Any) -> Result:
        kwargs.setdefault("allow_stdin", False)
        return self.request(self.kc.execute(code, **kwargs), timeout)

    def ok(self, code: str, timeout: float = DEFAULT_TIMEOUT, **kwargs: Any) -> Result:
        """Execute ``code`` and assert it succeeded."""
        result = self.execute(code, timeout, **kwargs)
        assert result.content["status"] == "ok", result.content
        return result

    def value(self, code: str, timeout: float = DEFAULT_TIMEOUT) -> str | None:
        """The text/plain of ``code``'s execute_result (None when it has none)."""
        return self.ok(code, timeout).result_text

    def assert_alive(self) -> None:
        """The kernel still answers ``1+1`` correctly."""
        assert self.value("1+1") == "2"

    def shutdown(self, now: bool = False) -> None:
        """Stop the client and the kernel (``now``: kill it, for a kernel that may be stuck)."""
        if not self.km.has_kernel:
            return
        try:
            self.kc.stop_channels()
        finally:
            self.km.shutdown_kernel(now=now)


def new_client(km: KernelManager) -> BlockingKernelClient:
    """A started client with its *own* Session. (``km.client()`` clones the manager's Session:
    same session id and message counter, so two such clients produce identical msg_ids and
    would see each other's IOPub messages as their own.)"""
    session = Session(key=km.session.key, signature_scheme=km.session.signature_scheme, username="test")
    kc = km.client(session=session)
    kc.start_channels()
    return kc


def start_kernel(
    data_dir: Path,
    *,
    kernel_name: str = "aikit",
    kernel_spec_manager: KernelSpecManager | None = None,
    cwd: Path | None = None,
    **extra_env: Any,
) -> Kernel:
    """Start a real aikit kernel (own data dir) and wait until it answers kernel_info."""
    data_dir.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"kernel_name": kernel_name}
    if kernel_spec_manager is not None:
        kwargs["kernel_spec_manager"] = kernel_spec_manager
    km = KernelManager(**kwargs)
    launch: dict[str, Any] = {"env": kernel_env(data_dir, **extra_env)}
    if cwd is not None:
        launch["cwd"] = str(cwd)
    km.start_kernel(**launch)
    kc = new_client(km)
    try:
        kc.wait_for_ready(timeout=STARTUP_TIMEOUT)
    except BaseException:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        raise
    return Kernel(km, kc, data_dir)


def make_kernelspec(dest_root: Path, name: str, **overrides: Any) -> KernelSpecManager:
    """Copy the installed ``aikit`` kernel.json to ``dest_root/kernels/name`` with ``overrides``
    and return a KernelSpecManager that sees only that directory."""
    installed = KernelSpecManager().get_kernel_spec("aikit")
    spec = json.loads((Path(installed.resource_dir) / "kernel.json").read_text())
    spec.update(overrides)
    spec_dir = dest_root / "kernels" / name
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=2))
    return KernelSpecManager(kernel_dirs=[str(dest_root / "kernels")])


@pytest.fixture
def throwaway_kernel(tmp_path: Path):
    """A private kernel for a test that may leave it stuck; killed (not asked) afterwards."""
    kernel = start_kernel(tmp_path / "data", cwd=tmp_path)
    yield kernel
    kernel.shutdown(now=True)
