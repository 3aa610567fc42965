"""The operation pipeline itself (aikit_components.operations), with plain Python interceptors:
the order of stages, decisions, the retry bound, rejections, the fast paths, and that sync and
async callers see exactly the same flow."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

from aikit_components.errors import AikitError, Cancelled, InvalidArgument, PermissionDenied
from aikit_components.operations import (
    EVENTS,
    HOOKS,
    MAX_RETRIES,
    POLICY,
    Decision,
    Interceptor,
    Operation,
    OperationKind,
    Pipeline,
    honours,
)

KIND = OperationKind("demo", hook_prefix="demo", honours=honours("cancel replace", "retry replace", "retry replace"),
                     topics=("demo.started", "demo.finished", "demo.failed"))


class Recorder(Interceptor):
    """Logs every call as (name, stage, attempt) and answers with scripted decisions."""

    def __init__(self, name: str, order: int, log: list[tuple[str, str, int]], *,
                 decisions: dict[str, list[Any]] | None = None, decides: bool = True) -> None:
        self.name, self.order, self.log = name, order, log
        self.decisions = {k: list(v) for k, v in (decisions or {}).items()}
        self.decides = decides

    def _next(self, stage: str) -> Any:
        queue = self.decisions.get(stage) or []
        item = queue.pop(0) if queue else None
        if isinstance(item, Exception):
            raise item
        return item

    def before(self, op: Operation) -> Decision | None:
        self.log.append((self.name, "before", op.attempt))
        return self._next("before")

    def after(self, op: Operation, result: Any) -> Decision | None:
        self.log.append((self.name, "after", op.attempt))
        return self._next("after")

    def error(self, op: Operation, error: AikitError, retryable: bool) -> Decision | None:
        self.log.append((self.name, f"error:{error.code}:{retryable}", op.attempt))
        return self._next("error")

    def started(self, op: Operation) -> None:
        self.log.append((self.name, "started", op.attempt))

    def finished(self, op: Operation, result: Any) -> None:
        self.log.append((self.name, f"finished:{result}", op.attempt))

    def failed(self, op: Operation, error: AikitError) -> None:
        self.log.append((self.name, f"failed:{error.code}", op.attempt))


def new_op(**payload: Any) -> Operation:
    return Operation(KIND, "x", dict(payload))


def test_chain_is_ordered_by_order_outer_to_inner() -> None:
    log: list = []
    inner, outer = Recorder("inner", POLICY, log), Recorder("outer", EVENTS, log)
    pipeline = Pipeline([inner, outer])
    assert pipeline.interceptors == (outer, inner)
    assert pipeline.run(new_op(), lambda op: "r") == "r"
    assert log == [("outer", "before", 1), ("inner", "before", 1), ("outer", "started", 1), ("inner", "started", 1),
                   ("inner", "after", 1), ("outer", "after", 1),
                   ("outer", "finished:r", 1), ("inner", "finished:r", 1)]


def test_sync_and_async_callers_see_the_same_flow() -> None:
    """Every scripted scenario gives the same calls and the same outcome from both drivers."""
    scenarios = [
        {"before": [Decision.replace("cached")]},
        {"before": [Decision.cancel("no")]},
        {"after": [Decision.retry(), None]},
        {"after": [Decision.replace("other")]},
        {"after": [Decision.cancel("bad")]},
    ]
    for decisions in scenarios:
        logs: list[list] = []
        outcomes = []
        for _ in range(2):
            log: list = []
            logs.append(log)
        pipelines = [Pipeline([Recorder("hooks", HOOKS, logs[i], decisions=decisions)]) for i in range(2)]
        outcomes.append(pipelines[0].run(new_op(), lambda op: "r") if "cancel" not in str(decisions)
                        else pytest.raises(Cancelled, pipelines[0].run, new_op(), lambda op: "r").value.code)

        async def go(pipeline: Pipeline, cancels: bool) -> Any:
            async def handler(op: Operation) -> str:
                return "r"
            if cancels:
                with pytest.raises(Cancelled) as info:
                    await pipeline.arun(new_op(), handler)
                return info.value.code
            return await pipeline.arun(new_op(), handler)

        outcomes.append(asyncio.run(go(pipelines[1], "cancel" in str(decisions))))
        assert outcomes[0] == outcomes[1], decisions
        assert logs[0] == logs[1], decisions


def test_before_replace_skips_the_handler_and_cancel_fails_with_reason() -> None:
    log: list = []
    ran: list = []
    pipeline = Pipeline([Recorder("hooks", HOOKS, log, decisions={"before": [Decision.replace(7)]})])
    assert pipeline.run(new_op(), lambda op: ran.append(1)) == 7 and ran == []
    pipeline = Pipeline([Recorder("events", EVENTS, log, decides=False),
                         Recorder("hooks", HOOKS, log, decisions={"before": [Decision.cancel("closed")]})])
    log.clear()
    with pytest.raises(Cancelled, match="demo 'x' cancelled by a hook: closed") as info:
        pipeline.run(new_op(), lambda op: ran.append(1))
    assert ran == [] and info.value.details["reason"] == "closed"
    assert ("events", "failed:cancelled", 1) in log and not any("error" in stage for _, stage, _ in log)


def test_retry_is_bounded_and_counts_attempts() -> None:
    log: list = []
    always = {"after": [Decision.retry()] * 10}
    pipeline = Pipeline([Recorder("hooks", HOOKS, log, decisions=always)])
    calls: list[int] = []
    result = pipeline.run(new_op(), lambda op: calls.append(op.attempt) or op.attempt)
    assert calls == list(range(1, MAX_RETRIES + 2)) and result == MAX_RETRIES + 1


def test_error_stage_retry_then_replace_and_hook_retries_detail() -> None:
    log: list = []
    failures = iter([RuntimeError("boom"), RuntimeError("boom again")])

    def flaky(op: Operation) -> str:
        exc = next(failures, None)
        if exc:
            raise exc
        return "ok"

    pipeline = Pipeline([Recorder("hooks", HOOKS, log, decisions={"error": [Decision.retry(), Decision.retry()]})])
    assert pipeline.run(new_op(), flaky) == "ok"
    pipeline = Pipeline([Recorder("hooks", HOOKS, log, decisions={"error": [Decision.retry()] * 10})])
    with pytest.raises(AikitError) as info:
        pipeline.run(new_op(), lambda op: (_ for _ in ()).throw(RuntimeError("always")))
    assert info.value.code == "internal_error" and info.value.details["hook_retries"] == MAX_RETRIES
    pipeline = Pipeline([Recorder("hooks", HOOKS, log, decisions={"error": [Decision.replace("fallback")]})])
    assert pipeline.run(new_op(), lambda op: (_ for _ in ()).throw(RuntimeError("x"))) == "fallback"


def test_invalid_argument_errors_are_never_retried() -> None:
    log: list = []
    calls: list[int] = []

    def bad(op: Operation) -> None:
        calls.append(1)
        raise InvalidArgument("wrong type")

    pipeline = Pipeline([Recorder("hooks", HOOKS, log, decisions={"error": [Decision.retry()] * 5})])
    with pytest.raises(InvalidArgument):
        pipeline.run(new_op(), bad)
    assert calls == [1] and ("hooks", "error:invalid_argument:False", 1) in log


def test_a_guard_rejects_and_only_outer_interceptors_decide() -> None:
    log: list = []
    guard = Recorder("policy", POLICY, log, decisions={"before": [PermissionDenied("not allowed")]}, decides=False)
    hooks = Recorder("hooks", HOOKS, log, decisions={"error": [Decision.retry()]})
    events = Recorder("events", EVENTS, log, decides=False)
    ran: list = []
    with pytest.raises(PermissionDenied, match="not allowed"):
        Pipeline([guard, hooks, events]).run(new_op(), lambda op: ran.append(1))
    assert ran == []
    assert ("hooks", "error:permission_denied:False", 1) in log  # the outer decider saw it, without a retry
    assert not any(name == "policy" and "error" in stage for name, stage, _ in log)
    assert ("events", "failed:permission_denied", 1) in log


def test_reject_reports_and_lets_the_error_stage_replace() -> None:
    log: list = []
    pipeline = Pipeline([Recorder("hooks", HOOKS, log, decisions={"error": [Decision.replace("instead")]})])
    assert pipeline.reject(new_op(), InvalidArgument("bad")) == "instead"
    with pytest.raises(InvalidArgument):
        Pipeline([Recorder("events", EVENTS, log, decides=False)]).reject(new_op(), InvalidArgument("bad"))


def test_fast_paths_give_the_same_observable_behaviour() -> None:
    """Observers and guards only: no generator, but the same notifications and errors."""
    log: list = []
    events = Recorder("events", EVENTS, log, decides=False)
    assert Pipeline([events]).run(new_op(), lambda op: 5) == 5
    assert [stage for _, stage, _ in log] == ["before", "started", "finished:5"]
    log.clear()
    with pytest.raises(AikitError) as info:
        Pipeline([events]).run(new_op(), lambda op: 1 / 0)
    assert info.value.code == "internal_error" and isinstance(info.value.__cause__, ZeroDivisionError)
    assert [stage for _, stage, _ in log] == ["before", "started", "failed:internal_error"]
    assert Pipeline().run(new_op(), lambda op: "direct") == "direct"

    class NotInterested(Recorder):
        def wants(self, op: Operation) -> bool:
            return False

    log.clear()
    assert Pipeline([NotInterested("x", HOOKS, log)]).run(new_op(), lambda op: 1) == 1 and log == []


def test_interrupts_are_observed_never_decided() -> None:
    log: list = []
    pipeline = Pipeline([Recorder("hooks", HOOKS, log, decisions={"error": [Decision.replace("no")]})])

    def interrupted(op: Operation) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipeline.run(new_op(), interrupted)
    assert ("hooks", "failed:interrupted", 1) in log and not any("error" in s for _, s, _ in log)

    async def cancelled(op: Operation) -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(pipeline.arun(new_op(), cancelled))


def test_a_kind_may_run_its_before_stage_inside_the_handler() -> None:
    """defers_before: the handler calls run_before once the payload is known."""
    import dataclasses

    late = dataclasses.replace(KIND, defers_before=True)
    log: list = []
    pipeline = Pipeline([Recorder("hooks", HOOKS, log, decisions={"before": [Decision.replace("from hook")]})])

    def handler(op: Operation) -> str:
        op.payload["value"] = 42
        early = pipeline.run_before(op)
        return early[0] if early else "written"

    assert pipeline.run(Operation(late, "x", {}), handler) == "from hook"
    assert [stage for _, stage, _ in log][:2] == ["started", "before"]


def test_retry_delay_is_slept_by_both_drivers(caplog: pytest.LogCaptureFixture) -> None:
    log: list = []
    pipeline = Pipeline([Recorder("hooks", HOOKS, log, decisions={"after": [Decision.retry(delay=0.01)] * 10})])
    with caplog.at_level(logging.WARNING):
        assert pipeline.run(new_op(), lambda op: op.attempt) == MAX_RETRIES + 1
    assert "another retry was asked for" in caplog.text


def test_add_refuses_what_is_not_an_interceptor_and_remove_finds() -> None:
    pipeline = Pipeline()
    with pytest.raises(TypeError):
        pipeline.add(object())  # type: ignore[arg-type]
    item = pipeline.add(Recorder("r", HOOKS, []))
    assert pipeline.find(Recorder) is item and pipeline.remove(item) and not pipeline.remove(item)


def test_what_the_pipeline_cached_about_a_kind_follows_hooks_and_subscriptions() -> None:
    """A kind run once with nobody watching runs directly; a hook registered or an event
    subscribed afterwards is seen by the next operation of that kind (the cache is cleared)."""
    from aikit_components.events import EventBus
    from aikit_components.hooks import HookRegistry, HookResult
    from aikit_components.operations.standard import standard_pipeline

    hooks, events = HookRegistry(), EventBus()
    pipeline = standard_pipeline(events, hooks)
    assert not pipeline.watches(KIND) and pipeline.run(new_op(), lambda op: "direct") == "direct"
    hook = hooks.register("demo.before", lambda ctx: HookResult.replace("from a hook"))
    assert pipeline.watches(KIND) and pipeline.run(new_op(), lambda op: "direct") == "from a hook"
    hooks.unregister(hook)
    sub = events.subscribe("demo.finished")
    assert pipeline.run(new_op(), lambda op: "ran") == "ran" and sub.drain()[0].topic == "demo.finished"
    sub.close()
    assert not pipeline.watches(KIND)


def test_short_lived_pipelines_leave_no_listeners_behind() -> None:
    import gc

    from aikit_components.events import EventBus
    from aikit_components.hooks import HookRegistry
    from aikit_components.operations.standard import standard_pipeline

    hooks, events = HookRegistry(), EventBus()
    for _ in range(50):
        standard_pipeline(events, hooks)
    gc.collect()
    kept = standard_pipeline(events, hooks)
    assert len(hooks.listeners) == 1 and len(events.listeners) == 1 and kept.interceptors


@pytest.mark.parametrize("decider", [False, True], ids=["fast path", "flow"])
def test_async_notifications_are_awaited_before_the_result_and_leave_the_loop_free(decider: bool) -> None:
    """An interceptor whose notification blocks (a commit) overrides afinished/afailed: async
    callers await them, so the loop runs other tasks meanwhile, and the caller gets the result (or
    the error) only once they are done; sync callers use finished/failed."""
    log: list[str] = []
    gate = threading.Event()

    class Committer(Interceptor):
        order, name, decides = EVENTS, "committer", False

        def finished(self, op: Operation, result: Any) -> None:
            log.append(f"finished:{result}")

        def failed(self, op: Operation, error: AikitError) -> None:
            log.append(f"failed:{error.code}")

        async def afinished(self, op: Operation, result: Any) -> None:
            assert await asyncio.to_thread(gate.wait, 30), "the loop was held: the other task never ran"
            log.append(f"afinished:{result}")

        async def afailed(self, op: Operation, error: AikitError) -> None:
            assert await asyncio.to_thread(gate.wait, 30), "the loop was held: the other task never ran"
            log.append(f"afailed:{error.code}")

    pipeline = Pipeline([Committer(), *([Recorder("hooks", HOOKS, [])] if decider else [])])

    async def other() -> None:
        log.append("loop free")
        gate.set()

    async def call(handler: Any) -> None:
        try:
            log.append(f"returned:{await pipeline.arun(new_op(), handler)}")
        except AikitError as exc:
            log.append(f"raised:{exc.code}")

    async def both(handler: Any) -> None:
        gate.clear()
        await asyncio.gather(call(handler), other())

    asyncio.run(both(lambda op: 5))
    assert log == ["loop free", "afinished:5", "returned:5"]
    log.clear()
    asyncio.run(both(lambda op: 1 / 0))
    assert log == ["loop free", "afailed:internal_error", "raised:internal_error"]
    log.clear()
    assert pipeline.run(new_op(), lambda op: 7) == 7 and log == ["finished:7"]
