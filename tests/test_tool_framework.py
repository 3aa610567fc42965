"""The tool framework: declaration -> schema/docs/validation, the call pipeline, plugins."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import time
from pathlib import Path
from typing import Literal

import pytest

from aikit_components.errors import AikitError, BudgetExceeded, Cancelled, NotFound, ValidationError
from aikit_components.events import EventBus
from aikit_components.hooks import HookRegistry, HookResult
from aikit_components.security import SecurityPolicy
from aikit_components.tools import Budget, ToolContext, ToolRegistry, tool


@tool(category="demo", security="safe", examples=[{"args": {"name": "Ada"}, "result": "hello Ada"}])
def greet(name: str, times: int = 1, style: Literal["plain", "loud"] = "plain", tags: list[str] | None = None) -> str:
    """Greet someone.

    Args:
        name: Who to greet.
        times: How many times to say hello.
        style: plain or loud.
        tags: Optional labels.

    Returns:
        The greeting text.
    """
    word = "HELLO" if style == "loud" else "hello"
    return " ".join([word] * times) + " " + name


@tool(category="demo")
async def slow_echo(ctx: ToolContext, text: str, delay: float = 0.0) -> dict:
    """Echo text after a delay.

    Args:
        text: What to echo.
        delay: Seconds to wait first.
    """
    await asyncio.sleep(delay)
    return {"text": text, "caller": ctx.caller}


@pytest.fixture
def ctx() -> ToolContext:
    return ToolContext(SecurityPolicy.default())


def registry(**kw: object) -> ToolRegistry:
    reg = ToolRegistry(**kw)  # type: ignore[arg-type]
    reg.register_all([greet, slow_echo])
    return reg


def test_schema_docs_and_defaults_come_from_the_declaration() -> None:
    props = greet.parameters["properties"]
    assert greet.parameters["required"] == ["name"]
    assert props["times"] == {"type": "integer", "description": "How many times to say hello.", "default": 1}
    assert props["style"]["enum"] == ["plain", "loud"]
    assert greet.parameters["additionalProperties"] is False
    assert greet.returns == "The greeting text."
    doc = greet.doc()
    assert doc.startswith("Tool greet{name, times?, style?, tags?}") and "Who to greet." in doc and "Example:" in doc
    assert "ctx" not in slow_echo.parameters["properties"] and slow_echo.is_async and slow_echo.wants_ctx


def test_every_problem_is_listed_in_one_error(ctx: ToolContext) -> None:
    with pytest.raises(ValidationError) as err:
        registry().call("greet", {"times": "x", "style": "odd", "tags": [1], "extra": True}, ctx)
    problems = err.value.problems
    assert problems == [
        "name: required",
        "times: expected integer, got string",
        'style: must be one of "plain", "loud", got "odd"',
        "tags: matches none of the allowed forms (tags[1]: expected string, got integer | tags: expected nil, "
        "got table (a list))",
        "extra: unknown parameter (known: name, style, tags, times)",
    ]
    assert err.value.code == "invalid_argument" and err.value.details["problems"] == problems


def test_calls_sync_and_async(ctx: ToolContext) -> None:
    reg = registry()
    assert reg.call("greet", {"name": "Ada", "times": 2.0}, ctx) == "hello hello Ada"  # integral float from Lua
    assert asyncio.run(reg.acall("slow_echo", {"text": "hi"}, ctx)) == {"text": "hi", "caller": "python"}
    assert asyncio.run(reg.acall("greet", {"name": "Bo"}, ctx)) == "hello Bo"
    with pytest.raises(AikitError, match="acall"):
        reg.call("slow_echo", {"text": "x"}, ctx)


def test_unknown_tool_suggests_names(ctx: ToolContext) -> None:
    with pytest.raises(NotFound, match="did you mean greet"):
        registry().call("gret", {}, ctx)


def test_budget_limits_tool_calls() -> None:
    ctx = ToolContext(SecurityPolicy.default(), budget=Budget(max_tool_calls=2))
    reg = registry()
    reg.call("greet", {"name": "a"}, ctx)
    reg.call("greet", {"name": "b"}, ctx)
    with pytest.raises(BudgetExceeded, match="max_tool_calls"):
        reg.call("greet", {"name": "c"}, ctx)


def test_hooks_cancel_modify_replace_and_retry(ctx: ToolContext) -> None:
    hooks, events = HookRegistry(), EventBus()
    seen = events.subscribe("tool.*")
    reg = registry(hooks=hooks, events=events)
    cancel = hooks.register("tool.before",
                            lambda c: HookResult.cancel("not today") if c.payload["args"]["name"] == "x" else None)
    with pytest.raises(Cancelled, match="not today"):
        reg.call("greet", {"name": "x"}, ctx)
    hooks.unregister(cancel)
    hooks.register("tool.before", lambda c: HookResult.modify({**c.payload, "args": {**c.payload["args"], "style": "loud"}}))
    assert reg.call("greet", {"name": "y"}, ctx) == "HELLO y"
    hooks.register("tool.after", lambda c: HookResult.replace(c.payload["result"].upper()), priority=5)
    assert reg.call("greet", {"name": "z"}, ctx) == "HELLO Z"
    topics = [e.topic for e in seen.drain()]
    assert "tool.failed" in topics and topics.count("tool.called") == 2 and "tool.finished" in topics


def test_rejected_calls_are_reported_like_failures(ctx: ToolContext) -> None:
    """Invalid arguments and a used-up budget fail before the tool runs; observers still see
    tool.failed (with the code) and the tool.error hook, which may replace the result."""
    hooks, events = HookRegistry(), EventBus()
    failed = events.subscribe("tool.failed")
    seen: list[tuple[str, str, object]] = []

    def on_error(c):  # type: ignore[no-untyped-def]
        seen.append((c.payload["name"], c.payload["error"]["code"], c.payload["args"]))
        if c.payload["args"] == {"name": "fallback", "times": "x"}:
            return HookResult.replace("replaced")
        return HookResult.retry()  # the same arguments would fail again: not retried

    hooks.register("tool.error", on_error)
    reg = registry(hooks=hooks, events=events)
    with pytest.raises(ValidationError) as info:
        reg.call("greet", {"times": "x"}, ctx)
    assert info.value.problems == ["name: required", "times: expected integer, got string"]  # not retried
    assert seen == [("greet", "invalid_argument", {"times": "x"})]
    with pytest.raises(ValidationError):
        asyncio.run(reg.acall("slow_echo", {"text": 3}, ctx))
    assert seen[-1] == ("slow_echo", "invalid_argument", {"text": 3})
    assert reg.call("greet", {"name": "fallback", "times": "x"}, ctx) == "replaced"
    with pytest.raises(NotFound):
        reg.call("no_such_tool", {}, ctx)  # no tool, so no tool failure to report
    spent = ToolContext(SecurityPolicy.default(), budget=Budget(max_tool_calls=0))
    with pytest.raises(BudgetExceeded):
        asyncio.run(reg.acall("slow_echo", {"text": "x"}, spent))
    reported = [(e.payload["name"], e.payload["code"]) for e in failed.drain()]
    assert reported == [("greet", "invalid_argument"), ("slow_echo", "invalid_argument"),
                        ("greet", "invalid_argument"), ("slow_echo", "budget_exceeded")]
    assert len(seen) == 4 and seen[-1][:2] == ("slow_echo", "budget_exceeded")


def test_a_raising_hook_does_not_break_the_call(ctx: ToolContext) -> None:
    reported: list[str] = []
    hooks = HookRegistry(on_error=lambda point, name, exc: reported.append(f"{point}:{exc}"))
    hooks.register("tool.before", lambda c: 1 / 0)
    assert registry(hooks=hooks).call("greet", {"name": "a"}, ctx) == "hello a"
    assert reported == ["tool.before:division by zero"]


def test_error_hook_retries_a_flaky_tool(ctx: ToolContext) -> None:
    attempts = {"n": 0}

    @tool()
    def flaky() -> str:
        """Fails twice."""
        attempts["n"] += 1
        if attempts["n"] < 3:
            raise RuntimeError("transient")
        return "ok"

    hooks = HookRegistry()
    hooks.register("tool.error", lambda c: HookResult.retry())
    reg = ToolRegistry(hooks=hooks)
    reg.register(flaky)
    assert reg.call("flaky", {}, ctx) == "ok" and attempts["n"] == 3


def test_plugins_load_through_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "aikit_demo_plugin.py").write_text(textwrap.dedent('''
        from aikit_components.tools import tool

        @tool(category="plugin")
        def shout(text: str) -> str:
            """Upper-case text.

            Args:
                text: The text.
            """
            return text.upper()

        TOOLS = [shout]
    '''))
    dist = tmp_path / "aikit_demo_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: aikit-demo-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[aikit.tools]\ndemo = aikit_demo_plugin\nbroken = no_such_module_xyz:TOOLS\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = ToolRegistry()
    assert reg.load_plugins() == ["shout"]
    assert reg.get("shout").source == "plugin:aikit-demo-plugin"
    assert reg.call("shout", {"text": "hi"}, ToolContext(SecurityPolicy.default())) == "HI"
    assert len(reg.plugin_errors) == 1 and "broken" in reg.plugin_errors[0]
    sys.modules.pop("aikit_demo_plugin", None)


def test_builtin_catalogue() -> None:
    from aikit_components.tools import default_registry

    reg = default_registry(plugins=False)
    tools = reg.list()
    assert len(tools) >= 40, [t.name for t in tools]
    for item in tools:
        assert item.description and item.category and item.security, item.name
        for name, prop in item.parameters.get("properties", {}).items():
            assert prop.get("description"), f"{item.name}.{name} has no description"


def test_wall_time_budget_is_checked_before_a_call() -> None:
    """A run whose wall time is used up may not start another tool call (rule and fix named)."""
    budget = Budget(max_wall_time_s=5, started=time.monotonic() - 10)
    ctx = ToolContext(SecurityPolicy.default(), budget=budget)
    with pytest.raises(BudgetExceeded) as info:
        registry().call("greet", {"name": "late"}, ctx)
    assert info.value.code == "budget_exceeded"
    assert info.value.details == {"rule": "max_wall_time_s", "limit": 5}
    assert "before calling 'greet'" in info.value.message and "security.max_wall_time_s" in info.value.message


def test_wall_time_budget_cuts_off_a_running_async_tool() -> None:
    """The budget is a deadline for the run: an async tool still running when it expires is
    cancelled with budget_exceeded instead of running on."""
    hooks, events = HookRegistry(), EventBus()
    failed = events.subscribe("tool.failed")
    errors: list[str] = []
    hooks.register("tool.error", lambda c: errors.append(c.payload["error"]["code"]))
    ctx = ToolContext(SecurityPolicy.default(), budget=Budget(max_wall_time_s=0.2))
    with pytest.raises(BudgetExceeded) as info:
        asyncio.run(registry(hooks=hooks, events=events).acall("slow_echo", {"text": "x", "delay": 60}, ctx))
    assert info.value.details["rule"] == "max_wall_time_s"
    assert "while 'slow_echo' was running" in info.value.message
    assert errors == ["budget_exceeded"]
    assert [e.payload["code"] for e in failed.drain()] == ["budget_exceeded"]
    # a tool's own timeout is its own error, not the budget's
    @tool(category="demo")
    async def own_timeout() -> None:
        """Raise a timeout of its own."""
        raise TimeoutError("upstream took too long")

    reg = ToolRegistry()
    reg.register(own_timeout)
    roomy = ToolContext(SecurityPolicy.default(), budget=Budget(max_wall_time_s=60))
    with pytest.raises(AikitError) as own:
        asyncio.run(reg.acall("own_timeout", {}, roomy))
    assert own.value.code == "timeout" and "upstream took too long" in own.value.message


class _Text(str):
    pass


@pytest.mark.parametrize("types", ["string", "integer", "number", "boolean", "array", "object", "null",
                                   ["string", "null"], ["integer", "boolean"], ["number", "unknown"]])
def test_a_parameter_is_checked_as_its_own_schema_checks_it_whatever_its_value(types: object) -> None:
    """An object's validator accepts a parameter of a type its schema accepts as such without
    calling the parameter's check: it must find exactly the problems that check finds."""
    from aikit_components.tools.schema import compile_validator

    values = ["s", _Text("t"), "", 0, 3, -2, True, False, 1.0, 2.5, float("nan"), None, [], [1], {}, {"a": 1}]
    alone = compile_validator({"type": types})
    for required in (False, True):
        schema = {"type": "object", "properties": {"x": {"type": types}}, **({"required": ["x"]} if required else {})}
        within = compile_validator(schema)
        for value in values:
            expected = [p.replace("(arguments)", "x", 1) for p in alone(value)]
            if value is None and not required:
                expected = []  # an optional parameter given as nil is left out, not checked
            if value is None and required and expected:
                expected = ["x: required", *expected]
            assert within({"x": value}) == expected, (types, required, value)


def test_nested_tables_are_checked_at_every_level() -> None:
    from aikit_components.tools.schema import compile_validator

    validate = compile_validator({"type": "object", "properties": {
        "x": {"type": "object", "properties": {"y": {"type": "integer"}}, "required": ["y"]}}})
    assert validate({"x": {"y": True}}) == ["x.y: expected integer, got boolean"]
    assert validate({"x": 5}) == ["x: expected table (with named fields), got integer"]
    assert validate({"x": {}}) == ["x.y: required"]
    assert validate({"x": {"y": 2.0}}) == [] and validate({"x": {"y": 1}}) == []
    assert validate(7) == ["(arguments): expected table (with named fields), got integer"]
