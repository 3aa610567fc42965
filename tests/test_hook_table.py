"""docs/lua-api.md's Hook table, row by row, against the real components.

The table (section ``## Hook``: Point | Fired | ``ctx.payload`` | Honours) is parsed from the docs,
so the tests follow it: for every point and every decision it honours there is a test of the
documented effect (``DOCUMENTED`` maps each pair to its check), every "observe only" point is
shown to ignore every decision, every decision a point does not list is shown to change nothing,
and every point's payload is shown to carry the fields the table lists. A row added to the table
without a check here fails :func:`test_every_documented_pair_has_a_check`.

What runs: tool calls through a ``ToolRegistry`` with a ``HookRegistry`` and an ``EventBus``;
State writes over the memory and the SQLite backend; cells through the in-process
``LuaInterpreter``; agent runs and model calls against a local HTTP server speaking the OpenAI
chat-completions wire format; workflow steps with the workflow engine. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from aikit_components.agents import AgentSpec
from aikit_components.components import Components
from aikit_components.config import Config
from aikit_components.errors import AikitError, Cancelled
from aikit_components.events import EventBus
from aikit_components.hooks import HookRegistry, HookResult
from aikit_components.operations import MAX_RETRIES
from aikit_components.security import SecurityPolicy
from aikit_components.state import State
from aikit_components.storage.memory import MemoryStateBackend
from aikit_components.tools import Tool, ToolContext, ToolRegistry
from aikit_components.tools.base import Budget
from aikit_components.workflows import engine
from aikit_components.workflows.model import RunRecord, Step, Workflow
from aikit_kernel import runtime
from tests.support.http import QuietHandler

DOCS = Path(__file__).resolve().parent.parent / "docs" / "lua-api.md"
DECISIONS = ("cancel", "modify", "retry", "replace")
OBSERVE = "observe only"


# ================================================================================ the table
@dataclass(frozen=True)
class Row:
    """One row of the Hook table."""

    points: tuple[str, ...]
    payload: dict[str, tuple[str, ...]]  # field -> the fields of a nested table (or of its items)
    honours: frozenset[str]  # empty for "observe only"
    modifies: str | None  # the payload field "modify" names


def _split_top(text: str) -> list[str]:
    """``text`` split at the commas outside braces."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def _payload_fields(cell: str) -> dict[str, tuple[str, ...]] | None:
    """``{name, args, error = {code, message, details}}`` -> {name: (), args: (), error: (code, ...)};
    None for "the same" (the row above's)."""
    found = re.search(r"`(\{.*?\})`", cell)
    if found is None:
        return None
    fields: dict[str, tuple[str, ...]] = {}
    for item in _split_top(found.group(1)[1:-1]):
        name, _, nested = (part.strip() for part in item.partition("="))
        inner = nested[1:-1].strip() if nested else ""
        if inner.startswith("{"):  # a list of records: {{role, text, ...}, ...}
            inner = _split_top(inner)[0][1:-1]
        fields[name] = tuple(f for f in _split_top(inner) if f != "...")
    return fields


def parse_hook_table(text: str) -> list[Row]:
    section = text.split("\n## Hook\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["Point", "Fired", "`ctx.payload`", "Honours"], header
    rows: list[Row] = []
    for line in lines[2:]:
        point_cell, _fired, payload_cell, honours_cell = (c.strip() for c in line.strip().strip("|").split("|"))
        payload = _payload_fields(payload_cell)
        if payload is None:
            assert payload_cell == "the same" and rows, line
            payload = rows[-1].payload
        honours_text = re.sub(r"\([^)]*\)", "", honours_cell).strip()
        honours: set[str] = set()
        modifies = None
        if honours_text != OBSERVE:
            for item in _split_top(honours_text):
                decision = item.split()[0]
                assert decision in DECISIONS, f"unknown decision {item!r} in {line!r}"
                honours.add(decision)
                if decision == "modify":
                    modifies = re.search(r"`(\w+)`", item).group(1)  # type: ignore[union-attr]
        rows.append(Row(tuple(re.findall(r"`([\w.]+)`", point_cell)), payload, frozenset(honours), modifies))
    return rows


ROWS = parse_hook_table(DOCS.read_text(encoding="utf-8"))
ROW_OF = {point: row for row in ROWS for point in row.points}
POINTS = list(ROW_OF)
# (point, decision) for every decision a point honours, (point, "observe only") for the others
TABLE_PAIRS = [(p, d) for p, row in ROW_OF.items() for d in (sorted(row.honours) or [OBSERVE])]
UNLISTED = [(p, d) for p, row in ROW_OF.items() for d in DECISIONS if d not in row.honours]


def kind_of(point: str) -> str:
    return point.rsplit(".", 1)[0]


def stage_of(point: str) -> str:
    return point.rsplit(".", 1)[1]


def test_the_table_is_parsed() -> None:
    assert len(ROWS) == 17 and len(POINTS) == 18
    assert ROW_OF["tool.error"].payload == {"name": (), "args": (), "attempt": (), "error": ("code", "message", "details")}
    assert ROW_OF["llm.before"].payload["messages"] == ("role", "text")
    assert ROW_OF["state.write.after"].payload == ROW_OF["state.write.before"].payload
    assert ROW_OF["cell.after"] is ROW_OF["cell.error"] and not ROW_OF["cell.after"].honours
    assert ROW_OF["agent.before"].modifies == "input" and ROW_OF["tool.error"].honours == {"retry", "replace"}


# ============================================================================ the harnesses
def unlisted_decision(decision: str, ctx: Any) -> HookResult:
    """What a hook returns to ask for ``decision`` where the table does not list it."""
    if decision == "modify":
        return HookResult.modify({key: "modified by a hook" for key in ctx.payload})
    return {"cancel": HookResult.cancel("not listed here"), "retry": HookResult.retry(),
            "replace": HookResult.replace("replaced by a hook")}[decision]


def modify_hook(how: str, field: str, change: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A hook that changes ``payload[field]``: in place (``ctx.payload.x = ...``) or with Hook.modify."""
    def hook(ctx: Any) -> Any:
        if how == "in place":
            ctx.payload[field] = change(ctx.payload[field])
            return None
        return HookResult.modify({**ctx.payload, field: change(ctx.payload[field])})
    return hook


MODIFY_WAYS = ("in place", "Hook.modify")


class Rig:
    """What every harness has: its hooks, and ``register`` (which remembers the ids)."""

    hooks: HookRegistry

    def register(self, point: str, fn: Callable[[Any], Any], priority: int = 0) -> str:
        hook_id = self.hooks.register(point, fn, priority=priority)
        self.hook_ids.append(hook_id)
        return hook_id

    @property
    def hook_ids(self) -> list[str]:
        return self.__dict__.setdefault("_hook_ids", [])


class ToolRig(Rig):
    """A ToolRegistry with its own HookRegistry and EventBus; the tool ``echo`` counts its runs
    and fails while ``failures`` is above zero."""

    def __init__(self) -> None:
        self.hooks = HookRegistry()
        self.events = EventBus()
        self.registry = ToolRegistry(events=self.events, hooks=self.hooks)
        self.runs: list[str] = []
        self.failures = 0
        self.registry.register(Tool(
            name="echo", description="Echo the text", fn=self._echo,
            parameters={"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"],
                        "additionalProperties": False}))

    def _echo(self, text: str) -> str:
        self.runs.append(text)
        if self.failures:
            self.failures -= 1
            raise RuntimeError(f"echo broke on run {len(self.runs)}")
        return f"echo {text} #{len(self.runs)}"

    def call(self, args: Any = None, budget: Budget | None = None) -> Any:
        ctx = ToolContext(policy=SecurityPolicy(), budget=budget or Budget())
        return self.registry.call("echo", {"text": "hi"} if args is None else args, ctx)

    def outcome(self, stage: str) -> tuple[Any, ...]:
        self.runs.clear()
        self.failures = 1 if stage == "error" else 0
        try:
            return ("ok", self.call(), list(self.runs))
        except AikitError as exc:
            return ("error", exc.code, exc.message, list(self.runs))


class StateRig(Rig):
    """A State (memory or SQLite) with its own HookRegistry and EventBus."""

    def __init__(self, state: State, hooks: HookRegistry) -> None:
        self.state, self.hooks = state, hooks
        self.updater_runs = 0

    def failing_update(self) -> Any:
        def updater(old: Any) -> Any:
            self.updater_runs += 1
            raise RuntimeError("the updater broke")
        return self.state.update("global", "k", updater)

    def stored(self, key: str = "k") -> Any:
        return self.state.get("global", key, "absent")

    def outcome(self, stage: str) -> tuple[Any, ...]:
        self.state.backend.delete("global", "k")  # not through the State: no hooks fire
        self.updater_runs = 0
        try:
            if stage == "error":
                self.failing_update()
            return ("ok", self.state.set("global", "k", {"n": 1}), self.stored(), self.updater_runs)
        except Exception as exc:  # noqa: BLE001 - compared as it reached the caller
            return ("error", type(exc).__name__, str(exc), self.stored(), self.updater_runs)


class RecordingOutput:
    """An output sink that keeps what cells write (no stdin)."""

    def __init__(self) -> None:
        self.streams: list[tuple[str, str]] = []

    def write(self, name: str, text: str) -> None:
        self.streams.append((name, text))

    def display(self, data: Any, metadata: Any, display_id: Any, update: Any) -> None:
        pass

    def clear(self, wait: bool) -> None:
        pass

    def flush(self) -> None:
        pass

    def readline(self, prompt: str, password: bool = False) -> str:
        raise AssertionError("not reached: stdin is not allowed")


class CellRig(Rig):
    """The in-process Lua interpreter (as the kernel runs it, minus ZMQ); its cells are
    operations of kind ``cell``. A cell bumps the Lua global ``hits`` so a test sees whether it ran."""

    OK = "hits = (hits or 0) + 1\nreturn 'ran'"
    FAILS = "hits = (hits or 0) + 1\nerror('boom')"

    def __init__(self, interpreter: Any) -> None:
        self.interpreter = interpreter
        self.hooks: HookRegistry = interpreter.components.hooks

    def execute(self, code: str, count: int = 7) -> Any:
        return self.interpreter.execute(code, execution_count=count, silent=False, allow_stdin=False,
                                        user_expressions={})

    def hits(self) -> int:
        """``hits``, read without running a cell (no hook fires)."""
        run = self.interpreter.engine.run_cell("return hits or 0", "[probe]")
        assert run.error is None, run.error
        return int(run.values[0])

    def outcome(self, stage: str) -> tuple[Any, ...]:
        before = self.hits()
        out = self.execute(self.FAILS if stage == "error" else self.OK)
        error = (out.error.ename, out.error.evalue) if out.error is not None else None
        return (out.result, error, self.hits() - before)


class ReplayServer:
    """A local HTTP server speaking the OpenAI chat-completions wire format: it answers
    ``POST /v1/chat/completions`` with the queued replies in order (HTTP 599 when none is left)
    and records each request's JSON body."""

    PATH = "/v1/chat/completions"

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._replies: list[tuple[int, dict[str, Any]]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.read_body()
                with server._lock:
                    server.requests.append(json.loads(body or b"{}"))
                    status, reply = server._replies.pop(0) if server._replies and self.path == server.PATH \
                        else (599, {"error": {"message": "no scripted reply", "type": "test"}})
                self.send_json(status, reply)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def script(self, *replies: tuple[int, dict[str, Any]]) -> None:
        """Forget earlier requests and replies; answer the next requests with ``replies``."""
        with self._lock:
            self.requests.clear()
            self._replies[:] = replies

    def sent(self, index: int = -1) -> list[dict[str, Any]]:
        return self.requests[index]["messages"]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def answer(text: str) -> tuple[int, dict[str, Any]]:
    """A ``chat.completion`` as the OpenAI API returns it."""
    return 200, {"id": "chatcmpl-1", "object": "chat.completion", "created": 1741569952, "model": "m",
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                              "logprobs": None, "finish_reason": "stop"}],
                 "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}


def bad_request() -> tuple[int, dict[str, Any]]:
    return 400, {"error": {"message": "bad request body", "type": "invalid_request_error", "param": None,
                           "code": None}}


def provider_config(url: str) -> dict[str, Any]:
    return {"providers": {"openai": {"base_url": f"{url}/v1", "api_key": "test-key", "retries": 0,
                                     "timeout_s": 10}},
            "models": {"aliases": {"default": "openai/m"}}}


class AgentRig(Rig):
    """Components whose ``openai`` provider is the replay server; runs on aikit's I/O loop, as the
    kernel does. Agent runs fire ``agent.*`` and each of their model calls ``llm.*``."""

    def __init__(self, server: ReplayServer, data_dir: Path) -> None:
        self.server = server
        self.components = Components.open(config=Config(provider_config(server.url)), data_dir=data_dir,
                                          plugins=False, loop_getter=runtime.get_loop)
        self.hooks = self.components.hooks

    def run(self, *replies: tuple[int, dict[str, Any]], input: str = "hi", **spec: Any) -> Any:
        self.server.script(*replies)
        agent = self.components.new_agent(AgentSpec(**{"name": "helper", "model": "openai/m", **spec}))
        return runtime.submit(agent.run(input)).result(30)

    def outcome(self, stage: str) -> tuple[Any, ...]:
        try:
            result = self.run(bad_request() if stage == "error" else answer("hello"))
            return ("ok", result.text, result.model, len(self.server.requests))
        except AikitError as exc:
            return ("error", exc.code, exc.message, len(self.server.requests))

    def close(self) -> None:
        try:
            runtime.submit(self.components.models.aclose()).result(10)
        finally:
            self.components.close()


class WorkflowRig(Rig):
    """Components for the workflow engine; a workflow of one ``function`` step ``s`` that counts its
    runs (and fails while ``failures`` is above zero) and returns its params with the run number."""

    def __init__(self, components: Components) -> None:
        self.components = components
        self.hooks = components.hooks
        self.runs = 0
        self.failures = 0

    def _work(self, params: Any, ctx: Any) -> Any:
        self.runs += 1
        if self.failures:
            self.failures -= 1
            raise RuntimeError(f"step broke on run {self.runs}")
        return {**params, "run": self.runs}

    def run(self, failures: int = 0, params: dict[str, Any] | None = None) -> Any:
        """The record of step ``s``."""
        self.runs, self.failures = 0, failures
        wf = Workflow("table", steps=[Step("s", kind="function", fn=self._work, params=params or {"x": 1})])
        record: RunRecord = asyncio.run(engine.run(wf, components=self.components, run_id="table-run"))
        return record.steps["s"]

    def outcome(self, stage: str) -> tuple[Any, ...]:
        step = self.run(failures=1 if stage == "error" else 0)
        return (step.status, step.output, step.error, self.runs)


@pytest.fixture
def tool_rig() -> ToolRig:
    return ToolRig()


def open_state_rig(backend: str, directory: Path) -> StateRig:
    hooks = HookRegistry()
    if backend == "memory":
        return StateRig(State(MemoryStateBackend(), events=EventBus(), hooks=hooks), hooks)
    return StateRig(State.open_default(directory, events=EventBus(), hooks=hooks), hooks)


@pytest.fixture(scope="module")
def interpreter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One in-process interpreter for the module's cell tests (each test removes its hooks)."""
    from aikit_kernel.interpreter import LuaInterpreter
    from aikit_kernel.lua_runtime import open_lua_runtime

    directory = tmp_path_factory.mktemp("cells")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(directory)
        mp.setenv("AIKIT_DATA_DIR", str(directory / "data"))
        interpreter = LuaInterpreter(open_lua_runtime(RecordingOutput()))
        assert interpreter.components is not None, interpreter.startup_error
    yield interpreter
    interpreter.shutdown()


@pytest.fixture
def cell_rig(interpreter: Any) -> Iterator[CellRig]:
    rig = CellRig(interpreter)
    yield rig
    for hook_id in rig.hook_ids:
        rig.hooks.unregister(hook_id)


@pytest.fixture(scope="module")
def server() -> Iterator[ReplayServer]:
    s = ReplayServer()
    yield s
    s.close()


@pytest.fixture
def agent_rig(server: ReplayServer, tmp_path: Path) -> Iterator[AgentRig]:
    rig = AgentRig(server, tmp_path / "agent-data")
    yield rig
    rig.close()


@pytest.fixture
def workflow_rig(tmp_path: Path) -> Iterator[WorkflowRig]:
    components = Components.open(config=Config({}), data_dir=tmp_path / "wf-data", plugins=False)
    yield WorkflowRig(components)
    components.close()


RIG_FIXTURE = {"tool": "tool_rig", "cell": "cell_rig", "agent": "agent_rig", "llm": "agent_rig",
               "workflow.step": "workflow_rig"}
STATE_BACKENDS = ("memory", "sqlite")


def rig_for(request: pytest.FixtureRequest, point: str, backend: str) -> Any:
    """The harness for ``point``'s kind (a State over ``backend`` for ``state.write.*``)."""
    if kind_of(point) == "state.write":
        rig = open_state_rig(backend, request.getfixturevalue("tmp_path") / "state")
        request.addfinalizer(rig.state.close)
        return rig
    return request.getfixturevalue(RIG_FIXTURE[kind_of(point)])


def with_backends(cases: list[tuple[str, ...]]) -> list[Any]:
    """``cases`` (point first) with the State backend each runs on: both for ``state.write.*``."""
    return [pytest.param(*case, backend, id="-".join([*case, backend] if backend else case))
            for case in cases for backend in (STATE_BACKENDS if kind_of(case[0]) == "state.write" else ("",))]


# ====================================================================== the documented checks
DOCUMENTED: dict[tuple[str, str], Callable[[Any], None]] = {}


def documents(point: str, decision: str) -> Callable[[Callable[[Any], None]], Callable[[Any], None]]:
    """Register the check of one (point, decision) pair of the table (``observe only`` included)."""
    def register(check: Callable[[Any], None]) -> Callable[[Any], None]:
        assert (point, decision) not in DOCUMENTED, (point, decision)
        DOCUMENTED[(point, decision)] = check
        return check
    return register


def assert_cancelled(exc: BaseException, reason: str) -> None:
    assert isinstance(exc, Cancelled) and exc.code == "cancelled", exc
    assert reason in exc.message and exc.details["reason"] == reason


def assert_run_cancelled(rig: AgentRig, reason: str, *replies: Any) -> None:
    """The agent run the server answers with ``replies`` is cancelled for ``reason``."""
    with pytest.raises(Cancelled) as info:
        rig.run(*replies)
    assert_cancelled(info.value, reason)


# ----------------------------------------------------------------------------------- tool.*
@documents("tool.before", "cancel")
def _(rig: ToolRig) -> None:
    rig.register("tool.before", lambda ctx: HookResult.cancel("no echoes today"))
    with pytest.raises(Cancelled) as info:
        rig.call()
    assert_cancelled(info.value, "no echoes today")
    assert rig.runs == []


@documents("tool.before", "modify")
def _(rig: ToolRig) -> None:
    for how in MODIFY_WAYS:
        rig.runs.clear()
        hook = rig.register("tool.before", modify_hook(how, "args", lambda args: {**args, "text": args["text"].upper()}))
        assert rig.call({"text": "hi"}) == "echo HI #1" and rig.runs == ["HI"], how
        rig.hooks.unregister(hook)


@documents("tool.before", "replace")
def _(rig: ToolRig) -> None:
    rig.register("tool.before", lambda ctx: HookResult.replace({"cached": True}))
    assert rig.call() == {"cached": True} and rig.runs == []


@documents("tool.after", "retry")
def _(rig: ToolRig) -> None:
    attempts: list[int] = []

    def once(ctx: Any) -> Any:
        attempts.append(ctx.payload["attempt"])
        return HookResult.retry() if ctx.payload["attempt"] == 1 else None

    hook = rig.register("tool.after", once)
    assert rig.call() == "echo hi #2" and len(rig.runs) == 2 and attempts == [1, 2]
    rig.hooks.unregister(hook)
    rig.runs.clear()
    rig.register("tool.after", lambda ctx: HookResult.retry())
    assert rig.call() == f"echo hi #{1 + MAX_RETRIES}" and len(rig.runs) == 1 + MAX_RETRIES  # the last result stands


@documents("tool.after", "replace")
def _(rig: ToolRig) -> None:
    rig.register("tool.after", lambda ctx: HookResult.replace(ctx.payload["result"].upper()))
    assert rig.call() == "ECHO HI #1" and len(rig.runs) == 1


@documents("tool.error", "retry")
def _(rig: ToolRig) -> None:
    rig.register("tool.error", lambda ctx: HookResult.retry())
    rig.failures = 1
    assert rig.call() == "echo hi #2" and len(rig.runs) == 2
    rig.runs.clear()
    rig.failures = 99
    with pytest.raises(AikitError) as info:
        rig.call()
    assert len(rig.runs) == 1 + MAX_RETRIES and f"run {1 + MAX_RETRIES}" in info.value.message  # the last error
    # not for a rejected call: invalid arguments, or a used-up budget, fail the same way again
    fired: list[str] = []
    rig.register("tool.error", lambda ctx: fired.append(ctx.payload["error"]["code"]), priority=10)  # sees each
    rig.runs.clear()
    with pytest.raises(AikitError) as info:
        rig.call({"text": 42})
    assert info.value.code == "invalid_argument" and fired == ["invalid_argument"] and rig.runs == []
    with pytest.raises(AikitError) as info:
        rig.call(budget=Budget(max_tool_calls=0))
    assert info.value.code == "budget_exceeded" and fired[1:] == ["budget_exceeded"] and rig.runs == []


@documents("tool.error", "replace")
def _(rig: ToolRig) -> None:
    rig.register("tool.error", lambda ctx: HookResult.replace(f"fallback for {ctx.payload['error']['code']}"))
    rig.failures = 1
    assert rig.call().startswith("fallback for ") and len(rig.runs) == 1
    assert rig.call({"text": 42}) == "fallback for invalid_argument"  # a rejected call too


# ---------------------------------------------------------------------------- state.write.*
@documents("state.write.before", "cancel")
def _(rig: StateRig) -> None:
    rig.register("state.write.before", lambda ctx: HookResult.cancel("read-only"))
    for write in (lambda: rig.state.set("global", "k", 1), lambda: rig.state.update("global", "k", lambda old: 2),
                  lambda: rig.state.compare_and_set("global", "k", None, 3)):
        with pytest.raises(Cancelled) as info:
            write()
        assert_cancelled(info.value, "read-only")
    assert rig.stored() == "absent"


@documents("state.write.before", "modify")
def _(rig: StateRig) -> None:
    for how in MODIFY_WAYS:
        hook = rig.register("state.write.before", modify_hook(how, "value", lambda v: {"n": v["n"] * 10}))
        rig.state.set("global", "k", {"n": 1})
        assert rig.stored() == {"n": 10}, how
        assert rig.state.update("global", "k", lambda old: {"n": old["n"] + 1}) == {"n": 110}, how
        assert rig.stored() == {"n": 110}, how
        rig.hooks.unregister(hook)


@documents("state.write.before", "replace")
def _(rig: StateRig) -> None:
    rig.state.set("global", "other", "kept")
    rig.register("state.write.before", lambda ctx: HookResult.replace("from the hook"))
    assert rig.state.set("global", "k", 1) is None and rig.stored() == "absent"  # the write does not happen
    assert rig.state.update("global", "k", lambda old: 2) == "from the hook" and rig.stored() == "absent"
    assert rig.state.delete("global", "other") is True and rig.stored("other") == "kept"


@documents("state.write.after", OBSERVE)
def _(rig: StateRig) -> None:
    fired: list[str] = []
    baseline = rig.outcome("after")
    for decision in DECISIONS:
        hook = rig.register("state.write.after", lambda ctx, d=decision: fired.append(d) or unlisted_decision(d, ctx))
        assert rig.outcome("after") == baseline, decision
        rig.hooks.unregister(hook)
    assert fired == list(DECISIONS)  # fired once each: no retry


@documents("state.write.error", OBSERVE)
def _(rig: StateRig) -> None:
    fired: list[str] = []
    baseline = rig.outcome("error")
    assert baseline[:3] == ("error", "RuntimeError", "the updater broke")  # the error still reaches the caller
    for decision in DECISIONS:
        hook = rig.register("state.write.error", lambda ctx, d=decision: fired.append(d) or unlisted_decision(d, ctx))
        assert rig.outcome("error") == baseline, decision
        rig.hooks.unregister(hook)
    assert fired == list(DECISIONS)


# ------------------------------------------------------------------------------------ cell.*
@documents("cell.before", "cancel")
def _(rig: CellRig) -> None:
    rig.register("cell.before", lambda ctx: HookResult.cancel("cells are closed"))
    before = rig.hits()
    out = rig.execute(rig.OK)
    assert out.error is not None and out.error.ename == "cancelled" and "cells are closed" in out.error.evalue
    assert rig.hits() == before


@documents("cell.before", "modify")
def _(rig: CellRig) -> None:
    for how in MODIFY_WAYS:
        hook = rig.register("cell.before", modify_hook(how, "code", lambda code: "return 6 * 7"))
        before = rig.hits()
        out = rig.execute(rig.OK)
        assert out.error is None and out.result == {"text/plain": "42"} and rig.hits() == before, how
        rig.hooks.unregister(hook)


@documents("cell.before", "replace")
def _(rig: CellRig) -> None:
    rig.register("cell.before", lambda ctx: HookResult.replace("from the cache"))
    before = rig.hits()
    out = rig.execute(rig.OK)
    assert out.error is None and out.result == {"text/plain": "from the cache"} and rig.hits() == before


def _cell_observes(rig: CellRig, point: str) -> None:
    for stage in ("after", "error"):  # cell.after fires after a failed cell too
        baseline = rig.outcome(stage)
        for decision in DECISIONS:
            fired: list[str] = []
            hook = rig.register(point, lambda ctx, d=decision, f=fired: f.append(d) or unlisted_decision(d, ctx))
            assert rig.outcome(stage) == baseline, (stage, decision)
            rig.hooks.unregister(hook)
            assert fired == ([] if (point, stage) == ("cell.error", "after") else [decision])


@documents("cell.after", OBSERVE)
def _(rig: CellRig) -> None:
    _cell_observes(rig, "cell.after")


@documents("cell.error", OBSERVE)
def _(rig: CellRig) -> None:
    _cell_observes(rig, "cell.error")


# ----------------------------------------------------------------------------------- agent.*
def _cancel_before_the_model(rig: AgentRig, point: str, reason: str) -> None:
    rig.register(point, lambda ctx: HookResult.cancel(reason))
    assert_run_cancelled(rig, reason, answer("unused"))
    assert rig.server.requests == []  # the model is not asked


@documents("agent.before", "cancel")
def _(rig: AgentRig) -> None:
    _cancel_before_the_model(rig, "agent.before", "no agents after midnight")


@documents("agent.before", "modify")
def _(rig: AgentRig) -> None:
    for how in MODIFY_WAYS:
        hook = rig.register("agent.before", modify_hook(how, "input", lambda text: text + ", politely"))
        assert rig.run(answer("ok"), input="hi").text == "ok", how
        assert rig.server.sent() == [{"role": "user", "content": "hi, politely"}], how
        rig.hooks.unregister(hook)


@documents("agent.before", "replace")
def _(rig: AgentRig) -> None:
    hook = rig.register("agent.before", lambda ctx: HookResult.replace("from the cache"))
    result = rig.run(answer("unused"))
    assert (result.text, result.model, rig.server.requests) == ("from the cache", "hook", [])  # the model is not asked
    rig.hooks.unregister(hook)
    rig.register("agent.before", lambda ctx: HookResult.replace({"text": "t", "data": {"n": 1}}))
    result = rig.run(answer("unused"))
    assert (result.text, result.data, rig.server.requests) == ("t", {"n": 1}, [])


@documents("agent.after", "cancel")
def _(rig: AgentRig) -> None:
    rig.register("agent.after", lambda ctx: HookResult.cancel("off topic"))
    assert_run_cancelled(rig, "off topic", answer("about cats"))
    assert len(rig.server.requests) == 1


def _retries_end_at_the_limit(rig: AgentRig, point: str, word: str) -> None:
    """A hook at ``point`` that always retries: the answer after MAX_RETRIES retries stands."""
    rig.register(point, lambda ctx: HookResult.retry())
    replies = [answer(f"{word} {i}") for i in range(1, MAX_RETRIES + 3)]
    assert rig.run(*replies).text == f"{word} {1 + MAX_RETRIES}" and len(rig.server.requests) == 1 + MAX_RETRIES


@documents("agent.after", "retry")
def _(rig: AgentRig) -> None:
    hook = rig.register("agent.after", lambda ctx: HookResult.retry() if ctx.payload["attempt"] == 1 else None)
    assert rig.run(answer("draft"), answer("final")).text == "final" and len(rig.server.requests) == 2
    assert rig.server.sent(0) == rig.server.sent(1) == [{"role": "user", "content": "hi"}]  # the whole run again
    rig.hooks.unregister(hook)
    _retries_end_at_the_limit(rig, "agent.after", "run")


@documents("agent.after", "replace")
def _(rig: AgentRig) -> None:
    rig.register("agent.after", lambda ctx: HookResult.replace({"text": "42", "data": {"n": 42}}))
    result = rig.run(answer("forty-two"))
    assert (result.text, result.data, result.model) == ("42", {"n": 42}, "openai/m")


def _retries_stop_at_the_limit(rig: AgentRig, point: str) -> None:
    """A hook at ``point`` that always retries a failing run: the run fails after MAX_RETRIES retries."""
    rig.register(point, lambda ctx: HookResult.retry())
    with pytest.raises(AikitError) as info:
        rig.run(*[bad_request()] * (MAX_RETRIES + 2))
    assert info.value.details["hook_retries"] == MAX_RETRIES and len(rig.server.requests) == 1 + MAX_RETRIES


@documents("agent.error", "retry")
def _(rig: AgentRig) -> None:
    hook = rig.register("agent.error", lambda ctx: HookResult.retry())
    assert rig.run(bad_request(), answer("recovered")).text == "recovered" and len(rig.server.requests) == 2
    rig.hooks.unregister(hook)
    _retries_stop_at_the_limit(rig, "agent.error")


@documents("agent.error", "replace")
def _(rig: AgentRig) -> None:
    rig.register("agent.error", lambda ctx: HookResult.replace(f"sorry ({ctx.payload['error']['code']})"))
    result = rig.run(bad_request())
    assert (result.text, result.model) == ("sorry (provider_error)", "hook")


# ------------------------------------------------------------------------------------- llm.*
@documents("llm.before", "cancel")
def _(rig: AgentRig) -> None:
    _cancel_before_the_model(rig, "llm.before", "offline")


@documents("llm.before", "modify")
def _(rig: AgentRig) -> None:
    def redact(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**m, "text": m["text"].replace("4111", "[card]")} for m in messages]

    for how in MODIFY_WAYS:
        hook = rig.register("llm.before", modify_hook(how, "messages", redact))
        result = rig.run(answer("noted"), input="card 4111")
        assert rig.server.sent() == [{"role": "user", "content": "card [card]"}], how  # what this call sends
        assert result.messages[0].text == "card 4111", how  # not the conversation
        rig.hooks.unregister(hook)


@documents("llm.before", "replace")
def _(rig: AgentRig) -> None:
    rig.register("llm.before", lambda ctx: HookResult.replace("canned answer"))
    result = rig.run(answer("unused"))
    assert result.text == "canned answer" and rig.server.requests == []


@documents("llm.after", "cancel")
def _(rig: AgentRig) -> None:
    rig.register("llm.after", lambda ctx: HookResult.cancel("leaked a secret") if "sk-" in ctx.payload["text"] else None)
    assert_run_cancelled(rig, "leaked a secret", answer("the key is sk-1"))


@documents("llm.after", "retry")
def _(rig: AgentRig) -> None:
    hook = rig.register("llm.after", lambda ctx: HookResult.retry() if ctx.payload["text"] == "draft" else None)
    result = rig.run(answer("draft"), answer("final"))
    assert result.text == "final" and result.steps == 1 and len(rig.server.requests) == 2  # the same call again
    assert rig.server.sent(0) == rig.server.sent(1)
    rig.hooks.unregister(hook)
    _retries_end_at_the_limit(rig, "llm.after", "try")


@documents("llm.after", "replace")
def _(rig: AgentRig) -> None:
    rig.register("llm.after", lambda ctx: HookResult.replace(ctx.payload["text"].replace("darn", "****")))
    assert rig.run(answer("well darn")).text == "well ****"


@documents("llm.error", "retry")
def _(rig: AgentRig) -> None:
    agent_errors: list[str] = []
    rig.register("agent.error", lambda ctx: agent_errors.append(ctx.payload["error"]["code"]))
    hook = rig.register("llm.error", lambda ctx: HookResult.retry())
    assert rig.run(bad_request(), answer("second time")).text == "second time"
    assert len(rig.server.requests) == 2 and agent_errors == []  # the call was repeated, not the run
    rig.hooks.unregister(hook)
    _retries_stop_at_the_limit(rig, "llm.error")


@documents("llm.error", "replace")
def _(rig: AgentRig) -> None:
    rig.register("llm.error", lambda ctx: HookResult.replace("offline fallback"))
    assert rig.run(bad_request()).text == "offline fallback"


# --------------------------------------------------------------------------- workflow.step.*
@documents("workflow.step.before", "cancel")
def _(rig: WorkflowRig) -> None:
    rig.register("workflow.step.before", lambda ctx: HookResult.cancel("not today"))
    step = rig.run()
    assert (step.status, step.error["code"], rig.runs) == ("failed", "cancelled", 0)
    assert "not today" in step.error["message"]


@documents("workflow.step.before", "modify")
def _(rig: WorkflowRig) -> None:
    for how in MODIFY_WAYS:
        hook = rig.register("workflow.step.before", modify_hook(how, "params", lambda params: {**params, "x": 2}))
        step = rig.run(params={"x": 1})
        assert (step.status, step.output) == ("succeeded", {"x": 2, "run": 1}), how
        rig.hooks.unregister(hook)


@documents("workflow.step.before", "replace")
def _(rig: WorkflowRig) -> None:
    rig.register("workflow.step.before", lambda ctx: HookResult.replace({"from": "cache"}))
    step = rig.run()
    assert (step.status, step.output, rig.runs) == ("succeeded", {"from": "cache"}, 0)


@documents("workflow.step.after", "cancel")
def _(rig: WorkflowRig) -> None:
    rig.register("workflow.step.after", lambda ctx: HookResult.cancel("looks wrong"))
    step = rig.run()
    assert (step.status, step.error["code"], rig.runs) == ("failed", "cancelled", 1)  # the step fails
    assert "looks wrong" in step.error["message"]


@documents("workflow.step.after", "retry")
def _(rig: WorkflowRig) -> None:
    hook = rig.register("workflow.step.after", lambda ctx: HookResult.retry() if ctx.payload["attempt"] == 1 else None)
    step = rig.run()
    assert (step.status, step.output, rig.runs) == ("succeeded", {"x": 1, "run": 2}, 2)
    rig.hooks.unregister(hook)
    rig.register("workflow.step.after", lambda ctx: HookResult.retry())
    step = rig.run()
    assert (step.output, rig.runs) == ({"x": 1, "run": 1 + MAX_RETRIES}, 1 + MAX_RETRIES)  # the last output stands


@documents("workflow.step.after", "replace")
def _(rig: WorkflowRig) -> None:
    rig.register("workflow.step.after", lambda ctx: HookResult.replace("replaced"))
    step = rig.run()
    assert (step.status, step.output, rig.runs) == ("succeeded", "replaced", 1)


@documents("workflow.step.error", "retry")
def _(rig: WorkflowRig) -> None:
    rig.register("workflow.step.error", lambda ctx: HookResult.retry())
    step = rig.run(failures=1)
    assert (step.status, step.output, rig.runs) == ("succeeded", {"x": 1, "run": 2}, 2)
    step = rig.run(failures=99)
    assert (step.status, rig.runs) == ("failed", 1 + MAX_RETRIES)
    assert f"run {1 + MAX_RETRIES}" in step.error["message"]  # the last error stands


@documents("workflow.step.error", "replace")
def _(rig: WorkflowRig) -> None:
    rig.register("workflow.step.error", lambda ctx: HookResult.replace({"recovered": ctx.payload["error"]["message"]}))
    step = rig.run(failures=1)
    assert (step.status, step.output, rig.runs) == ("succeeded", {"recovered": "RuntimeError: step broke on run 1"}, 1)


# ================================================================================== the tests
def test_every_documented_pair_has_a_check() -> None:
    """A row added to (or removed from) the table without a check here fails."""
    assert set(TABLE_PAIRS) == set(DOCUMENTED)


@pytest.mark.parametrize(("point", "decision", "backend"), with_backends(TABLE_PAIRS))
def test_documented_decision(point: str, decision: str, backend: str, request: pytest.FixtureRequest) -> None:
    """The documented effect of ``decision`` at ``point`` (or, for an observe-only point, that
    no decision changes anything)."""
    check = DOCUMENTED.get((point, decision))
    assert check is not None, f"the Hook table lists {decision!r} at {point}, and nothing here checks it"
    check(rig_for(request, point, backend))


@pytest.mark.parametrize(("point", "decision", "backend"), with_backends(UNLISTED))
def test_a_decision_the_point_does_not_list_changes_nothing(point: str, decision: str, backend: str,
                                                            request: pytest.FixtureRequest) -> None:
    rig = rig_for(request, point, backend)
    stage = stage_of(point)
    baseline = rig.outcome(stage)
    fired: list[str] = []
    rig.register(point, lambda ctx: fired.append(ctx.point) or unlisted_decision(decision, ctx))
    assert rig.outcome(stage) == baseline
    assert fired == [point]  # fired once: not retried


def _check_fields(point: str, payload: dict[str, Any]) -> None:
    for field, nested in ROW_OF[point].payload.items():
        assert field in payload, f"{point}'s payload has no {field!r}: {payload}"
        value = payload[field]
        for item in (value if isinstance(value, list) else [value]) if nested else ():
            assert set(nested) <= set(item), f"{point}'s {field} lacks some of {nested}: {item}"


@pytest.mark.parametrize(("point", "backend"), with_backends([(p,) for p in POINTS]))
def test_payload_has_the_documented_fields(point: str, backend: str, request: pytest.FixtureRequest) -> None:
    rig = rig_for(request, point, backend)
    seen: list[dict[str, Any]] = []
    rig.register(point, lambda ctx: seen.append(json.loads(json.dumps(ctx.payload, default=str))))
    rig.outcome("error" if "error" in ROW_OF[point].payload else "ok")
    assert seen, f"{point} did not fire"
    _check_fields(point, seen[0])


# ============================================================= what the Fired column says
def test_tool_before_fires_after_validation_and_tool_error_for_a_rejected_call(tool_rig: ToolRig) -> None:
    fired: list[str] = []
    for point in ("tool.before", "tool.after", "tool.error"):
        tool_rig.register(point, lambda ctx: fired.append(ctx.point))
    with pytest.raises(AikitError):
        tool_rig.call({"text": 42})
    assert fired == ["tool.error"] and tool_rig.runs == []


STATE_OPS = re.findall(r"`(\w+)`", re.search(r"\(`op`: (.*?)\)", DOCS.read_text(encoding="utf-8")).group(1))  # type: ignore[union-attr]


@pytest.mark.parametrize("backend", STATE_BACKENDS)
def test_state_write_points_fire_for_every_documented_op(backend: str, tmp_path: Path) -> None:
    rig = open_state_rig(backend, tmp_path)
    seen: list[tuple[str, str, Any]] = []
    for point in ("state.write.before", "state.write.after"):
        rig.register(point, lambda ctx: seen.append((ctx.point, ctx.payload["op"], ctx.payload["value"])))
    rig.state.set("global", "k", 1)
    rig.state.update("global", "k", lambda old: old + 1)
    rig.state.compare_and_set("global", "k", 2, 3)
    rig.state.delete("global", "k")
    rig.state.close()
    done = ["set", "update", "compare_and_set", "delete"]
    assert sorted(done) == sorted(STATE_OPS)
    assert [(point, op) for point, op, _ in seen] == [(p, op) for op in done for p in ("state.write.before",
                                                                                        "state.write.after")]
    assert [value for point, _, value in seen if point == "state.write.before"] == [1, 2, 3, None]


def test_cell_after_fires_after_every_cell_and_cell_error_only_after_a_failed_one(cell_rig: CellRig) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    for point in ("cell.after", "cell.error"):
        cell_rig.register(point, lambda ctx: seen.append((ctx.point, dict(ctx.payload))))
    cell_rig.execute("return 1", count=3)
    [(point, payload)] = seen
    assert point == "cell.after" and (payload["execution_count"], payload["status"]) == (3, "ok")
    assert "error" not in payload and payload["duration_ms"] >= 0
    seen.clear()
    cell_rig.execute("error('boom')", count=4)
    assert [point for point, _ in seen] == ["cell.error", "cell.after"]
    for _, payload in seen:
        assert (payload["execution_count"], payload["status"]) == (4, "error")
        assert payload["error"]["ename"] == "LuaError" and "boom" in payload["error"]["evalue"]


def test_agent_and_llm_payloads_say_which_model_and_attempt(agent_rig: AgentRig) -> None:
    seen: dict[str, dict[str, Any]] = {}
    for point in ("agent.before", "agent.after", "llm.before", "llm.after"):
        agent_rig.register(point, lambda ctx: seen.setdefault(ctx.point, dict(ctx.payload)))
    agent_rig.run(answer("hello"), input="hi")
    assert seen["agent.before"] == {"agent": "helper", "input": "hi", "model": "openai/m"}
    assert (seen["agent.after"]["attempt"], seen["agent.after"]["result"]["text"]) == (1, "hello")
    assert seen["llm.before"] == {"agent": "helper", "model": "openai/m", "step": 1,
                                  "messages": [{"role": "user", "text": "hi"}]}
    after = seen["llm.after"]
    assert (after["attempt"], after["answered_by"], after["text"], after["tool_calls"]) == (1, "openai/m", "hello", [])


def test_a_workflow_llm_step_fires_llm_points_named_by_the_step(server: ReplayServer, tmp_path: Path) -> None:
    """The llm.* payloads of a workflow ``llm`` step name it by workflow, run_id and step; a
    cancel fails the step with code ``cancelled``."""
    components = Components.open(config=Config(provider_config(server.url)), data_dir=tmp_path / "data",
                                 plugins=False)
    seen: list[dict[str, Any]] = []
    components.hooks.register("llm.before", lambda ctx: seen.append(dict(ctx.payload)))
    components.hooks.register("llm.after", lambda ctx: HookResult.cancel("not this answer"))
    wf = Workflow("asking", steps=[Step("ask", kind="llm", params={"prompt": "hi"})])

    async def main() -> RunRecord:
        try:
            return await engine.run(wf, components=components, run_id="run-1")
        finally:
            await components.models.aclose()

    server.script(answer("hello"))
    try:
        record = asyncio.run(main())
    finally:
        components.close()
    assert {k: seen[0][k] for k in ("workflow", "run_id", "step")} == {"workflow": "asking", "run_id": "run-1",
                                                                       "step": "ask"}
    assert "agent" not in seen[0]
    step = record.steps["ask"]
    assert (step.status, step.error["code"]) == ("failed", "cancelled") and "not this answer" in step.error["message"]
