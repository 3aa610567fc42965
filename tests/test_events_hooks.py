"""The event bus and the hook registry from plain Python (the Lua faces are in
test_lua_components.py): glob routing, the three delivery modes, bounded queues and their
overflow policies, priorities and the hook actions, and the lifecycle events the components
publish. Async subscribers and hooks run on a real event loop in its own thread, as in the kernel.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aikit_components.components import Components
from aikit_components.config import Config
from aikit_components.errors import AikitError, InvalidArgument
from aikit_components.events import MAX_CACHED_ROUTES, Event, EventBus
from aikit_components.hooks import CONTINUE, HookContext, HookRegistry, HookResult


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in its own thread (the kernel's "aikit-io" thread)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-io", daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


# ====================================================================================== events
def test_glob_subscriptions_route_by_topic() -> None:
    bus = EventBus()
    subs = {pattern: bus.subscribe(pattern) for pattern in ("*", "tool.*", "tool.called", "state.[wd]*", "x?")}
    for topic in ("tool.called", "tool.failed", "state.written", "state.deleted", "state.read", "xy", "xyz"):
        bus.publish(topic, {"t": topic})
    got = {pattern: [e.topic for e in sub.drain()] for pattern, sub in subs.items()}
    assert got["*"] == ["tool.called", "tool.failed", "state.written", "state.deleted", "state.read", "xy", "xyz"]
    assert got["tool.*"] == ["tool.called", "tool.failed"]
    assert got["tool.called"] == ["tool.called"]
    assert got["state.[wd]*"] == ["state.written", "state.deleted"]
    assert got["x?"] == ["xy"]


def test_publish_returns_matches_and_events_carry_source_and_sequence() -> None:
    bus = EventBus()
    assert bus.publish("nobody.listens", 1) == 0
    sub = bus.subscribe("a.*")
    assert bus.publish("a.b", {"n": 1}, source="tests") == 1
    bus.publish("a.c", [1, 2])
    first, second = sub.drain()
    assert (first.topic, first.payload, first.source) == ("a.b", {"n": 1}, "tests")
    assert second.seq > first.seq and second.payload == [1, 2]


def test_a_subscription_made_after_a_publish_sees_later_events() -> None:
    bus = EventBus()
    bus.publish("t", 1)  # caches the (empty) route for "t"
    sub = bus.subscribe("t")
    bus.publish("t", 2)
    assert [e.payload for e in sub.drain()] == [2]
    sub.close()
    assert bus.publish("t", 3) == 0 and sub.drain() == []


def test_callback_subscribers_run_in_the_publishing_thread_and_a_raising_one_is_isolated(
        caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    threads: list[str] = []

    def broken(event: Event) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe("job.*", broken)
    bus.subscribe("job.*", lambda e: threads.append(threading.current_thread().name))
    pulled = bus.subscribe("job.*")
    worker = threading.Thread(target=lambda: bus.publish("job.done", 1), name="publisher")
    worker.start()
    worker.join()
    assert threads == ["publisher"]
    assert [e.topic for e in pulled.drain()] == ["job.done"]
    assert "subscriber bug" in caplog.text


def test_async_subscribers_run_on_the_loop(loop: asyncio.AbstractEventLoop) -> None:
    bus = EventBus(loop_getter=lambda: loop)
    seen: list[tuple[Any, str]] = []
    done = threading.Event()

    async def handler(event: Event) -> None:
        await asyncio.sleep(0)
        seen.append((event.payload, threading.current_thread().name))
        if event.payload == 2:
            raise ValueError("an async subscriber bug is logged, not fatal")
        if event.payload == 4:
            done.set()

    sub = bus.subscribe("n", handler)
    for n in range(5):
        bus.publish("n", n)
    assert done.wait(10)
    assert seen == [(n, "test-io") for n in range(5)]  # in order, on the loop, past the failure
    assert sub.delivered == 4


def test_async_subscriber_without_a_loop_is_a_clear_error() -> None:
    bus = EventBus()

    async def handler(event: Event) -> None:
        pass

    bus.subscribe("x", handler)
    with pytest.raises(RuntimeError, match="loop_getter"):
        bus.publish("x")


def test_overflow_drop_oldest_keeps_the_newest() -> None:
    bus = EventBus()
    sub = bus.subscribe("tick", max_size=3)
    for n in range(10):
        bus.publish("tick", n)
    assert [e.payload for e in sub.drain()] == [7, 8, 9]
    assert sub.dropped == 7 and sub.pending() == 0


def test_overflow_drop_newest_keeps_the_first() -> None:
    bus = EventBus()
    sub = bus.subscribe("tick", max_size=3, overflow="drop_newest")
    for n in range(10):
        bus.publish("tick", n)
    assert [e.payload for e in sub.drain()] == [0, 1, 2]
    assert sub.dropped == 7


def test_a_full_queue_never_blocks_the_publisher_and_other_subscribers_get_everything() -> None:
    bus = EventBus()
    tiny = bus.subscribe("*", max_size=1)
    roomy = bus.subscribe("*", max_size=100_000)
    publishers = [threading.Thread(target=lambda i=i: [bus.publish(f"p{i}", n) for n in range(2000)])
                  for i in range(4)]
    for t in publishers:
        t.start()
    for t in publishers:
        t.join()
    assert roomy.pending() == 8000 and roomy.dropped == 0
    assert tiny.pending() == 1 and tiny.dropped == 7999
    per_topic: dict[str, list[int]] = {}
    for event in roomy.drain():
        per_topic.setdefault(event.topic, []).append(event.payload)
    assert all(values == list(range(2000)) for values in per_topic.values()) and len(per_topic) == 4


@pytest.mark.parametrize("kwargs", [{"max_size": 0}, {"max_size": -1}, {"max_size": True}, {"max_size": 1.5},
                                    {"overflow": "block"}])
def test_bad_subscription_options(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        EventBus().subscribe("x", **kwargs)


def test_receive_waits_times_out_and_is_woken_by_close() -> None:
    bus = EventBus()
    sub = bus.subscribe("later")
    assert sub.receive(timeout=0.01) is None
    threading.Timer(0.05, lambda: bus.publish("later", "hi")).start()
    event = sub.receive(timeout=10)
    assert event is not None and event.payload == "hi"
    threading.Timer(0.05, sub.close).start()
    assert sub.receive(timeout=None) is None  # close wakes a receiver waiting forever


def test_route_cache_stays_bounded_with_unbounded_topics() -> None:
    bus = EventBus()
    sub = bus.subscribe("run.*")
    for n in range(MAX_CACHED_ROUTES * 2 + 10):
        bus.publish(f"run.{n}", n)
    assert len(bus._routes) <= MAX_CACHED_ROUTES
    assert sub.pending() == MAX_CACHED_ROUTES * 2 + 10


# ====================================================================================== hooks
def test_priorities_higher_first_then_registration_order() -> None:
    hooks = HookRegistry()
    order: list[str] = []
    for name, priority in (("low", -5), ("first-zero", 0), ("high", 10), ("second-zero", 0)):
        hooks.register("op.before", lambda c, n=name: order.append(n), priority=priority, name=name)
    hooks.run("op.before", {})
    assert order == ["high", "first-zero", "second-zero", "low"]
    assert [name for _, name in hooks.list("op.before")] == order


def test_modify_chains_and_cancel_stops_the_chain() -> None:
    hooks = HookRegistry()
    hooks.register("op.before", lambda c: HookResult.modify({**c.payload, "n": c.payload["n"] + 1}), priority=3)
    hooks.register("op.before", lambda c: c.payload.update(n=c.payload["n"] * 10), priority=2)  # in place
    hooks.register("op.before", lambda c: HookResult.cancel(f"n is {c.payload['n']}"), priority=1)
    never: list[int] = []
    hooks.register("op.before", lambda c: never.append(1), priority=0)
    outcome = hooks.run("op.before", {"n": 1})
    assert outcome.cancelled and outcome.reason == "n is 20" and outcome.payload == {"n": 20}
    assert never == []


@pytest.mark.parametrize("result, action, value, delay", [
    (None, "continue", None, 0.0),
    (CONTINUE, "continue", None, 0.0),
    (HookResult.retry(delay=0.25), "retry", None, 0.25),
    (HookResult.replace({"cached": True}), "replace", {"cached": True}, 0.0),
])
def test_each_action_is_reported_in_the_outcome(result: Any, action: str, value: Any, delay: float) -> None:
    hooks = HookRegistry()
    hooks.register("op.after", lambda c: result)
    outcome = hooks.run("op.after", {"x": 1})
    assert (outcome.action, outcome.value, outcome.delay) == (action, value, delay)
    assert outcome.errors == []


def test_a_raising_hook_is_reported_and_skipped() -> None:
    reported: list[tuple[str, str, str]] = []
    hooks = HookRegistry(on_error=lambda point, name, exc: reported.append((point, name, str(exc))))

    def broken(ctx: HookContext) -> None:
        raise KeyError("missing")

    hooks.register("op.before", broken, priority=5)
    hooks.register("op.before", lambda c: HookResult.replace("still decided"))
    outcome = hooks.run("op.before", {})
    assert outcome.replaced and outcome.value == "still decided"
    assert reported == [("op.before", "broken", "'missing'")]
    assert "broken" in outcome.errors[0] and "KeyError" in outcome.errors[0]


def test_a_bad_return_value_is_reported_not_obeyed() -> None:
    hooks = HookRegistry()
    hooks.register("op.before", lambda c: "cancel")
    outcome = hooks.run("op.before", {})
    assert outcome.action == "continue" and "expected None or HookResult" in outcome.errors[0]


def test_async_hooks_run_with_arun_and_are_refused_by_run(loop: asyncio.AbstractEventLoop) -> None:
    hooks = HookRegistry()

    async def slow_guard(ctx: HookContext) -> HookResult:
        await asyncio.sleep(0)
        return HookResult.cancel("async says no")

    hooks.register("op.before", slow_guard)
    outcome = asyncio.run_coroutine_threadsafe(hooks.arun("op.before", {}), loop).result(10)
    assert outcome.cancelled and outcome.reason == "async says no"
    sync_outcome = hooks.run("op.before", {})  # a sync operation cannot await: reported, not obeyed
    assert sync_outcome.action == "continue" and "async hook" in sync_outcome.errors[0]


def test_unregister_and_bad_registration() -> None:
    hooks = HookRegistry()
    hook_id = hooks.register("op.before", lambda c: HookResult.cancel("x"))
    assert hooks.has("op.before")
    assert hooks.unregister(hook_id) is True and hooks.unregister(hook_id) is False
    assert not hooks.has("op.before") and not hooks.run("op.before", {}).cancelled
    with pytest.raises(TypeError, match="callable"):
        hooks.register("op.before", "not a function")  # type: ignore[arg-type]


# ====================================================================================== wiring
def test_components_publish_lifecycle_events_and_hook_failures(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = Config.load(cwd=tmp_path, env={}, user_dir=tmp_path / "user")
    c = Components.open(config=config, data_dir=tmp_path / "data", plugins=False)
    sub = c.events.subscribe("*")

    def broken(ctx: HookContext) -> None:
        raise RuntimeError("hook bug")

    c.hooks.register("state.write.before", broken, name="broken-guard")
    c.state.set("global", "k", 1)
    assert c.state.get("global", "k") == 1  # the raising hook did not stop the write
    c.artifacts.put("notes", "text", session_id=c.session.id)
    c.tools.call("hash", {"text": "x"}, c.tool_context())
    with pytest.raises(AikitError) as bad:
        c.tools.call("base64_decode", {"data": "%%%"}, c.tool_context())
    assert bad.value.code == "invalid_argument"
    c.close()
    events = sub.drain()
    topics = [e.topic for e in events]
    for expected in ("hook.failed", "state.written", "artifact.put", "tool.called", "tool.finished", "tool.failed",
                     "session.completed"):
        assert expected in topics, (expected, topics)
    failed = next(e for e in events if e.topic == "hook.failed")
    assert failed.payload == {"point": "state.write.before", "hook": "broken-guard", "error": "RuntimeError: hook bug"}
    assert topics.index("tool.called") < topics.index("tool.finished") < topics.index("session.completed")


def test_a_subscribers_own_activity_is_not_delivered_back_to_it(lua) -> None:
    """Issue 17: a subscriber that writes State (or publishes) does not call itself in a loop; the
    others still see what it did, and publish counts only subscriptions."""
    n, other, count = lua.run("""
        local n, other = 0, 0
        Event.subscribe('*', function(e) n = n + 1; State.set('global', 'k', n) end)
        Event.subscribe('state.*', function(e) other = other + 1 end)
        State.set('global', 'k', 0)
        for i = 1, 5 do Event.dispatch() end
        return n, other, Event.publish('nobody.listens.here.x')""")
    assert (n, other) == (1, 2)
    assert count == 1  # the '*' subscription only


def test_a_repeated_subscriber_failure_is_collapsed(lua) -> None:
    lua.run("""
        Event.subscribe('tick', function(e) error('broken', 0) end)
        for i = 1, 50 do Event.publish('tick') end
        Event.dispatch()""")
    errors = [t for name, t in lua.out.streams if name == "stderr"]
    assert sum("failed: broken" in t for t in errors) == 1
    assert any("... 49 more failure(s)" in t for t in errors), errors
