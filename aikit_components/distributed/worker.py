"""What runs inside a Ray worker: one attempt of one step (:func:`execute_step`).

A worker process opens its own components (with the caller's ``Components.open``) once per
configuration (the caller's config, shipped with the run; a private data directory under the
system temp dir, since the caller's may not exist on this machine) and runs the step with the
same executor classes as a local run, so a step behaves alike wherever it runs. The reply is
plain data: ``{ok, output | error, pid, node}``; an error is the step's error table, never a
pickled exception.

Cancellation (``ray.cancel``) arrives as a KeyboardInterrupt in the worker's main thread:
:func:`run_interruptibly` turns it into the cancellation of the step's coroutine (a running
program is killed as in a local run) and lets it through so Ray records the task cancelled.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import inspect
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import error_from_exception
from ..liveness import process_alive
from ..workflows.model import Step
from .tracing import WORKER_SPAN, remote_span

TICK_S = 0.05  # how often a waiting worker looks for a cancellation
SCRATCH_PREFIX = "aikit-ray-worker-"  # + pid + "-": a worker's private data directory
_components: dict[str, Any] = {}
_components_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class ShippedConfig:
    """What a worker opens its components from: the caller's configuration as plain data
    (secrets revealed: a worker calls the same model endpoints), its digest (one set of components
    per configuration and process) and the caller's ``Components.open``."""

    data: dict[str, Any]
    key: str
    open: Callable[..., Any]

    @classmethod
    def of(cls, components: Any) -> ShippedConfig:
        """The shipped form of the caller's ``components``."""
        data = components.config.to_dict(mask=False)
        key = hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
        return cls(data, key, type(components).open)

    def config(self) -> Any:
        """The configuration, as a Config again (secrets wrapped)."""
        from ..config import Config

        return Config(self.data)


@dataclass(frozen=True, slots=True)
class ShippedNode:
    """The part of a step's plan node the executors read: the step (without its conditions,
    loop and function, which stay with the caller)."""

    step: Step


@dataclass(frozen=True, slots=True)
class StepEnvelope:
    """One attempt of one step, as shipped to a worker."""

    workflow: str
    run_id: str
    step: Step
    params: Any
    loop: dict[str, Any] | None
    attempt: int
    context: dict[str, Any] | None = None  # a function step's ctx as data (StepContext.to_dict)
    payload: Callable[..., Any] | None = None  # a function step's shipped function
    trace: dict[str, str] | None = None  # W3C trace context of the caller's step span


class RemoteStepContext:
    """What a shipped ``function`` step receives as ``ctx`` on a worker: the fields of a local
    :class:`~aikit_components.workflows.engine.StepContext`, the outputs of the steps finished
    when it started, and the worker's components."""

    def __init__(self, data: dict[str, Any], components: Any) -> None:
        self.run_id: str = data["run_id"]
        self.workflow: str = data["workflow"]
        self.step: str = data["step"]
        self.attempt: int = data["attempt"]
        self.inputs: dict[str, Any] = data.get("inputs") or {}
        self.loop: dict[str, Any] | None = data.get("loop")
        self.components = components
        self._steps: dict[str, dict[str, Any]] = data.get("steps") or {}
        self._data = data

    def output(self, step_id: str) -> Any:
        """The output of a step finished before this one started (None otherwise)."""
        return (self._steps.get(step_id) or {}).get("output")

    def status(self, step_id: str) -> str | None:
        return (self._steps.get(step_id) or {}).get("status")

    @property
    def outputs(self) -> dict[str, Any]:
        return {sid: s.get("output") for sid, s in self._steps.items()}

    def to_dict(self) -> dict[str, Any]:
        return dict(self._data)

    def __repr__(self) -> str:
        return f"RemoteStepContext(run_id={self.run_id!r}, step={self.step!r}, attempt={self.attempt})"


def worker_components(shipped: ShippedConfig) -> Any:
    """This worker's components for ``shipped`` (opened on first use, kept for the process)."""
    key = shipped.key
    found = _components.get(key)
    if found is not None:
        return found
    with _components_lock:
        found = _components.get(key)
        if found is None:
            remove_stale_scratch()
            data_dir = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))
            found = shipped.open(config=shipped.config(), data_dir=data_dir, session_name=f"ray worker {os.getpid()}")
            _components[key] = found
            atexit.register(_discard, found, data_dir)
    return found


def remove_stale_scratch() -> None:
    """Remove the scratch directories of aikit workers that are gone (Ray kills its workers, so
    their exit handlers do not always run); only directories named by this module are touched."""
    for path in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*-*"):
        pid = path.name[len(SCRATCH_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _discard(components: Any, data_dir: Path) -> None:
    """At the worker's exit: close its components and remove their scratch directory."""
    with contextlib.suppress(Exception):
        components.close()
    shutil.rmtree(data_dir, ignore_errors=True)


def run_interruptibly(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` to its end on a fresh loop in this thread, looking for a KeyboardInterrupt
    (Ray's cancellation) every :data:`TICK_S`; one cancels ``coro``, waits for it to clean up,
    then propagates."""
    loop = asyncio.new_event_loop()
    task = loop.create_task(coro)

    def tick() -> None:
        if not task.done():
            loop.call_later(TICK_S, tick)

    loop.call_soon(tick)
    try:
        return loop.run_until_complete(task)
    except KeyboardInterrupt:
        task.cancel()
        with contextlib.suppress(BaseException):
            loop.run_until_complete(task)
        raise
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def execute_step(envelope: StepEnvelope, shipped: ShippedConfig) -> dict[str, Any]:
    """Run one attempt of a step on this worker; the reply is plain data (see the module)."""
    pid = os.getpid()
    started = time.perf_counter()
    try:
        with remote_span(envelope.trace, WORKER_SPAN, {"aikit.workflow": envelope.workflow,
                                                       "aikit.run_id": envelope.run_id,
                                                       "aikit.step": envelope.step.id}):
            components = worker_components(shipped)
            output = _execute(envelope, components)
    except Exception as exc:
        return {"ok": False, "error": error_from_exception(exc).to_dict(), "pid": pid,
                "seconds": time.perf_counter() - started}
    return {"ok": True, "output": output, "pid": pid, "seconds": time.perf_counter() - started}


def _execute(envelope: StepEnvelope, components: Any) -> Any:
    from ..workflows.engine import executors

    step = envelope.step
    call = executors.StepCall(ShippedNode(step), envelope.params, envelope.loop, envelope.attempt)  # type: ignore[arg-type]
    if step.kind == "function":
        if envelope.payload is None or envelope.context is None:
            raise ValueError(f"step {step.id!r}: no function was shipped with it")
        result = envelope.payload(envelope.params, RemoteStepContext(envelope.context, components))
        return run_interruptibly(_awaited(result)) if inspect.isawaitable(result) else result
    tool_context = _once(lambda: components.tool_context(caller=f"workflow:{envelope.workflow}"))
    kinds: dict[str, Callable[[Any], Awaitable[Any]]] = {
        "tool": executors.ToolExecutor(components, tool_context),
        "command": executors.CommandExecutor(components, tool_context),
        "llm": executors.LlmExecutor(components, envelope.workflow, envelope.run_id),
        "agent": executors.AgentExecutor(components),
    }
    executor = kinds.get(step.kind)
    if executor is None:
        raise ValueError(f"step {step.id!r}: a {step.kind} step does not run on a Ray worker")
    return run_interruptibly(_awaited(executor(call)))


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _once(make: Callable[[], Any]) -> Callable[[], Any]:
    made: list[Any] = []

    def get() -> Any:
        if not made:
            made.append(make())
        return made[0]
    return get
