"""The workflow engine (``aikit_components.workflows.engine``) with real components: a real State
(SQLite under ``tmp_path``), the real tool registry (``run_process`` starts real programs), real
hooks and events, and a real local HTTP server speaking the OpenAI wire format for the ``llm``
and ``agent`` step kinds. Every scheduling rule of the engine's docstring has a test here."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aikit_components.components import Components
from aikit_components.config import Config
from aikit_components.errors import PermissionDenied, ValidationError
from aikit_components.hooks import HookResult
from aikit_components.operations import MAX_RETRIES, Interceptor, Operation
from aikit_components.workflows import engine
from aikit_components.workflows.engine import (
    StepContext,
    layers,
    load_run,
    run_scope,
    validate,
)
from aikit_components.workflows.model import (
    Condition,
    Loop,
    RunRecord,
    Step,
    StepRecord,
    Workflow,
)
from aikit_components.workflows.templates import (
    TemplateContext,
    TemplateError,
    format_value,
    references,
)
from aikit_components.workflows.templates import (
    compile as compile_template,
)
from tests.support.llm_server import Reply
from tests.support.processes import processes_with, sleep_marker
from tests.support.workflows import make_components

OPENAI = "/v1/chat/completions"


# --------------------------------------------------------------------------- helpers
@pytest.fixture
def comps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(tmp_path)  # run_process works in the current directory (an allowed path)
    c = make_components(tmp_path)
    yield c
    c.close()


def go(wf: Workflow, c: Components, **kw: Any) -> RunRecord:
    return asyncio.run(engine.run(wf, components=c, **kw))


def statuses(record: RunRecord) -> dict[str, str]:
    return {sid: r.status for sid, r in record.steps.items()}


def fn(f: Any, sid: str, **kw: Any) -> Step:
    return Step(sid, kind="function", fn=f, **kw)


def fail(message: str = "boom") -> Any:
    def raiser(params: Any, ctx: StepContext) -> Any:
        raise RuntimeError(message)
    return raiser


def sleeper(seconds: float, value: Any = None) -> Any:
    async def sleep(params: Any, ctx: StepContext) -> Any:
        await asyncio.sleep(seconds)
        return value if value is not None else {"slept": seconds}
    return sleep


# =========================================================================== templates
class TestTemplates:
    def ctx(self, **kw: Any) -> TemplateContext:
        steps = {"a": StepRecord("a", "succeeded", {"n": 3, "items": [1, {"k": True}], "none": None, "t": "x"}),
                 "s": StepRecord("s", "skipped")}
        return TemplateContext(kw.pop("inputs", {"name": "Ada", "n": 2}), steps, **kw)

    def test_whole_string_keeps_type_embedded_is_formatted(self) -> None:
        params = {"n": "{{steps.a.output.n}}", "items": "{{steps.a.output.items}}",
                  "text": "n={{steps.a.output.n}} items={{steps.a.output.items}} none=[{{steps.a.output.none}}] "
                          "flag={{steps.a.output.items[1].k}}",
                  "nested": [{"deep": "{{input.name}}"}, 7, "plain"], "rustchain": "{{a.output.t}}",
                  "dotted_index": "{{steps.a.output.items.0}}"}
        out = compile_template(params).resolve(self.ctx(), "me")
        assert out["n"] == 3 and isinstance(out["n"], int)
        assert out["items"] == [1, {"k": True}]
        assert out["text"] == 'n=3 items=[1, {"k": true}] none=[] flag=true'
        assert out["nested"] == [{"deep": "Ada"}, 7, "plain"]
        assert out["rustchain"] == "x" and out["dotted_index"] == 1
        assert format_value(2.5) == "2.5" and format_value(False) == "false" and format_value({"a": [1]}) == '{"a": [1]}'

    def test_references_escapes_defaults_and_static_values(self) -> None:
        refs = references({"a": ["{{input.x}} and {{ steps.b.output.y }}"], "b": "{{c.status}}", "z": 1})
        assert [(r.root, r.step, r.path, r.param) for r in refs] == [
            ("input", None, ("x",), "params.a[0]"), ("steps", "b", ("output", "y"), "params.a[0]"),
            ("steps", "c", ("status",), "params.b")]
        assert compile_template("\\{{not.a.ref}} {{input.name}}").resolve(self.ctx()) == "{{not.a.ref}} Ada"
        assert compile_template({"x": "{{input.missing | default: 5}}"}).resolve(self.ctx()) == {"x": 5}
        assert compile_template("{{input.missing | default: fallback text}}").resolve(self.ctx()) == "fallback text"
        plain = {"a": [1, "b"], "c": {"d": None}}
        template = compile_template(plain)
        assert template.static and template.resolve(self.ctx()) is plain

    def test_skipped_step_output_is_none(self) -> None:
        assert compile_template("{{steps.s.output.anything}}").resolve(self.ctx()) is None

    def test_unresolvable_names_step_param_and_reference(self) -> None:
        with pytest.raises(TemplateError) as info:
            compile_template({"h": {"auth": "Bearer {{steps.a.output.token}}"}}).resolve(self.ctx(), "call")
        message = str(info.value)
        assert "step 'call'" in message and "params.h.auth" in message and "{{steps.a.output.token}}" in message
        assert "no field 'token'" in message
        with pytest.raises(TemplateError, match="index 5 is out of range"):
            compile_template("{{steps.a.output.items[5]}}").resolve(self.ctx(), "x")
        with pytest.raises(TemplateError, match="no input named 'nope'"):
            compile_template("{{input.nope}}").resolve(self.ctx(), "x")

    def test_syntax_problems_are_collected(self) -> None:
        for bad, wanted in [("{{}}", "empty template"), ("{{bogus}}", "unknown name 'bogus'"),
                            ("{{input.a | upper}}", "unknown filter"), ("x {{input.a", "unclosed template"),
                            ("{{steps}}", "needs a step id")]:
            problems = compile_template(bad).problems
            assert problems and wanted in problems[0], (bad, problems)

    def test_env_is_policy_checked_and_config_secrets_refused(self, comps: Components,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("AIKIT_WF_ALLOWED", "yes")
        monkeypatch.setenv("AIKIT_WF_DENIED", "no")
        ctx = self.ctx(env=comps.policy, config=comps.config)
        assert compile_template("{{env.AIKIT_WF_ALLOWED}}").resolve(ctx) == "yes"
        with pytest.raises(TemplateError, match="not in security.env_allowlist"):
            compile_template("{{env.AIKIT_WF_DENIED}}").resolve(ctx, "s")
        assert compile_template("{{config.wf_test.n}}").resolve(ctx) == 3
        secret = TemplateContext({}, {}, comps.policy, Config({"providers": {"openai": {"api_key": "sk-123"}}}))
        with pytest.raises(TemplateError, match="secret"):
            compile_template("{{config.providers.openai.api_key}}").resolve(secret, "s")


# =========================================================================== validation
class TestValidation:
    def test_every_problem_reported_at_once(self, comps: Components) -> None:
        ran: list[str] = []
        inner = Workflow("inner", steps=[Step("i1", params={"v": "{{input.not_passed}}"})])
        wf = Workflow("bad", steps=[
            Step("a", depends_on=["c"]), Step("b", depends_on=["a"]), Step("c", depends_on=["b"]),
            Step("a"),
            Step("d", depends_on=["ghost"]),
            Step("e", kind="teleport"),
            Step("f", kind="tool", target="no_such_tool"),
            fn(lambda p, c: ran.append("g"), "g", params={"x": "{{steps.h.output.v}}", "y": "{{steps.zzz.output}}"}),
            Step("h"),
            Step("i", params={"in": "{{input.missing}}", "env": "{{env.AIKIT_WF_DENIED}}", "cfg": "{{config.nope.key}}"}),
            Step("j", loop=Loop(range=[1, 2], over=[1]), when=Condition(ref="{{steps.h.output}}", op="bogus")),
            Step("k", kind="workflow", workflow=inner),
            Step("l", params={"x": "{{loop.item}}"}),
            Step("m", loop=Loop(range=[1, 100], max_iterations=10)),
        ])
        problems = validate(wf, components=comps)
        text = "\n".join(problems)
        assert "dependency cycle: a -> b -> c -> a" in text
        expected = [
            "step 'a': duplicate step id",
            "step 'd': depends on unknown step 'ghost'",
            "step 'e': unknown kind 'teleport'",
            "step 'f': no tool named 'no_such_tool'",
            "step 'g': params.x: {{steps.h.output.v}}: step 'h' is not upstream of 'g'",
            "step 'g': params.y: {{steps.zzz.output}} refers to unknown step 'zzz'",
            "step 'i': params.in: {{input.missing}}: input 'missing' is not given and has no default",
            "step 'i': params.env: {{env.AIKIT_WF_DENIED}}: environment variable 'AIKIT_WF_DENIED' is not in "
            "security.env_allowlist",
            "step 'i': params.cfg: {{config.nope.key}}: config key 'nope.key' is not set",
            "step 'j': when: unknown op 'bogus'",
            "step 'j': loop: give exactly one of over, range or while",
            "step 'k' > workflow 'inner': step 'i1': params.v: {{input.not_passed}}: input 'not_passed' is not given",
            "step 'l': params.x: {{loop.item}}: loop.* is only available inside a step with a loop",
            "step 'm': loop: range [1, 100] has 100 items, more than max_iterations (10)",
        ]
        for wanted in expected:
            assert any(p.startswith(wanted) for p in problems), f"missing {wanted!r} in:\n{text}"
        with pytest.raises(ValidationError) as info:
            go(wf, comps)
        assert info.value.details["problems"] == problems
        assert ran == []  # nothing ran

    def test_transitive_references_inputs_defaults_and_line_numbers(self, comps: Components) -> None:
        wf = Workflow("ok", inputs={"who": "world"}, steps=[
            Step("a", params={"v": 1}), Step("b", depends_on=["a"]),
            Step("c", depends_on=["b"], params={"v": "{{steps.a.output.v}}", "w": "{{input.who}}", "x": "{{input.given}}"}),
        ])
        assert validate(wf, inputs={"given": 1}) == []
        assert validate(wf) == [
            "step 'c': params.x: {{input.given}}: input 'given' is not given and has no default (known inputs: who); "
            "pass it, declare a default in the workflow's inputs, or add '| default: VALUE'"]
        wf2 = Workflow("lines", steps=[Step("a", source_line=4), Step("a", source_line=9)])
        assert validate(wf2) == ["step 'a' (line 9): duplicate step id (first declared at line 4)"]

    def test_layers_for_dry_run(self) -> None:
        wf = Workflow("l", steps=[Step("fetch"), Step("a", depends_on=["fetch"]), Step("b", depends_on=["fetch"]),
                                  Step("join", depends_on=["b", "a"]), Step("solo")])
        assert layers(wf) == [["fetch", "solo"], ["a", "b"], ["join"]]
        assert layers(Workflow("s", mode="sequential", steps=[Step("x"), Step("y"), Step("z")])) == [["x"], ["y"], ["z"]]
        with pytest.raises(ValidationError, match="x -> y -> x"):
            layers(Workflow("c", steps=[Step("x", depends_on=["y"]), Step("y", depends_on=["x"])]))


# =========================================================================== scheduling
class TestScheduling:
    def test_values_flow_between_steps(self, comps: Components, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("AIKIT_WF_ALLOWED", "from-env")
        wf = Workflow("flow", inputs={"n": 1}, steps=[
            fn(lambda p, c: {"count": p["n"] * 10, "tags": ["a", "b"]}, "calc", params={"n": "{{input.n}}"}),
            Step("show", depends_on=["calc"], params={
                "count": "{{steps.calc.output.count}}", "tags": "{{calc.output.tags}}",
                "line": "count={{calc.output.count}} tags={{calc.output.tags}} env={{env.AIKIT_WF_ALLOWED}} "
                        "cfg={{config.wf_test.greeting}}"}),
        ])
        record = go(wf, comps, inputs={"n": 4})
        assert record.status == "succeeded"
        assert record.steps["show"].output == {"count": 40, "tags": ["a", "b"],
                                               "line": 'count=40 tags=["a", "b"] env=from-env cfg=hello'}
        assert record.inputs == {"n": 4}

    def test_sequential_mode_runs_in_order(self, comps: Components) -> None:
        order: list[str] = []

        def rec(name: str) -> Any:
            async def f(params: Any, ctx: StepContext) -> str:
                await asyncio.sleep(0.01 if name == "one" else 0)
                order.append(name)
                return name
            return f

        wf = Workflow("seq", mode="sequential", steps=[fn(rec(n), n) for n in ("one", "two", "three")])
        assert go(wf, comps).status == "succeeded"
        assert order == ["one", "two", "three"]

    def test_parallel_max_concurrency_is_honoured(self, comps: Components) -> None:
        running = peak = 0

        async def work(params: Any, ctx: StepContext) -> int:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.03)
            running -= 1
            return params["i"]

        wf = Workflow("par", mode="parallel", max_concurrency=3,
                      steps=[fn(work, f"s{i}", params={"i": i}) for i in range(10)])
        started = time.monotonic()
        record = go(wf, comps)
        assert record.status == "succeeded" and peak == 3
        assert time.monotonic() - started >= 0.03 * 4 * 0.9  # ceil(10 / 3) waves
        unbounded = Workflow("par2", mode="parallel", steps=[fn(work, f"s{i}", params={"i": i}) for i in range(10)])
        peak = 0
        assert go(unbounded, comps).status == "succeeded" and peak == 10

    def test_hundred_concurrent_sleeps_finish_together(self, comps: Components) -> None:
        wf = Workflow("sleepers", mode="parallel", max_concurrency=100,
                      steps=[fn(sleeper(0.1), f"s{i}") for i in range(100)])
        record = go(wf, comps)
        assert record.status == "succeeded"
        # All 100 were waiting at once: every step started before the first one ended (the time
        # itself is a benchmark, bench/workflows.py, not a test).
        starts = [r.started_at for r in record.steps.values()]
        ends = [r.ended_at for r in record.steps.values()]
        assert max(starts) < min(ends)

    def test_ten_thousand_noop_dag(self, comps: Components) -> None:
        steps = [Step("root")]
        join, i = "root", 0
        while len(steps) < 10_000:
            fan = [f"s{i}_{k}" for k in range(min(99, 9_999 - len(steps)))]
            steps += [Step(sid, depends_on=[join]) for sid in fan]
            i += 1
            join = f"join{i}"
            steps.append(Step(join, depends_on=fan or [steps[-1].id]))
        wf = Workflow("big", steps=steps[:10_000])
        record = go(wf, comps)  # its speed is measured by bench/workflows.py
        assert record.status == "succeeded" and len(record.steps) == 10_000
        assert all(r.status == "succeeded" for r in record.steps.values())
        assert len(load_run(comps, record.run_id).steps) == 10_000

    def test_sync_functions_run_in_the_callers_thread(self, comps: Components) -> None:
        seen: list[int] = []
        wf = Workflow("t", steps=[fn(lambda p, c: seen.append(threading.get_ident()), "a")])
        go(wf, comps)
        assert seen == [threading.get_ident()]

    def test_step_context(self, comps: Components) -> None:
        got: dict[str, Any] = {}

        def look(params: Any, ctx: StepContext) -> None:
            got.update(run=ctx.run_id, step=ctx.step, attempt=ctx.attempt, inputs=ctx.inputs, first=ctx.output("first"),
                       status=ctx.status("first"), outputs=ctx.outputs, wf=ctx.workflow)

        wf = Workflow("ctx", steps=[Step("first", params={"v": 1}), fn(look, "look", depends_on=["first"])])
        record = go(wf, comps, inputs={"x": 1}, run_id="run-ctx")
        assert record.run_id == "run-ctx"
        assert got == {"run": "run-ctx", "step": "look", "attempt": 1, "inputs": {"x": 1}, "first": {"v": 1},
                       "status": "succeeded", "outputs": {"first": {"v": 1}}, "wf": "ctx"}


# =========================================================================== failures
class TestFailures:
    def test_failure_marks_downstream_upstream_failed_transitively(self, comps: Components) -> None:
        wf = Workflow("f", fail_fast=False, steps=[
            fn(fail("broken"), "a"), Step("b", depends_on=["a"]), Step("c", depends_on=["b"]), Step("free"),
        ])
        record = go(wf, comps)
        assert statuses(record) == {"a": "failed", "b": "upstream_failed", "c": "upstream_failed", "free": "succeeded"}
        assert record.status == "failed"
        assert record.steps["a"].error["message"] == "RuntimeError: broken"
        assert record.steps["c"].error["code"] == "upstream_failed"
        assert record.error["code"] == "step_failed" and "step 'a' failed" in record.error["message"]

    @pytest.mark.parametrize("fail_fast", [True, False])
    def test_fail_fast_lets_running_steps_finish_and_cancels_the_rest(self, comps: Components, fail_fast: bool) -> None:
        wf = Workflow("ff", fail_fast=fail_fast, steps=[
            fn(fail(), "bad"), fn(sleeper(0.2), "slow"), Step("after_slow", depends_on=["slow"]),
            Step("child", depends_on=["bad"]),
        ])
        record = go(wf, comps)
        assert record.status == "failed"
        assert statuses(record) == {"bad": "failed", "slow": "succeeded", "child": "upstream_failed",
                                    "after_slow": "cancelled" if fail_fast else "succeeded"}
        if fail_fast:
            assert "fail_fast" in record.steps["after_slow"].error["message"]

    def test_continue_on_error_dependents_run_with_none(self, comps: Components) -> None:
        seen: list[Any] = []
        wf = Workflow("coe", steps=[
            fn(fail(), "risky", continue_on_error=True),
            fn(lambda p, c: seen.append(p) or "cleaned", "cleanup", depends_on=["risky"],
               params={"prev": "{{steps.risky.output}}", "field": "{{risky.output.x}}", "status": "{{risky.status}}"}),
        ])
        record = go(wf, comps)
        assert record.status == "succeeded"
        assert statuses(record) == {"risky": "failed", "cleanup": "succeeded"}
        assert seen == [{"prev": None, "field": None, "status": "failed"}]

    def test_runtime_template_error_fails_the_step(self, comps: Components) -> None:
        wf = Workflow("tpl", steps=[Step("a", params={"x": 1}),
                                    Step("b", depends_on=["a"], params={"y": "{{a.output.nope}}"})])
        record = go(wf, comps)
        assert record.steps["b"].status == "failed"
        error = record.steps["b"].error
        assert error["code"] == "template_error" and "step 'b': params.y" in error["message"]
        assert record.steps["b"].attempts == 1  # not retried

    def test_retries_with_exponential_backoff(self, comps: Components) -> None:
        calls: list[float] = []

        def flaky(params: Any, ctx: StepContext) -> str:
            calls.append(time.monotonic())
            if len(calls) < 3:
                raise RuntimeError(f"attempt {ctx.attempt} fails")
            return f"ok on attempt {ctx.attempt}"

        retried = comps.events.subscribe("workflow.step.retrying")
        wf = Workflow("r", steps=[fn(flaky, "flaky", retries=3, retry_delay_s=0.05, backoff=2.0)])
        record = go(wf, comps)
        step = record.steps["flaky"]
        assert (step.status, step.attempts, step.output) == ("succeeded", 3, "ok on attempt 3")
        gaps = [b - a for a, b in zip(calls, calls[1:], strict=False)]
        assert gaps[0] >= 0.045 and gaps[1] >= 0.095 and gaps[1] > gaps[0], gaps  # backoff doubled the delay
        assert [e.payload["delay_s"] for e in retried.drain()] == [0.05, 0.1]

    def test_retries_exhausted_and_workflow_default(self, comps: Components) -> None:
        wf = Workflow("r2", retry_attempts=2, retry_delay_s=0.0, steps=[fn(fail(), "never")])
        record = go(wf, comps)
        assert (record.steps["never"].status, record.steps["never"].attempts) == ("failed", 3)

    def test_step_timeout_kills_the_subprocess(self, comps: Components) -> None:
        marker = sleep_marker(30)
        wf = Workflow("t", steps=[Step("sleepy", kind="command", timeout_s=0.5, params={"command": ["sleep", marker]}),
                                  Step("after", depends_on=["sleepy"])])
        started = time.monotonic()
        record = go(wf, comps)
        assert time.monotonic() - started < 20  # the program (30 s) was stopped, not waited for
        step = record.steps["sleepy"]
        assert step.status == "timed_out" and step.error["code"] == "timeout"
        assert "within 0.5 s" in step.error["message"]
        assert step.duration_s >= 0.45
        assert record.steps["after"].status == "upstream_failed" and record.status == "failed"
        assert processes_with(marker) == []

    def test_timed_out_step_is_retried(self, comps: Components) -> None:
        tries: list[int] = []

        async def slow_once(params: Any, ctx: StepContext) -> str:
            tries.append(ctx.attempt)
            if ctx.attempt == 1:
                await asyncio.sleep(5)
            return "fast"

        record = go(Workflow("tr", steps=[fn(slow_once, "s", timeout_s=0.1, retries=1)]), comps)
        assert (record.steps["s"].status, record.steps["s"].attempts, tries) == ("succeeded", 2, [1, 2])

    def test_global_timeout_cancels_running_steps(self, comps: Components) -> None:
        marker = sleep_marker(31)
        wf = Workflow("g", timeout_s=0.4, steps=[
            Step("quick"),
            fn(sleeper(30), "long", depends_on=["quick"]),
            Step("proc", kind="command", params={"command": ["sleep", marker]}),
            Step("later", depends_on=["long"]),
        ])
        started = time.monotonic()
        record = go(wf, comps)
        assert time.monotonic() - started < 20  # stopped at the timeout, not after the steps' 30 s
        assert record.status == "timed_out" and record.error["code"] == "timeout"
        assert statuses(record) == {"quick": "succeeded", "long": "timed_out", "proc": "timed_out", "later": "cancelled"}
        assert processes_with(marker) == []
        assert load_run(comps, record.run_id).status == "timed_out"

    def test_command_exit_codes(self, comps: Components) -> None:
        wf = Workflow("cmd", fail_fast=False, steps=[
            Step("echo", kind="command", params={"command": "echo hello world"}),
            Step("false", kind="command", params={"command": ["false"]}),
            Step("tolerated", kind="command", params={"command": ["false"], "check": False}),
        ])
        record = go(wf, comps)
        assert record.steps["echo"].output["stdout"] == "hello world\n"
        assert record.steps["false"].status == "failed" and record.steps["false"].error["code"] == "command_failed"
        assert record.steps["tolerated"].status == "succeeded" and record.steps["tolerated"].output["exit_code"] == 1


    def test_command_arguments_outside_the_allowed_paths_are_refused(self, comps: Components) -> None:
        wf = Workflow("paths", fail_fast=False, steps=[
            Step("where", params={"path": "/etc/hostname"}),
            Step("read", kind="command", depends_on=["where"], params={"command": ["cat", "{{where.output.path}}"]}),
            Step("relative", kind="command", params={"command": "cat ../outside"}),
        ])
        record = go(wf, comps)
        for sid, path in (("read", "/etc/hostname"), ("relative", str(Path.cwd().parent / "outside"))):
            step = record.steps[sid]
            assert step.status == "failed" and step.error["code"] == "permission_denied", step.error
            assert step.error["details"]["rule"] == "allowed_paths" and step.error["details"]["path"] == path


# =========================================================================== conditions and loops
class TestConditionsAndLoops:
    def test_conditions_declarative_and_predicates(self, comps: Components) -> None:
        async def later_than(ctx: StepContext) -> bool:
            await asyncio.sleep(0)
            return ctx.output("probe")["n"] > 3

        wf = Workflow("cond", steps=[
            Step("probe", params={"ok": False, "n": 5, "tags": ["x"]}),
            Step("if_ok", depends_on=["probe"], when=Condition(ref="{{steps.probe.output.ok}}", op="truthy")),
            Step("if_not_ok", depends_on=["probe"], when=Condition(ref="probe.output.ok", op="falsy")),
            Step("big", depends_on=["probe"], when=Condition(ref="{{probe.output.n}}", op="gt", value=10)),
            Step("tagged", depends_on=["probe"], when=Condition(ref="{{probe.output.tags}}", op="contains", value="x")),
            Step("eq_input", depends_on=["probe"], when=Condition(ref="{{probe.output.n}}", op="eq", value="{{input.n}}")),
            Step("pred", depends_on=["probe"], when=Condition(fn=lambda ctx: ctx.output("probe")["n"] == 5)),
            Step("async_pred", kind="function", fn=lambda p, c: "ran", depends_on=["probe"],
                 when=Condition(fn=later_than)),
            Step("after_skip", depends_on=["if_ok", "big"], params={"v": "{{if_ok.output.x}}"}),
        ])
        record = go(wf, comps, inputs={"n": 5})
        assert record.status == "succeeded"
        assert statuses(record) == {"probe": "succeeded", "if_ok": "skipped", "if_not_ok": "succeeded", "big": "skipped",
                                    "tagged": "succeeded", "eq_input": "succeeded", "pred": "succeeded",
                                    "async_pred": "succeeded", "after_skip": "succeeded"}
        assert record.steps["after_skip"].output == {"v": None}
        assert record.steps["if_ok"].attempts == 0

    def test_declarative_conditions_on_state(self, comps: Components) -> None:
        comps.state.set("global", "mode", "live")
        comps.state.set("global", "limits", {"max": 3})

        def flip(params: Any, ctx: StepContext) -> str:
            comps.state.set("global", "mode", "dry")  # read when the later steps become ready
            return "flipped"

        wf = Workflow("state_cond", steps=[
            Step("live_only", when=Condition(ref="{{state.global.mode}}", op="eq", value="live")),
            Step("small", when=Condition(ref="{{state.global.limits.max}}", op="lt", value=5),
                 params={"max": "{{state.global.limits.max}}"}),
            Step("flip", kind="function", fn=flip, depends_on=["live_only", "small"]),
            Step("still_live", depends_on=["flip"], when=Condition(ref="{{state.global.mode}}", op="eq", value="live")),
            Step("unset", depends_on=["flip"], when=Condition(ref="{{state.global.nothing | default: false}}", op="truthy")),
            Step("missing", depends_on=["flip"], when=Condition(ref="{{state.global.nothing}}", op="truthy"),
                 continue_on_error=True),
        ])
        record = go(wf, comps)
        assert statuses(record) == {"live_only": "succeeded", "small": "succeeded", "flip": "succeeded",
                                    "still_live": "skipped", "unset": "skipped", "missing": "failed"}
        assert record.steps["small"].output == {"max": 3}
        assert "State has no key 'nothing' in scope 'global'" in record.steps["missing"].error["message"]
        problems = engine.validate(Workflow("bad_state", steps=[Step("a", params={"v": "{{state.global}}"})]))
        assert any("needs a scope and a key: state.SCOPE.KEY" in p for p in problems), problems

    def test_condition_error_fails_the_step(self, comps: Components) -> None:
        wf = Workflow("ce", steps=[Step("p", params={"n": "text"}),
                                   Step("cmp", depends_on=["p"], when=Condition(ref="{{p.output.n}}", op="lt", value=3))])
        record = go(wf, comps)
        assert record.steps["cmp"].status == "failed" and "cannot compare" in record.steps["cmp"].error["message"]

    def test_loops_range_over_while_break_and_caps(self, comps: Components) -> None:
        def echo(params: Any, ctx: StepContext) -> Any:
            return params

        def until_three(params: Any, ctx: StepContext) -> Any:
            return {"i": params["i"], "break": params["i"] >= 3}

        wf = Workflow("loops", steps=[
            Step("src", params={"items": ["a", "b", "c"], "map": {"x": 1}}),
            fn(echo, "ranged", loop=Loop(range=[1, 3]), params={"v": "{{loop.item}}", "i": "{{loop.index}}"}),
            fn(echo, "down", loop=Loop(range=[6, 2, -2]), params={"v": "{{loop.item}}"}),
            fn(echo, "over", depends_on=["src"], loop=Loop(over="{{steps.src.output.items}}"),
               params={"label": "#{{loop.index}}={{loop.item}}"}),
            fn(echo, "over_map", depends_on=["src"], loop=Loop(over="src.output.map"), params={"kv": "{{loop.item}}"}),
            fn(echo, "literal", loop=Loop(over=[{"n": 1}, {"n": 2}]), params={"n": "{{loop.item.n}}",
                                                                               "prev": "{{loop.previous}}"}),
            fn(until_three, "breaker", loop=Loop(range=[1, 10]), params={"i": "{{loop.item}}"}),
            fn(echo, "while", loop=Loop(while_=Condition(fn=lambda ctx: ctx.loop["index"] < 4)),
               params={"i": "{{loop.index}}"}),
            fn(echo, "while_decl", loop=Loop(while_=Condition(ref="{{loop.index}}", op="lt", value=2)),
               params={"i": "{{loop.index}}"}),
            fn(echo, "capped", loop=Loop(while_=Condition(fn=lambda ctx: True), max_iterations=5), params={"k": 1}),
        ])
        record = go(wf, comps)
        assert record.status == "succeeded", record.error
        out = {sid: r.output for sid, r in record.steps.items()}
        assert out["ranged"] == [{"v": 1, "i": 0}, {"v": 2, "i": 1}, {"v": 3, "i": 2}]
        assert out["down"] == [{"v": 6}, {"v": 4}, {"v": 2}]
        assert out["over"] == [{"label": "#0=a"}, {"label": "#1=b"}, {"label": "#2=c"}]
        assert out["over_map"] == [{"kv": {"key": "x", "value": 1}}]
        assert out["literal"] == [{"n": 1, "prev": None}, {"n": 2, "prev": {"n": 1, "prev": None}}]
        assert out["breaker"] == [{"i": 1, "break": False}, {"i": 2, "break": False}, {"i": 3, "break": True}]
        assert [o["i"] for o in out["while"]] == [0, 1, 2, 3]
        assert [o["i"] for o in out["while_decl"]] == [0, 1]
        assert len(out["capped"]) == 5

    def test_loop_over_a_reference_longer_than_max_iterations_fails(self, comps: Components) -> None:
        wf = Workflow("lo", steps=[Step("src", params={"items": list(range(20))}),
                                   Step("each", depends_on=["src"],
                                        loop=Loop(over="{{src.output.items}}", max_iterations=10))])
        record = go(wf, comps)
        assert record.steps["each"].status == "failed" and "exceeds max_iterations" in record.steps["each"].error["message"]


# =========================================================================== other kinds
class TestStepKinds:
    def test_tool_step_and_tool_validation(self, comps: Components) -> None:
        wf = Workflow("tools", steps=[
            Step("enc", kind="tool", target="base64_encode", params={"text": "{{input.text}}"}),
            Step("again", kind="tool", target="base64_decode", depends_on=["enc"], params={"data": "{{enc.output}}"}),
        ])
        record = go(wf, comps, inputs={"text": "hi there"})
        assert record.steps["enc"].output == "aGkgdGhlcmU=" and record.steps["again"].output == "hi there"
        bad = Workflow("bad", steps=[Step("x", kind="tool", target="base64_encode", params={"txt": "a"})])
        problems = validate(bad, components=comps)
        assert "step 'x': tool 'base64_encode' needs parameter 'text'" in problems

    def test_nested_workflow(self, comps: Components) -> None:
        inner = Workflow("inner", inputs={"suffix": "!"}, steps=[
            Step("shout", params={"text": "{{input.word}}{{input.suffix}}"})])
        outer = Workflow("outer", steps=[
            Step("word", params={"w": "hey"}),
            Step("sub", kind="workflow", workflow=inner, depends_on=["word"], params={"word": "{{word.output.w}}"}),
            Step("use", depends_on=["sub"], params={"said": "{{sub.output.steps.shout.output.text}}"}),
        ])
        record = go(outer, comps, run_id="outer-1")
        assert record.status == "succeeded"
        assert record.steps["sub"].output["status"] == "succeeded"
        assert record.steps["use"].output == {"said": "hey!"}
        assert load_run(comps, "outer-1.sub").steps["shout"].output == {"text": "hey!"}
        failing = Workflow("outer2", steps=[Step("sub", kind="workflow", workflow=Workflow("in2", steps=[fn(fail(), "x")]))])
        record = go(failing, comps)
        assert record.steps["sub"].status == "failed" and record.steps["sub"].error["code"] == "workflow_failed"

    def test_llm_and_agent_steps_over_http(self, tmp_path: Path, llm_server: Any) -> None:
        c = make_components(tmp_path, providers={"openai": {"base_url": f"{llm_server.url}/v1", "api_key": "test-key",
                                                            "retries": 0, "timeout_s": 10}},
                            models={"aliases": {"default": "openai/m"}})
        llm_server.reply(OPENAI, Reply.fixture("openai_chat_text.json"), Reply.fixture("openai_chat_text.json"))
        wf = Workflow("ai", steps=[
            Step("ask", kind="llm", params={"prompt": "Say hi to {{input.who}}", "system": "Be brief.", "max_tokens": 20}),
            Step("agent", kind="agent", depends_on=["ask"], target={"name": "helper", "model": "openai/m"},
                 params={"input": "Improve: {{ask.output.text}}"}),
        ])

        async def main() -> RunRecord:
            try:
                return await engine.run(wf, components=c, inputs={"who": "Ada"})
            finally:
                await c.models.aclose()

        try:
            record = asyncio.run(main())
        finally:
            c.close()
        assert record.status == "succeeded", record.error
        ask = record.steps["ask"].output
        assert ask["text"] == "Hello! How can I assist you today?" and ask["model"].startswith("openai/")
        assert ask["usage"]["total_tokens"] == 29
        assert record.steps["agent"].output["text"] == "Hello! How can I assist you today?"
        first, second = (r.json() for r in llm_server.requests_to(OPENAI))
        assert first["messages"] == [{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": "Say hi to Ada"}]
        assert first["model"] == "m"
        assert second["messages"][-1] == {"role": "user", "content": "Improve: Hello! How can I assist you today?"}

    def test_agent_validation(self, comps: Components) -> None:
        wf = Workflow("ag", steps=[Step("a", kind="agent", target="nobody", params={"input": "x"}),
                                   Step("b", kind="agent", target={"name": "x", "max_steps": 0}),
                                   Step("c", kind="llm", params={})])
        problems = validate(wf, components=comps)
        assert any(p.startswith("step 'a': no agent named 'nobody'") for p in problems)
        assert any(p.startswith("step 'b': invalid agent 'x'") for p in problems)
        assert "step 'b': an agent step needs params.input (the task for the agent)" in problems
        assert "step 'c': an llm step needs params.prompt" in problems


# =========================================================================== hooks and events
class TestOperationPipeline:
    def test_every_step_that_runs_is_a_workflow_step_operation(self, comps: Components) -> None:
        class Watch(Interceptor):
            name = "watch"

            def __init__(self) -> None:
                self.seen: list[tuple[str, str, int]] = []

            def wants(self, op: Operation) -> bool:
                return op.kind.name == "workflow.step"

            def started(self, op: Operation) -> None:
                self.seen.append((op.name, op.payload["kind"], op.attempt))

            def before(self, op: Operation) -> None:
                if op.name == "forbidden":
                    raise PermissionDenied("steps named forbidden may not run")

        watch = comps.pipeline.add(Watch())
        ran: list[str] = []
        wf = Workflow("ops", fail_fast=False, steps=[
            Step("plain"),  # a noop, run inline
            fn(lambda p, c: ran.append("forbidden"), "forbidden"),
            fn(lambda p, c: "ok", "fn", retries=2),
            Step("skipped", when=Condition(ref="{{input.nope | default: false}}")),
        ])
        try:
            record = go(wf, comps)
        finally:
            comps.pipeline.remove(watch)
        assert sorted(watch.seen) == [("fn", "function", 1), ("plain", "noop", 1)]  # skipped never ran
        forbidden = record.steps["forbidden"]
        assert ran == [] and (forbidden.status, forbidden.error["code"]) == ("failed", "permission_denied")
        assert record.steps["skipped"].status == "skipped"


class TestHooksAndEvents:
    def test_step_hooks(self, comps: Components) -> None:
        def before(ctx: Any) -> Any:
            step = ctx.payload["step"]
            if step == "vetoed":
                return HookResult.cancel("not today")
            if step == "replaced":
                return HookResult.replace({"from": "hook"})
            if step == "modified":
                ctx.payload["params"] = {"x": 2}
            return None

        def after(ctx: Any) -> Any:
            return HookResult.replace("after!") if ctx.payload["step"] == "post" else None

        def on_error(ctx: Any) -> Any:
            if ctx.payload["step"] != "rescued":
                return None
            return HookResult.replace({"recovered": ctx.payload["error"]["message"]})

        ran: list[str] = []
        comps.hooks.register("workflow.step.before", before)
        comps.hooks.register("workflow.step.after", after)
        comps.hooks.register("workflow.step.error", on_error)
        wf = Workflow("hooks", fail_fast=False, steps=[
            fn(lambda p, c: ran.append("vetoed"), "vetoed"),
            fn(lambda p, c: ran.append("replaced"), "replaced"),
            Step("modified", params={"x": 1}),
            Step("post", params={}),
            fn(fail("oops"), "rescued"),
        ])
        record = go(wf, comps)
        assert ran == []
        assert record.steps["vetoed"].status == "failed" and record.steps["vetoed"].error["code"] == "cancelled"
        assert "not today" in record.steps["vetoed"].error["message"]
        assert record.steps["replaced"].output == {"from": "hook"}
        assert record.steps["modified"].output == {"x": 2}
        assert record.steps["post"].output == "after!"
        assert record.steps["rescued"].status == "succeeded"
        assert record.steps["rescued"].output == {"recovered": "RuntimeError: oops"}

    def test_after_hook_retry_reruns_the_step_and_cancel_rejects_its_output(self, comps: Components) -> None:
        calls: dict[str, int] = {"flaky": 0, "stubborn": 0, "rejected": 0}

        def count(name: str) -> Callable[[Any, Any], Any]:
            def run(params: Any, ctx: Any) -> Any:
                calls[name] += 1
                return {"n": calls[name]}
            return run

        def after(ctx: Any) -> Any:
            step, output = ctx.payload["step"], ctx.payload["output"]
            if step == "flaky" and output["n"] < 2:
                return HookResult.retry()
            if step == "stubborn":
                return HookResult.retry()  # always: bounded by MAX_RETRIES, then the last output stands
            if step == "rejected":
                return HookResult.cancel("looks wrong")
            return None

        comps.hooks.register("workflow.step.after", after)
        wf = Workflow("after-hooks", fail_fast=False, steps=[fn(count(name), name) for name in calls])
        record = go(wf, comps)
        assert (record.steps["flaky"].status, record.steps["flaky"].output, record.steps["flaky"].attempts) == (
            "succeeded", {"n": 2}, 2)
        assert calls["stubborn"] == 1 + MAX_RETRIES and record.steps["stubborn"].output == {"n": 1 + MAX_RETRIES}
        rejected = record.steps["rejected"]
        assert rejected.status == "failed" and rejected.error["code"] == "cancelled" and calls["rejected"] == 1
        assert "looks wrong" in rejected.error["message"]

    def test_error_hook_retry_runs_one_more_attempt_after_the_steps_own_retries(self, comps: Components) -> None:
        calls: dict[str, int] = {"second_time": 0, "hopeless": 0}

        def flaky(name: str, succeed_on: int | None) -> Callable[[Any, Any], Any]:
            def run(params: Any, ctx: Any) -> Any:
                calls[name] += 1
                if calls[name] != succeed_on:
                    raise RuntimeError(f"{name} attempt {ctx.attempt}")
                return {"attempt": ctx.attempt}
            return run

        seen: list[tuple[str, int]] = []

        def on_error(ctx: Any) -> Any:
            seen.append((ctx.payload["step"], ctx.payload["attempts"]))
            return HookResult.retry()  # for "hopeless": bounded by MAX_RETRIES, then the failure stands

        comps.hooks.register("workflow.step.error", on_error)
        wf = Workflow("error-hooks", fail_fast=False, steps=[
            fn(flaky("second_time", 3), "second_time", retries=1),
            fn(flaky("hopeless", None), "hopeless"),
        ])
        record = go(wf, comps)
        second = record.steps["second_time"]
        assert (second.status, second.output, second.attempts) == ("succeeded", {"attempt": 3}, 3)
        assert seen.count(("second_time", 2)) == 1  # fired once, after the step's own retry was used up
        hopeless = record.steps["hopeless"]
        assert hopeless.status == "failed" and calls["hopeless"] == 1 + MAX_RETRIES
        assert hopeless.attempts == 1 + MAX_RETRIES and "attempt 4" in hopeless.error["message"]

    def test_step_hook_payloads(self, comps: Components) -> None:
        payloads: dict[str, dict[str, Any]] = {}

        def keep(ctx: Any) -> None:
            payloads[f"{ctx.point}:{ctx.payload['step']}"] = dict(ctx.payload)

        for point in ("workflow.step.before", "workflow.step.after", "workflow.step.error"):
            comps.hooks.register(point, keep)
        wf = Workflow("payloads", fail_fast=False, steps=[Step("ok", params={"x": 1}), fn(fail("no"), "bad")])
        record = go(wf, comps, run_id="payload-run")
        base = {"workflow": "payloads", "run_id": "payload-run"}
        assert payloads["workflow.step.before:ok"] == {**base, "step": "ok", "kind": "noop", "params": {"x": 1}}
        assert payloads["workflow.step.after:ok"] == {**base, "step": "ok", "kind": "noop", "output": {"x": 1},
                                                      "attempt": 1}
        error = payloads["workflow.step.error:bad"]
        assert {k: error[k] for k in ("workflow", "run_id", "step", "kind", "attempts")} == {
            **base, "step": "bad", "kind": "function", "attempts": 1}
        assert error["error"]["message"] == "RuntimeError: no" and error["error"] == record.steps["bad"].error
        assert "workflow.step.after:bad" not in payloads and "workflow.step.error:ok" not in payloads

    def test_step_started_is_published_when_the_work_starts(self, comps: Components) -> None:
        def before(ctx: Any) -> Any:
            return HookResult.replace("cached") if ctx.payload["step"] == "cached" else None

        def after(ctx: Any) -> Any:
            return HookResult.retry() if ctx.payload["step"] == "again" and ctx.payload["attempt"] == 1 else None

        comps.hooks.register("workflow.step.before", before)
        comps.hooks.register("workflow.step.after", after)
        sub = comps.events.subscribe("workflow.step.*")
        tries: list[int] = []

        def fails_once(params: Any, ctx: Any) -> Any:
            tries.append(ctx.attempt)
            if ctx.attempt == 1:
                raise RuntimeError("first try")
            return "ok"

        wf = Workflow("started", steps=[Step("cached"), Step("again"), fn(fails_once, "once", retries=1)])
        record = go(wf, comps, run_id="started-1")
        drained = sub.drain()
        events = [(e.topic, e.payload["step"], e.source) for e in drained]
        started = [step for topic, step, _ in events if topic == "workflow.step.started"]
        assert next(e.payload for e in drained if e.topic == "workflow.step.started") == {
            "workflow": "started", "run_id": "started-1", "step": "again", "kind": "noop"}
        # a replaced step never ran; a hook's retry runs the step again; its own retries do not
        assert started == ["again", "again", "once"] and tries == [1, 2]
        assert ("workflow.step.retrying", "once", "workflow") in events
        assert ("workflow.step.finished", "cached", "workflow") in events
        assert record.steps["again"].attempts == 2 and record.steps["cached"].attempts == 0

    def test_events_and_on_event(self, comps: Components) -> None:
        sub = comps.events.subscribe("workflow.*")
        seen: list[tuple[str, str | None, str]] = []
        wf = Workflow("ev", fail_fast=False, steps=[Step("a"), fn(fail(), "b"), Step("c", depends_on=["b"])])
        record = go(wf, comps, on_event=lambda kind, sid, rec: seen.append((kind, sid, rec.status)))
        topics = [(e.topic, (e.payload or {}).get("step"), (e.payload or {}).get("status")) for e in sub.drain()]
        assert topics[0] == ("workflow.started", None, None) and topics[-1] == ("workflow.finished", None, "failed")
        assert ("workflow.step.started", "a", None) in topics and ("workflow.step.finished", "a", "succeeded") in topics
        assert ("workflow.step.failed", "b", "failed") in topics
        assert ("workflow.step.failed", "c", "upstream_failed") in topics
        assert seen[0] == ("run.started", None, "running") and seen[-1] == ("run.finished", None, "failed")
        assert ("step.started", "a", "running") in seen and ("step.finished", "b", "failed") in seen
        assert record.status == "failed"


# =========================================================================== persistence and resume
class TestPersistence:
    def test_record_is_stored_in_state(self, comps: Components) -> None:
        wf = Workflow("store", steps=[Step("a", params={"v": 1}), fn(lambda p, c: {"b": True}, "b", depends_on=["a"])])
        record = go(wf, comps, run_id="stored-1")
        raw = comps.state.get(run_scope("stored-1"), "run")
        assert raw["status"] == "succeeded" and raw["workflow"] == "store"
        assert raw["steps"]["b"]["output"] == {"b": True} and raw["steps"]["b"]["attempts"] == 1
        loaded = load_run(comps, "stored-1")
        assert loaded.to_dict()["steps"] == record.to_dict()["steps"]
        assert loaded.duration_s is not None and loaded.steps["a"].duration_s is not None

    def test_completed_steps_are_durable_while_the_run_goes_on(self, comps: Components) -> None:
        snapshot: dict[str, Any] = {}

        def peek(params: Any, ctx: StepContext) -> str:
            snapshot.update(statuses(load_run(ctx.components, ctx.run_id)))
            return "peeked"

        wf = Workflow("durable", steps=[fn(lambda p, c: "one", "one"), fn(peek, "two", depends_on=["one"])])
        go(wf, comps, run_id="durable-1")
        assert snapshot["one"] == "succeeded"  # stored before "two" started, without waiting for the end
        assert "two" not in snapshot or snapshot["two"] in ("pending", "running")

    def test_the_journal_in_segments_across_full_rewrites(self, comps: Components) -> None:
        """Each durable write adds a journal segment holding only its steps; after
        max(32, sqrt(steps)) segments the full record is rewritten and the segments start again, the
        older ones (a base of their own) ignored. A step sees every step before it stored, in every
        round of segments."""
        seen: dict[str, int] = {}

        def peek(params: Any, ctx: StepContext) -> str:
            loaded = load_run(ctx.components, ctx.run_id)
            assert loaded is not None
            seen[ctx.step] = sum(r.status == "succeeded" for r in loaded.steps.values())
            return "ok"

        count = 80  # rounds of 32 segments: the third round is shorter than the stale ones it overwrites
        steps = [fn(peek, f"s{i}", depends_on=[f"s{i - 1}"] if i else []) for i in range(count)]
        record = go(Workflow("segments", steps=steps), comps, run_id="segments-1")
        assert record.status == "succeeded"
        assert seen == {f"s{i}": i for i in range(count)}  # all the steps before it, and no other
        scope = run_scope("segments-1")
        assert comps.state.get(scope, "journal.31")["steps"].keys() == {"s64"}  # one step per write
        loaded = load_run(comps, "segments-1")
        assert loaded is not None and statuses(loaded) == {f"s{i}": "succeeded" for i in range(count)}

    def test_resume_from_a_stored_record_skips_succeeded_steps(self, comps: Components) -> None:
        counts = {"a": 0, "b": 0, "c": 0}

        def count(name: str) -> Any:
            def f(params: Any, ctx: StepContext) -> Any:
                counts[name] += 1
                return {"from": name, "params": params}
            return f

        wf = Workflow("resumable", steps=[
            fn(count("a"), "a"), fn(count("b"), "b", depends_on=["a"], params={"a": "{{a.output.from}}"}),
            fn(count("c"), "c", depends_on=["b"]),
        ])
        crashed = RunRecord("crashed-1", "resumable", "running", {
            "a": StepRecord("a", "succeeded", {"from": "a (stored)"}, None, 1, 1.0, 2.0),
            "b": StepRecord("b", "running", None, None, 1, 2.0, None),
        }, {"k": "v"})
        comps.state.set(run_scope("crashed-1"), "run", crashed.to_dict())
        record = go(wf, comps, resume="crashed-1")
        assert record.run_id == "crashed-1" and record.status == "succeeded"
        assert counts == {"a": 0, "b": 1, "c": 1}
        assert record.steps["b"].output == {"from": "b", "params": {"a": "a (stored)"}}
        assert record.steps["a"].started_at == 1.0 and record.inputs == {"k": "v"}
        again = go(wf, comps, resume=record)  # nothing left to do
        assert counts == {"a": 0, "b": 1, "c": 1} and again.status == "succeeded"

    def test_resume_after_an_interrupted_run(self, comps: Components) -> None:
        counts = {"first": 0, "second": 0}
        hang = {"on": True}

        def first(params: Any, ctx: StepContext) -> str:
            counts["first"] += 1
            return "done once"

        async def second(params: Any, ctx: StepContext) -> str:
            counts["second"] += 1
            if hang["on"]:
                await asyncio.sleep(60)
            return f"got {params['x']}"

        wf = Workflow("interrupted", steps=[fn(first, "first"),
                                           fn(second, "second", depends_on=["first"], params={"x": "{{first.output}}"})])

        async def interrupted() -> None:
            task = asyncio.ensure_future(engine.run(wf, components=comps, run_id="int-1"))
            while counts["second"] == 0:
                await asyncio.sleep(0.01)
            # What a crash would leave: the stored record already has "first" succeeded.
            assert load_run(comps, "int-1").steps["first"].status == "succeeded"
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(interrupted())
        stored = load_run(comps, "int-1")
        assert stored.status == "cancelled" and stored.steps["second"].status == "cancelled"
        hang["on"] = False
        record = go(wf, comps, resume="int-1")
        assert record.status == "succeeded" and counts == {"first": 1, "second": 2}
        assert record.steps["second"].output == "got done once"

    def test_resume_errors(self, comps: Components) -> None:
        from aikit_components.errors import InvalidArgument, NotFound

        with pytest.raises(NotFound):
            go(Workflow("x", steps=[Step("a")]), comps, resume="never-ran")
        record = go(Workflow("x", steps=[Step("a")]), comps)
        with pytest.raises(InvalidArgument, match="belongs to workflow 'x'"):
            go(Workflow("y", steps=[Step("a")]), comps, resume=record.run_id)
