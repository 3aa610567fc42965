"""The Lua ``Workflow`` global (``aikit_kernel/lua/api/workflows.py``), in process: an engine with
every aikit global (as the kernel wires it, minus ZMQ), components on a private data directory and
configured to talk to a real local OpenAI-format HTTP server (``tests/support/llm_server.py``) for
the ``llm`` and ``agent`` step kinds. ``command`` steps start real programs.

Every step kind, every mode, conditions, loops, retries, failures, validation, the live progress
display, YAML missions, records, resume and interrupts, all driven from Lua code.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aikit_components.workflows.engine import load_run
from aikit_kernel.lua.convert import lua_to_python
from tests.support.agents import config_text
from tests.support.factories import closing_factory
from tests.support.llm_server import Reply
from tests.support.lua import LateInterrupt, Lua, later, open_lua
from tests.support.processes import kill_leftovers, processes_with, sleep_marker, wait_until

OPENAI = "/v1/chat/completions"


# --------------------------------------------------------------------------- helpers
def chat(content: str, *, model: str = "m", usage: tuple[int, int] = (10, 5), delay_s: float = 0.0) -> Reply:
    """A 200 reply with a ``chat.completion`` body exactly as the OpenAI API sends it."""
    body = {
        "id": "chatcmpl-wf", "object": "chat.completion", "created": 1741569952, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None,
                                             "annotations": []}, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
    }
    return Reply.json(body, delay_s=delay_s)


SUMMARIZER = """
[agents.summarizer]
model = "openai/m"
system = "Summarize in one line."
"""


def refused_steps(lua: Lua, name: str, steps: str) -> str:
    """The problems ``Workflow.new`` reports, one a line, for workflow ``name`` with ``steps`` (Lua
    table items); it must refuse it as an invalid argument."""
    problems = lua.run(f"""
        local ok, err = pcall(Workflow.new, {{name = '{name}', steps = {{ {steps} }}}})
        assert(not ok and err.code == 'invalid_argument')
        return err.details.problems""")
    return "\n".join(problems)


def run_sleepers(lua: Lua, name: str, ids: tuple[str, ...], seconds: float) -> dict[str, Any]:
    """Run the parallel workflow ``name`` of Lua steps ``ids``, each sleeping ``seconds`` and
    returning its id; it must succeed with those outputs. Its record."""
    steps = "".join(f"{{id = '{i}', fn = function() sleep({seconds}) return '{i}' end}}," for i in ids)
    record = lua.run(f"return Workflow.new{{name = '{name}', mode = 'parallel', steps = {{ {steps} }}}}:run()")
    assert record["status"] == "succeeded"
    assert tuple(record["steps"][i]["output"] for i in ids) == ids
    return record


def statuses(record: dict[str, Any]) -> dict[str, str]:
    return {sid: step["status"] for sid, step in record["steps"].items()}


@pytest.fixture
def make_lua(llm_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], Lua]]:
    """An engine with every aikit global; config (aikit.toml in ``tmp_path``) points
    ``[providers.openai]`` at the local server; the working directory is ``tmp_path``."""
    for name in list(os.environ):
        if name.startswith("AIKIT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIKIT_DATA_DIR", str(tmp_path / "data"))

    def make() -> Lua:
        (tmp_path / "aikit.toml").write_text(config_text(llm_server.url, SUMMARIZER))
        return open_lua(tmp_path)

    yield from closing_factory(make, lambda lua: lua.close(close_models=True))


ECHO_TOOL = """
Tool.define{
  name = 'shout', description = 'Upper-case a text, n times',
  params = {type = 'object', properties = {text = {type = 'string'}, n = {type = 'integer'}},
            required = {'text'}, additionalProperties = false},
  fn = function(a) return string.rep(a.text:upper(), a.n or 1, ' ') end,
}
Tool.define{name = 'explode', description = 'Always fails', fn = function(a) error('kaboom in a tool') end}
"""


# =========================================================================== step kinds
class TestStepKinds:
    def test_tool_steps_with_templates(self, lua: Lua) -> None:
        lua.run(ECHO_TOOL)
        record = lua.run("""
            local wf = Workflow.new{name = 'tools', inputs = {a = 2, b = 3, word = 'hey'}, steps = {
              {id = 'sum', tool = 'calculate', params = {expression = '{{input.a}} + {{input.b}}'}},
              {id = 'loud', tool = 'shout', depends_on = {'sum'},
               params = {text = '{{input.word}} got {{steps.sum.output}}', n = '{{steps.sum.output}}'}},
            }}
            return wf:run({b = 4})""")
        assert record["status"] == "succeeded", record
        assert record["steps"]["sum"]["output"] == 6
        # a whole-string template keeps the type (n is the integer 6); inside text it is formatted
        assert record["steps"]["loud"]["output"] == " ".join(["HEY GOT 6"] * 6)
        assert record["inputs"] == {"a": 2, "b": 4, "word": "hey"}
        assert record["steps"]["loud"]["attempts"] == 1 and record["steps"]["loud"]["duration_s"] >= 0

    def test_tool_step_failures(self, lua: Lua) -> None:
        lua.run(ECHO_TOOL)
        record = lua.run("""
            return Workflow.new{name = 'tool_fail', fail_fast = false, steps = {
              {id = 'boom', tool = 'explode'},
              {id = 'bad_args', tool = 'calculate', params = {expression = '1 +* 2'}},
              {id = 'fine', tool = 'shout', params = {text = 'ok'}},
            }}:run()""")
        assert statuses(record) == {"boom": "failed", "bad_args": "failed", "fine": "succeeded"}
        assert "kaboom in a tool" in record["steps"]["boom"]["error"]["message"]
        assert record["status"] == "failed" and record["error"]["code"] == "step_failed"
        assert sorted(record["error"]["details"]["failed_steps"]) == ["bad_args", "boom"]  # in the order they ended
        # an unknown tool or a missing / unknown parameter is caught before anything runs
        text = refused_steps(lua, 'bad_tools', """
            {id = 'a', tool = 'calculat', params = {expression = '1'}},
            {id = 'b', tool = 'shout', params = {txt = 'x'}},
        """)
        assert "no tool named 'calculat'" in text and "calculate" in text
        assert "tool 'shout' needs parameter 'text'" in text
        assert "tool 'shout' has no parameter 'txt'" in text

    def test_fn_step_params_and_ctx(self, lua: Lua) -> None:
        record = lua.run("""
            seen = {}
            local wf = Workflow.new{name = 'fns', inputs = {city = 'Oslo', n = 2}, steps = {
              {id = 'first', fn = function(params, ctx) return {value = params.x * 10, label = params.label} end,
               params = {x = '{{input.n}}', label = 'city={{input.city}}'}},
              {id = 'second', depends_on = {'first'}, params = {v = '{{steps.first.output.value}}'},
               fn = function(params, ctx)
                 seen = {run_id = ctx.run_id, workflow = ctx.workflow, step = ctx.step, attempt = ctx.attempt,
                         city = ctx.inputs.city, first_status = ctx.steps.first.status,
                         first_label = ctx.steps.first.output.label, loop = ctx.loop}
                 return params.v + ctx.steps.first.output.value
               end},
            }}
            return wf:run({city = 'Bergen'}, {run_id = 'fn-run-1'})""")
        assert record["status"] == "succeeded", record
        assert record["run_id"] == "fn-run-1"
        assert record["steps"]["first"]["output"] == {"value": 20, "label": "city=Bergen"}
        assert record["steps"]["second"]["output"] == 40
        assert lua.run("return seen") == {"run_id": "fn-run-1", "workflow": "fns", "step": "second", "attempt": 1,
                                          "city": "Bergen", "first_status": "succeeded", "first_label": "city=Bergen"}

    def test_fn_step_ctx_loop(self, lua: Lua) -> None:
        record = lua.run("""
            return Workflow.new{name = 'loopctx', steps = {
              {id = 'each', loop = {over = {'a', 'b', 'c'}}, params = {item = '{{loop.item}}'},
               fn = function(params, ctx)
                 return {item = ctx.loop.item, index = ctx.loop.index, param = params.item,
                         prev = ctx.loop.previous and ctx.loop.previous.item or 'none'}
               end},
            }}:run()""")
        assert record["steps"]["each"]["output"] == [
            {"item": "a", "index": 0, "param": "a", "prev": "none"},
            {"item": "b", "index": 1, "param": "b", "prev": "a"},
            {"item": "c", "index": 2, "param": "c", "prev": "b"},
        ]

    def test_lua_error_in_fn_step(self, lua: Lua) -> None:
        record = lua.run("""
            local function helper(x) error('bad value ' .. x) end
            return Workflow.new{name = 'err', steps = {
              {id = 'ok', fn = function() return 1 end},
              {id = 'broken', depends_on = {'ok'}, fn = function(params, ctx) helper(42) end},
              {id = 'custom', depends_on = {'ok'}, fn = function() error({code = 'my_code', message = 'structured'}) end},
              {id = 'after', depends_on = {'broken'}, noop = true},
            }, fail_fast = false}:run()""")
        broken = record["steps"]["broken"]
        assert broken["status"] == "failed"
        assert "bad value 42" in broken["error"]["message"]
        assert broken["error"]["code"] == "lua_error"
        traceback = broken["error"]["details"]["traceback"]
        assert "helper" in traceback and "stack traceback" in traceback
        custom = record["steps"]["custom"]
        assert (custom["status"], custom["error"]["code"], custom["error"]["message"]) == ("failed", "my_code", "structured")
        assert record["steps"]["after"]["status"] == "upstream_failed"
        assert record["status"] == "failed"
        assert lua.run("return 1 + 1") == 2  # the engine is fine afterwards

    def test_command_steps(self, lua: Lua) -> None:
        record = lua.run("""
            return Workflow.new{name = 'cmds', fail_fast = false, inputs = {word = 'hello'}, steps = {
              {id = 'echo', command = {'echo', '{{input.word}}', 'world'}},
              {id = 'false', command = {'false'}},
              {id = 'tolerated', command = {'false'}, params = {check = false}},
            }}:run()""")
        echo = record["steps"]["echo"]
        assert echo["status"] == "succeeded" and echo["output"]["stdout"] == "hello world\n"
        assert echo["output"]["exit_code"] == 0
        failed = record["steps"]["false"]
        assert failed["status"] == "failed" and failed["error"]["code"] == "command_failed"
        assert "exited with code 1" in failed["error"]["message"]
        assert record["steps"]["tolerated"]["status"] == "succeeded"
        assert record["steps"]["tolerated"]["output"]["exit_code"] == 1

    def test_command_timeout_kills_the_process(self, lua: Lua) -> None:
        marker = sleep_marker(30)
        started = time.monotonic()
        record = lua.run(f"""
            return Workflow.new{{name = 'slowcmd', steps = {{
              {{id = 'sleepy', command = {{'sleep', '{marker}'}}, timeout_s = 0.5}},
              {{id = 'after', depends_on = {{'sleepy'}}, noop = true}},
            }}}}:run()""")
        assert time.monotonic() - started < 20  # the program (30 s) was stopped, not waited for
        sleepy = record["steps"]["sleepy"]
        assert sleepy["status"] == "timed_out" and sleepy["error"]["code"] == "timeout"
        assert 0.45 <= sleepy["duration_s"] < 20
        assert record["steps"]["after"]["status"] == "upstream_failed"
        assert record["status"] == "failed"
        assert wait_until(lambda: processes_with(marker) == [], 20), processes_with(marker)  # killed, not run out

    def test_noop_steps(self, lua: Lua) -> None:
        record = lua.run("""
            return Workflow.new{name = 'noops', inputs = {x = 5}, steps = {
              {id = 'a', noop = true, params = {v = '{{input.x}}', text = 'x is {{input.x}}'}},
              {id = 'b', depends_on = {'a'}, params = {copy = '{{steps.a.output.v}}'}},
            }}:run()""")
        assert record["steps"]["a"]["output"] == {"v": 5, "text": "x is 5"}
        assert record["steps"]["b"]["output"] == {"copy": 5}  # a step without a kind is a noop

    def test_a_run_prints_as_its_status_and_its_steps_outcomes(self, lua: Lua) -> None:
        printed, failed, resumed, run_id = lua.run("""
            local ok = Workflow.new{name = 'printed', steps = {{id = 'a', noop = true},
                                                              {id = 'b', depends_on = {'a'}, noop = true}}}
            local r = ok:run()
            local bad = Workflow.new{name = 'broken', steps = {{id = 'x', fn = function() error('boom') end},
                                                               {id = 'y', depends_on = {'x'}, noop = true}}}
            return tostring(r), tostring(bad:run()), tostring(Workflow.resume(r.run_id, ok)), r.run_id""")
        assert printed == f"workflow 'printed' succeeded (run {run_id}): 2 succeeded"
        assert failed.startswith("workflow 'broken' failed (run ") and failed.endswith("): 1 failed, 1 upstream_failed")
        assert resumed == printed
        cell = lua.engine.run_cell("return Workflow.new{name = 'shown', steps = {{id = 'a', noop = true}}}:run()")
        shown = lua.engine.repr(cell.values[0])
        assert 'status = "succeeded"' in shown and "steps = " in shown  # a cell's value shows every field

    def test_nested_workflow(self, lua: Lua) -> None:
        record = lua.run("""
            inner = Workflow.new{name = 'inner', inputs = {x = 0}, steps = {
              {id = 'double', fn = function(p) return p.x * 2 end, params = {x = '{{input.x}}'}},
            }}
            local outer = Workflow.new{name = 'outer', steps = {
              {id = 'seed', fn = function() return 21 end},
              {id = 'sub', workflow = inner, depends_on = {'seed'}, params = {x = '{{steps.seed.output}}'}},
              {id = 'use', depends_on = {'sub'},
               fn = function(p, ctx) return ctx.steps.sub.output.steps.double.output + 0 end},
            }}
            return outer:run({}, {run_id = 'outer-1'})""")
        assert record["status"] == "succeeded", record
        sub = record["steps"]["sub"]["output"]
        assert sub["run_id"] == "outer-1.sub" and sub["workflow"] == "inner" and sub["status"] == "succeeded"
        assert sub["steps"]["double"]["output"] == 42
        assert record["steps"]["use"]["output"] == 42
        assert lua.run("return Workflow.record('outer-1.sub').steps.double.output") == 42

    def test_nested_workflow_failure(self, lua: Lua) -> None:
        record = lua.run("""
            local inner = Workflow.new{name = 'inner_bad', steps = {{id = 'x', fn = function() error('inner boom') end}}}
            return Workflow.new{name = 'outer_bad', steps = {
              {id = 'sub', workflow = inner},
              {id = 'after', depends_on = {'sub'}, noop = true},
            }}:run()""")
        sub = record["steps"]["sub"]
        assert sub["status"] == "failed" and sub["error"]["code"] == "workflow_failed"
        assert "inner boom" in sub["error"]["message"]
        assert record["steps"]["after"]["status"] == "upstream_failed"
        # the nested run's record is stored under <run_id>.<step> with the failure
        nested = lua.run(f"return Workflow.record('{record['run_id']}.sub')")
        assert nested["status"] == "failed" and nested["steps"]["x"]["status"] == "failed"

    def test_llm_step(self, lua: Lua, llm_server: Any) -> None:
        llm_server.reply(OPENAI, chat("Bonjour!", usage=(12, 3)))
        record = lua.run("""
            return Workflow.new{name = 'llm', inputs = {lang = 'French'}, steps = {
              {id = 'hi', llm = {prompt = 'Say hello in {{input.lang}}', model = 'openai/m', system = 'Be brief.'}},
              {id = 'upper', depends_on = {'hi'}, fn = function(p, ctx) return ctx.steps.hi.output.text:upper() end},
            }}:run()""")
        assert record["status"] == "succeeded", record
        hi = record["steps"]["hi"]["output"]
        assert hi["text"] == "Bonjour!" and hi["model"] == "openai/m" and hi["stop_reason"] == "end"
        assert hi["usage"]["input_tokens"] == 12 and hi["usage"]["output_tokens"] == 3
        assert record["steps"]["upper"]["output"] == "BONJOUR!"
        sent = llm_server.requests_to(OPENAI)[0].json()
        assert sent["messages"] == [{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "Say hello in French"}]
        assert sent["model"] == "m"

    def test_llm_step_failure(self, lua: Lua, llm_server: Any) -> None:
        llm_server.reply(OPENAI, Reply.fixture("openai_error_401.json", status=401))
        record = lua.run("""
            return Workflow.new{name = 'llm_bad', steps = {{id = 'hi', llm = {prompt = 'x', model = 'openai/m'}}}}:run()""")
        assert record["steps"]["hi"]["status"] == "failed" and record["status"] == "failed"
        assert record["steps"]["hi"]["error"]["message"]
        # a step without a prompt, or a malformed model name, is rejected before anything runs
        text = refused_steps(lua, 'llm_invalid', """
            {id = 'noprompt', llm = {model = 'openai/m'}},
            {id = 'badmodel', llm = {prompt = 'x', model = 'noslash'}},
        """)
        assert "noprompt" in text and "needs params.prompt" in text
        assert "step 'badmodel'" in text and "unknown model 'noslash'" in text
        # an unknown provider is only known when the step runs (validation checks the name's form)
        error = lua.run("""
            return Workflow.new{name = 'llm_noprov', steps = {
              {id = 'hi', llm = {prompt = 'x', model = 'nosuchprovider/m'}}}}:run().steps.hi.error""")
        assert error["code"] == "not_found" and "unknown provider 'nosuchprovider'" in error["message"]

    def test_agent_steps(self, lua: Lua, llm_server: Any) -> None:
        llm_server.reply(OPENAI, chat("A short summary."), chat("Spec answer."), chat("Object answer."))
        record = lua.run("""
            helper = Agent.new{name = 'helper', model = 'openai/m', system = 'You help.'}
            return Workflow.new{name = 'agents', mode = 'sequential', inputs = {topic = 'owls'}, steps = {
              {id = 'by_name', agent = 'summarizer', input = 'Summarize {{input.topic}}'},
              {id = 'by_spec', agent = {name = 'inline', model = 'openai/m'}, input = '{{steps.by_name.output.text}}'},
              {id = 'by_object', agent = helper, input = 'plain task'},
            }}:run()""")
        assert record["status"] == "succeeded", record
        assert record["steps"]["by_name"]["output"]["text"] == "A short summary."
        assert record["steps"]["by_spec"]["output"]["text"] == "Spec answer."
        assert record["steps"]["by_object"]["output"]["text"] == "Object answer."
        assert record["steps"]["by_object"]["output"]["model"] == "openai/m"
        requests = [r.json()["messages"] for r in llm_server.requests_to(OPENAI)]
        assert requests[0] == [{"role": "system", "content": "Summarize in one line."},
                               {"role": "user", "content": "Summarize owls"}]
        assert requests[1] == [{"role": "user", "content": "A short summary."}]
        assert requests[2] == [{"role": "system", "content": "You help."}, {"role": "user", "content": "plain task"}]

    def test_agent_step_failures(self, lua: Lua, llm_server: Any) -> None:
        llm_server.reply(OPENAI, Reply.fixture("openai_error_400.json", status=400))
        record = lua.run("""
            return Workflow.new{name = 'agent_bad', steps = {
              {id = 'ask', agent = {name = 'x', model = 'openai/m'}, input = 'hi'}}}:run()""")
        assert record["steps"]["ask"]["status"] == "failed" and record["steps"]["ask"]["error"]["message"]
        text = refused_steps(lua, 'agent_invalid', """
            {id = 'unknown', agent = 'no_such_agent', input = 'x'},
            {id = 'noinput', agent = 'summarizer'},
        """)
        assert "no agent named 'no_such_agent'" in text
        assert "noinput" in text and "needs params.input" in text

    def test_several_kinds_in_one_step_is_an_error(self, lua: Lua) -> None:
        code, message = lua.run("""
            local ok, err = pcall(Workflow.new, {name = 'x', steps = {{id = 's', noop = true, fn = function() end}}})
            return err.code, err.message""")
        assert code == "invalid_argument" and "several kinds" in message
        code, message = lua.run("""
            local ok, err = pcall(Workflow.new, {name = 'x', steps = {{id = 's', noop = true, dependson = {'a'}}}})
            return err.code, err.message""")
        assert code == "invalid_argument" and "dependson" in message

    def test_depends_on_a_single_string(self, lua: Lua) -> None:
        ok, result = lua.run("""
            local ok, r = pcall(Workflow.new, {name = 'dep_str', steps = {{id = 'first'}, {id = 'x', depends_on = 'first'}}})
            if ok then return true, r:layers() end
            return false, r.message""")
        assert (ok and result == [["first"], ["x"]]) or (not ok and "depends_on" in result and "'f'" not in result), result

    def test_command_as_a_string(self, lua: Lua) -> None:
        ok, result = lua.run("""
            local ok, wf = pcall(Workflow.new, {name = 'cmd_str', steps = {{id = 'c', command = 'echo hello'}}})
            if not ok then return false, wf.message end
            return true, wf:run().steps.c""")
        assert (ok and result["status"] == "succeeded" and result["output"]["stdout"] == "hello\n") or \
            (not ok and "command" in result), result


# =========================================================================== modes
CONCURRENCY = """
cur, peak, order = 0, 0, {}
function tracked(name, seconds)
  return function()
    cur = cur + 1
    if cur > peak then peak = cur end
    order[#order + 1] = name .. '+'
    sleep(seconds)
    order[#order + 1] = name .. '-'
    cur = cur - 1
    return name
  end
end
function reset() cur, peak, order = 0, 0, {} end
"""


class TestModes:
    def test_parallel_with_max_concurrency(self, lua: Lua) -> None:
        lua.run(CONCURRENCY)
        record, peak = lua.run("""
            local steps = {}
            for i = 1, 6 do steps[i] = {id = 's' .. i, fn = tracked('s' .. i, 0.05)} end
            local r = Workflow.new{name = 'par2', mode = 'parallel', max_concurrency = 2, steps = steps}:run()
            return r, peak""")
        assert record["status"] == "succeeded" and peak == 2
        record, peak = lua.run("""
            reset()
            local steps = {}
            for i = 1, 6 do steps[i] = {id = 's' .. i, fn = tracked('s' .. i, 0.2)} end
            local r = Workflow.new{name = 'par_all', mode = 'parallel', steps = steps}:run()
            return r, peak""")
        assert record["status"] == "succeeded" and peak == 6  # all six were running at once

    def test_sequential(self, lua: Lua) -> None:
        lua.run(CONCURRENCY)
        record, peak, order = lua.run("""
            local r = Workflow.new{name = 'seq', mode = 'sequential', steps = {
              {id = 'a', fn = tracked('a', 0.02)}, {id = 'b', fn = tracked('b', 0.02)}, {id = 'c', fn = tracked('c', 0.02)},
            }}:run()
            return r, peak, order""")
        assert record["status"] == "succeeded" and peak == 1
        assert order == ["a+", "a-", "b+", "b-", "c+", "c-"]
        layers = lua.run("return Workflow.new{name = 's', mode = 'sequential', steps = {{id = 'a'}, {id = 'b'}}}:layers()")
        assert layers == [["a"], ["b"]]

    def test_dag(self, lua: Lua) -> None:
        lua.run(CONCURRENCY)
        record, peak, order, layers = lua.run("""
            local wf = Workflow.new{name = 'diamond', steps = {
              {id = 'top', fn = tracked('top', 0.02)},
              {id = 'left', fn = tracked('left', 0.1), depends_on = {'top'}},
              {id = 'right', fn = tracked('right', 0.1), depends_on = {'top'}},
              {id = 'bottom', fn = tracked('bottom', 0.02), depends_on = {'left', 'right'}},
            }}
            local r = wf:run()
            return r, peak, order, wf:layers()""")
        assert record["status"] == "succeeded" and peak == 2
        assert order[:2] == ["top+", "top-"] and order[-2:] == ["bottom+", "bottom-"]
        assert sorted(order[2:4]) == ["left+", "right+"]
        assert layers == [["top"], ["left", "right"], ["bottom"]]
        info = lua.run("return Workflow.new{name = 'i', mode = 'parallel', steps = {{id = 'a'}, {id = 'b'}}}:info()")
        assert info == {"name": "i", "mode": "parallel", "steps": ["a", "b"]}
        code = lua.run("local ok, e = pcall(Workflow.new, {name = 'm', mode = 'random', steps = {}}) "
                       "return e.details.problems[1]")
        assert "mode must be one of dag, sequential, parallel" in code

    def test_lua_sleeps_run_concurrently(self, lua: Lua) -> None:
        record = run_sleepers(lua, "sleepers", ("a", "b"), 0.3)
        assert_overlapped(record, "a", "b")

    def test_lua_async_tool_calls_run_concurrently(self, lua: Lua) -> None:
        record = lua.run("""
            local function nap()
              return Tool.call('run_process', {command = {'sleep', '0.3'}}).exit_code
            end
            return Workflow.new{name = 'tools_par', mode = 'parallel',
                                steps = {{id = 'a', fn = nap}, {id = 'b', fn = nap}}}:run()""")
        assert record["status"] == "succeeded", record
        assert (record["steps"]["a"]["output"], record["steps"]["b"]["output"]) == (0, 0)
        assert_overlapped(record, "a", "b")

    def test_lua_agent_runs_in_steps_run_concurrently(self, lua: Lua, llm_server: Any) -> None:
        llm_server.reply(OPENAI, chat("one", delay_s=0.3), chat("two", delay_s=0.3))
        record = lua.run("""
            local a1 = Agent.new{name = 'a1', model = 'openai/m'}
            local a2 = Agent.new{name = 'a2', model = 'openai/m'}
            return Workflow.new{name = 'agents_par', mode = 'parallel', steps = {
              {id = 'x', fn = function() return a1:run('first').text end},
              {id = 'y', fn = function() return a2:run('second').text end},
            }}:run()""")
        assert record["status"] == "succeeded", record
        assert sorted([record["steps"]["x"]["output"], record["steps"]["y"]["output"]]) == ["one", "two"]
        assert_overlapped(record, "x", "y")


# =========================================================================== conditions and loops
class TestStepHooks:
    """docs/lua-api.md's Hook table for workflow.step.*, with hooks written in Lua."""

    def test_before_hook_cancels_modifies_or_replaces(self, lua: Lua) -> None:
        record = lua.run("""
            Hook.register('workflow.step.before', function(ctx)
              local p = ctx.payload
              if p.step == 'vetoed' then return Hook.cancel('not today') end
              if p.step == 'cached' then return Hook.replace({from = 'hook'}) end
              if p.step == 'edited' then p.params.x = p.params.x * 10 end
            end)
            ran = {}
            return Workflow.new{name = 'before', fail_fast = false, steps = {
              {id = 'vetoed', fn = function() ran[#ran + 1] = 'vetoed' end},
              {id = 'cached', fn = function() ran[#ran + 1] = 'cached' end},
              {id = 'edited', fn = function(p) return p.x end, params = {x = 4}},
            }}:run()""")
        assert lua.run("return #ran") == 0
        vetoed = record["steps"]["vetoed"]
        assert (vetoed["status"], vetoed["error"]["code"]) == ("failed", "cancelled")
        assert "not today" in vetoed["error"]["message"]
        assert record["steps"]["cached"]["output"] == {"from": "hook"}
        assert record["steps"]["edited"]["output"] == 40

    def test_after_hook_retries_cancels_or_replaces(self, lua: Lua) -> None:
        record = lua.run("""
            calls = 0
            Hook.register('workflow.step.after', function(ctx)
              local p = ctx.payload
              if p.step == 'flaky' and p.output < 2 then return Hook.retry() end
              if p.step == 'rejected' then return Hook.cancel('looks wrong') end
              if p.step == 'rewritten' then return Hook.replace(p.output .. '!') end
            end)
            return Workflow.new{name = 'after', fail_fast = false, steps = {
              {id = 'flaky', fn = function() calls = calls + 1; return calls end},
              {id = 'rejected', fn = function() return 'x' end},
              {id = 'rewritten', fn = function() return 'hi' end},
            }}:run()""")
        flaky = record["steps"]["flaky"]
        assert (flaky["status"], flaky["output"], flaky["attempts"]) == ("succeeded", 2, 2)
        rejected = record["steps"]["rejected"]
        assert (rejected["status"], rejected["error"]["code"]) == ("failed", "cancelled")
        assert "looks wrong" in rejected["error"]["message"]
        assert record["steps"]["rewritten"]["output"] == "hi!"

    def test_error_hook_retries_or_replaces(self, lua: Lua) -> None:
        record = lua.run("""
            tries = 0
            seen = {}
            Hook.register('workflow.step.error', function(ctx)
              local p = ctx.payload
              seen[#seen + 1] = p.step .. ':' .. p.attempts .. ':' .. p.kind
              if p.step == 'second' then return Hook.retry() end
              if p.step == 'rescued' then return Hook.replace('fallback: ' .. p.error.code) end
            end)
            return Workflow.new{name = 'errors', fail_fast = false, steps = {
              {id = 'second', retries = 1, fn = function()
                tries = tries + 1
                if tries < 3 then error('not yet') end
                return tries
              end},
              {id = 'rescued', fn = function() error('broken') end},
            }}:run()""")
        second = record["steps"]["second"]
        assert (second["status"], second["output"], second["attempts"]) == ("succeeded", 3, 3)
        assert record["steps"]["rescued"]["status"] == "succeeded"
        assert record["steps"]["rescued"]["output"].startswith("fallback: ")
        # once each, after the step's own retry was used up (the steps run concurrently)
        assert sorted(lua.run("return seen")) == ["rescued:1:function", "second:2:function"]


class TestConditions:
    def test_lua_predicate(self, lua: Lua) -> None:
        record = lua.run("""
            calls = 0
            return Workflow.new{name = 'when_fn', steps = {
              {id = 'a', fn = function() return 5 end},
              {id = 'big', depends_on = {'a'}, when = function(ctx) calls = calls + 1 return ctx.steps.a.output > 3 end,
               fn = function() return 'big' end},
              {id = 'small', depends_on = {'a'}, when = function(ctx) return ctx.steps.a.output < 3 end,
               fn = function() return 'small' end},
              {id = 'after', depends_on = {'small'}, fn = function(p, ctx) return ctx.steps.small.output == nil end},
            }}:run()""")
        assert statuses(record) == {"a": "succeeded", "big": "succeeded", "small": "skipped", "after": "succeeded"}
        assert record["steps"]["after"]["output"] is True  # a skipped step's output is nil; dependents still run
        assert record["status"] == "succeeded" and lua.run("return calls") == 1

    def test_predicate_that_errors_fails_the_step(self, lua: Lua) -> None:
        record = lua.run("""
            return Workflow.new{name = 'when_err', steps = {
              {id = 'x', when = function(ctx) error('bad predicate') end, noop = true}}}:run()""")
        assert record["steps"]["x"]["status"] == "failed"
        assert "bad predicate" in record["steps"]["x"]["error"]["message"]

    def test_declarative_on_state(self, lua: Lua) -> None:
        record = lua.run("""
            State.set('global', 'feature', {enabled = true})
            return Workflow.new{name = 'on_state', steps = {
              {id = 'on', when = {ref = '{{state.global.feature.enabled}}', op = 'eq', value = true}, noop = true},
              {id = 'off', when = {ref = '{{state.global.feature.enabled}}', op = 'falsy'}, noop = true},
            }}:run()""")
        assert statuses(record) == {"on": "succeeded", "off": "skipped"}

    def test_declarative(self, lua: Lua) -> None:
        record = lua.run("""
            return Workflow.new{name = 'when_decl', inputs = {mode = 'fast'}, steps = {
              {id = 'a', fn = function() return {ok = true, n = 7, tags = {'x', 'y'}} end},
              {id = 'eq', depends_on = {'a'}, when = {ref = '{{steps.a.output.ok}}', op = 'eq', value = true}},
              {id = 'gt', depends_on = {'a'}, when = {ref = 'steps.a.output.n', op = 'gt', value = 10}},
              {id = 'contains', depends_on = {'a'}, when = {ref = 'steps.a.output.tags', op = 'contains', value = 'y'}},
              {id = 'input', when = {ref = 'input.mode', op = 'eq', value = 'slow'}},
              {id = 'truthy', depends_on = {'a'}, when = {ref = 'steps.a.output.ok'}},
            }}:run()""")
        assert statuses(record) == {"a": "succeeded", "eq": "succeeded", "gt": "skipped", "contains": "succeeded",
                                    "input": "skipped", "truthy": "succeeded"}
        text = refused_steps(lua, 'when_bad', """
            {id = 'a', when = {ref = 'steps.a.output', op = 'between'}},
            {id = 'b', when = {ref = 'steps.ghost.output', op = 'eq', value = 1}},
        """)
        assert "unknown op 'between'" in text
        assert "unknown step 'ghost'" in text


class TestLoops:
    def test_range(self, lua: Lua) -> None:
        record = lua.run("""
            return Workflow.new{name = 'range', steps = {
              {id = 'sq', loop = {range = {1, 4}}, params = {n = '{{loop.item}}'}, fn = function(p) return p.n * p.n end},
              {id = 'down', loop = {range = {6, 0, -3}}, params = {n = '{{loop.item}}'}},
            }}:run()""")
        assert record["steps"]["sq"]["output"] == [1, 4, 9, 16]
        assert record["steps"]["down"]["output"] == [{"n": 6}, {"n": 3}, {"n": 0}]

    def test_over_a_reference(self, lua: Lua) -> None:
        lua.run(ECHO_TOOL)
        record = lua.run("""
            return Workflow.new{name = 'over', steps = {
              {id = 'list', fn = function() return {'ant', 'bee'} end},
              {id = 'each', depends_on = {'list'}, loop = {over = '{{steps.list.output}}'}, tool = 'shout',
               params = {text = '{{loop.index}}:{{loop.item}}'}},
              {id = 'map', loop = {over = {k = 'v'}},
               fn = function(p, ctx) return ctx.loop.item.key .. '=' .. ctx.loop.item.value end},
            }}:run()""")
        assert record["steps"]["each"]["output"] == ["0:ANT", "1:BEE"]
        assert record["steps"]["map"]["output"] == ["k=v"]

    def test_over_a_reference_longer_than_max_iterations_fails(self, lua: Lua) -> None:
        record = lua.run("""
            return Workflow.new{name = 'over_max', steps = {
              {id = 'list', fn = function() return {1, 2, 3} end},
              {id = 'each', depends_on = {'list'}, loop = {over = 'steps.list.output', max_iterations = 2}},
            }}:run()""")
        each = record["steps"]["each"]
        assert each["status"] == "failed" and "exceeds max_iterations (2)" in each["error"]["message"]
        text = refused_steps(lua, 'static_max', """
            {id = 'r', loop = {range = {1, 10}, max_iterations = 3}},
            {id = 'o', loop = {over = {1, 2, 3}, max_iterations = 2}},
            {id = 'two', loop = {range = {1, 2}, over = {1}}},
            {id = 'outside', params = {v = '{{loop.item}}'}},
        """)
        assert "more than max_iterations (3)" in text and "more than max_iterations (2)" in text
        assert "give exactly one of over, range or while" in text
        assert "loop.* is only available inside a step with a loop" in text

    def test_while_with_a_lua_predicate(self, lua: Lua) -> None:
        record = lua.run("""
            total = 0
            return Workflow.new{name = 'while', steps = {
              {id = 'grow', loop = {['while'] = function(ctx) return total < 10 end},
               fn = function(p, ctx) total = total + 3 return {total = total, index = ctx.loop.index} end},
              {id = 'capped', loop = {['while'] = function() return true end, max_iterations = 4},
               fn = function(p, ctx) return ctx.loop.index end},
            }}:run()""")
        assert record["steps"]["grow"]["output"] == [{"total": 3, "index": 0}, {"total": 6, "index": 1},
                                                     {"total": 9, "index": 2}, {"total": 12, "index": 3}]
        assert record["steps"]["capped"]["output"] == [0, 1, 2, 3]  # a while loop just stops at max_iterations

    def test_while_with_a_declarative_condition(self, lua: Lua) -> None:
        record = lua.run("""
            return Workflow.new{name = 'while_decl', steps = {
              {id = 'w', loop = {['while'] = {ref = 'loop.index', op = 'lt', value = 3}},
               fn = function(p, ctx) return ctx.loop.index * 10 end},
            }}:run()""")
        assert record["steps"]["w"]["output"] == [0, 10, 20]

    def test_break(self, lua: Lua) -> None:
        record = lua.run("""
            return Workflow.new{name = 'break', steps = {
              {id = 'find', loop = {range = {1, 100}},
               fn = function(p, ctx)
                 if ctx.loop.item == 3 then return {['break'] = true, found = ctx.loop.item} end
                 return {found = false}
               end},
              {id = 'forever', loop = {['while'] = function() return true end},
               fn = function(p, ctx) if ctx.loop.index == 1 then return {['break'] = true} end return ctx.loop.index end},
            }}:run()""")
        assert record["steps"]["find"]["output"] == [{"found": False}, {"found": False}, {"break": True, "found": 3}]
        assert record["steps"]["forever"]["output"] == [0, {"break": True}]


# =========================================================================== failures
class TestFailures:
    def test_retries_with_backoff(self, lua: Lua) -> None:
        record, tries = lua.run("""
            tries = {}
            local r = Workflow.new{name = 'flaky', steps = {
              {id = 'flaky', retries = 3, retry_delay_s = 0.05, backoff = 2, fn = function(p, ctx)
                 tries[#tries + 1] = ctx.attempt
                 if ctx.attempt < 3 then error('not yet ' .. ctx.attempt) end
                 return 'ok on attempt ' .. ctx.attempt
               end},
            }}:run()
            return r, tries""")
        flaky = record["steps"]["flaky"]
        assert (flaky["status"], flaky["attempts"], flaky["output"]) == ("succeeded", 3, "ok on attempt 3")
        assert tries == [1, 2, 3]
        assert 0.14 <= flaky["duration_s"] < 1.0  # waited 0.05 then 0.1

    def test_retries_exhausted_and_workflow_default(self, lua: Lua) -> None:
        record = lua.run("""
            n = 0
            return Workflow.new{name = 'never', retries = 2, steps = {
              {id = 'never', fn = function() n = n + 1 error('always') end},
              {id = 'once', retries = 0, fn = function() error('once') end},
            }, fail_fast = false}:run()""")
        assert (record["steps"]["never"]["status"], record["steps"]["never"]["attempts"]) == ("failed", 3)
        assert lua.run("return n") == 3
        assert record["steps"]["once"]["attempts"] == 1
        assert "always" in record["steps"]["never"]["error"]["message"]

    def test_fail_fast(self, lua: Lua) -> None:
        record = lua.run("""
            ran = {}
            return Workflow.new{name = 'ff', steps = {
              {id = 'bad', fn = function() error('boom') end},
              {id = 'slow', fn = function() sleep(0.2) ran.slow = true return 'slow' end},
              {id = 'child', depends_on = {'bad'}, fn = function() ran.child = true end},
              {id = 'after_slow', depends_on = {'slow'}, fn = function() ran.after_slow = true end},
            }}:run()""")
        assert statuses(record) == {"bad": "failed", "slow": "succeeded", "child": "upstream_failed",
                                    "after_slow": "cancelled"}
        assert record["steps"]["after_slow"]["error"]["code"] == "cancelled"
        assert "fail_fast" in record["steps"]["after_slow"]["error"]["message"]
        assert record["steps"]["child"]["error"] == {"code": "upstream_failed",
                                                     "message": "not run: upstream step 'bad' failed",
                                                     "details": {"upstream": "bad"}}
        assert record["status"] == "failed"
        assert lua.run("return ran") == {"slow": True}

    def test_without_fail_fast_independent_branches_go_on(self, lua: Lua) -> None:
        record = lua.run("""
            return Workflow.new{name = 'noff', fail_fast = false, steps = {
              {id = 'bad', fn = function() error('boom') end},
              {id = 'slow', fn = function() sleep(0.1) return 'slow' end},
              {id = 'child', depends_on = {'bad'}, noop = true},
              {id = 'grandchild', depends_on = {'child'}, noop = true},
              {id = 'after_slow', depends_on = {'slow'}, fn = function() return 'ran' end},
            }}:run()""")
        assert statuses(record) == {"bad": "failed", "slow": "succeeded", "child": "upstream_failed",
                                    "grandchild": "upstream_failed", "after_slow": "succeeded"}
        assert record["steps"]["grandchild"]["error"]["details"] == {"upstream": "bad"}
        assert record["status"] == "failed"

    def test_continue_on_error(self, lua: Lua) -> None:
        record = lua.run("""
            return Workflow.new{name = 'coe', steps = {
              {id = 'bad', continue_on_error = true, fn = function() error('tolerated') end},
              {id = 'next', depends_on = {'bad'}, fn = function(p, ctx)
                 return {saw = ctx.steps.bad.output == nil, status = ctx.steps.bad.status} end},
            }}:run()""")
        assert statuses(record) == {"bad": "failed", "next": "succeeded"}
        assert record["steps"]["next"]["output"] == {"saw": True, "status": "failed"}
        assert record["status"] == "succeeded"

    def test_workflow_timeout(self, lua: Lua) -> None:
        started = time.monotonic()
        record = lua.run("""
            return Workflow.new{name = 'wt', timeout_s = 0.3, steps = {
              {id = 'quick', noop = true},
              {id = 'long', depends_on = {'quick'}, fn = function() sleep(30) return 'late' end},
              {id = 'later', depends_on = {'long'}, noop = true},
            }}:run()""")
        assert time.monotonic() - started < 20  # stopped at the timeout, not after long's sleep
        assert record["status"] == "timed_out" and record["error"]["code"] == "timeout"
        assert statuses(record) == {"quick": "succeeded", "long": "timed_out", "later": "cancelled"}
        assert lua.run("return Workflow.new{name = 'ok', "
                       "steps = {{id = 'x', fn = function() sleep(0.01) return 1 end}}}:run().status") \
            == "succeeded"

    def test_lua_step_timeout(self, lua: Lua) -> None:
        record = lua.run("""
            return Workflow.new{name = 'st', steps = {
              {id = 'slow', timeout_s = 0.2, fn = function() sleep(30) return 'late' end},
            }}:run()""")
        slow = record["steps"]["slow"]
        assert slow["status"] == "timed_out" and "within 0.2 s" in slow["error"]["message"]
        assert slow["duration_s"] < 20  # stopped at its timeout, not after the sleep

    def test_lua_step_timeout_cancels_its_async_tool_call(self, lua: Lua) -> None:
        marker = sleep_marker(30)
        try:
            record = lua.run(f"""
                return Workflow.new{{name = 'st_tool', steps = {{
                  {{id = 'slow', timeout_s = 0.3, fn = function()
                     return Tool.call('run_process', {{command = {{'sleep', '{marker}'}}}}) end}},
                }}}}:run()""")
            assert record["steps"]["slow"]["status"] == "timed_out"
            assert wait_until(lambda: processes_with(marker) == [], 20), processes_with(marker)  # killed, not run out
        finally:
            kill_leftovers(marker)


# =========================================================================== busy Lua steps
SAFETY_S = 20.0  # a safety interrupt: were a busy step not stopped, the cell would spin until this


def run_busy(lua: Lua, code: str) -> Any:
    """Run a cell whose workflow has a Lua step that never awaits; it must end by itself."""
    timer = later(SAFETY_S, lua.engine.interrupt)
    try:
        result = lua.engine.run_cell(code, "[busy]")
    finally:
        timer.cancel()
    assert result.error is None, (result.error.ename, result.error.evalue)
    values = [lua_to_python(v, lua.engine.internal[b"address"]) for v in result.values]
    return values[0] if len(values) == 1 else values


SPIN = "function() local x = 0 while true do x = x + 1 end end"


class TestBusyLuaSteps:
    """A Lua step that computes without ever awaiting is stopped by its timeout through the
    interrupt hook (``CoroutineDriver.cancel``): only that step, not the cell, not its siblings."""

    def test_step_timeout_stops_a_busy_step(self, lua: Lua) -> None:
        record = run_busy(lua, f"""
            return Workflow.new{{name = 'busy', steps = {{
              {{id = 'spin', timeout_s = 0.2, fn = {SPIN}}},
              {{id = 'after', depends_on = {{'spin'}}, noop = true}},
            }}}}:run()""")
        spin = record["steps"]["spin"]
        assert spin["status"] == "timed_out" and spin["error"]["code"] == "timeout"
        assert "within 0.2 s" in spin["error"]["message"]
        assert record["steps"]["after"]["status"] == "upstream_failed"
        assert record["status"] == "failed"
        assert lua.run("return 6 * 7") == 42  # the engine is usable, Lua steps included
        assert lua.run("return Workflow.new{name = 'ok', steps = {{id = 'x', fn = function() return 'x' end}}}:run()"
                       ".steps.x.output") == "x"

    def test_retries_after_a_busy_attempt_timed_out(self, lua: Lua) -> None:
        record = run_busy(lua, """
            attempts = 0
            return Workflow.new{name = 'busy_retry', steps = {
              {id = 'spin', timeout_s = 0.2, retries = 1, fn = function()
                 attempts = attempts + 1
                 if attempts == 1 then while true do end end
                 return 'second try'
               end},
            }}:run()""")
        assert record["steps"]["spin"]["status"] == "succeeded"
        assert record["steps"]["spin"]["attempts"] == 2 and record["steps"]["spin"]["output"] == "second try"

    def test_workflow_timeout_stops_a_busy_step(self, lua: Lua) -> None:
        record = run_busy(lua, f"""
            return Workflow.new{{name = 'busy_global', timeout_s = 0.3, steps = {{
              {{id = 'quick', noop = true}},
              {{id = 'spin', depends_on = {{'quick'}}, fn = {SPIN}}},
              {{id = 'later', depends_on = {{'spin'}}, noop = true}},
            }}}}:run()""")
        assert record["status"] == "timed_out" and record["error"]["code"] == "timeout"
        assert statuses(record) == {"quick": "succeeded", "spin": "timed_out", "later": "cancelled"}
        assert lua.run("return 1 + 1") == 2

    def test_pcall_in_the_busy_step_does_not_swallow_its_timeout(self, lua: Lua) -> None:
        record = run_busy(lua, """
            swallowed = {}
            return Workflow.new{name = 'busy_pcall', mode = 'parallel', steps = {
              {id = 'pcall', timeout_s = 0.2, fn = function()
                 local ok, err = pcall(function() while true do end end)
                 swallowed[#swallowed + 1] = 'pcall: ' .. tostring(err)
                 while true do end
               end},
              {id = 'xpcall', timeout_s = 0.2, fn = function()
                 local ok, err = xpcall(function() while true do end end, function(e) return 'handled ' .. tostring(e) end)
                 swallowed[#swallowed + 1] = 'xpcall: ' .. tostring(err)
                 while true do end
               end},
              {id = 'nested', timeout_s = 0.2, fn = function()
                 local inner = coroutine.wrap(function() pcall(function() while true do end end) end)
                 pcall(inner)
                 swallowed[#swallowed + 1] = 'nested coroutine'
                 while true do end
               end},
            }}:run()""")
        assert statuses(record) == {"pcall": "timed_out", "xpcall": "timed_out", "nested": "timed_out"}
        assert lua.run("return #swallowed") == 0

    def test_sibling_steps_still_complete(self, lua: Lua) -> None:
        record = run_busy(lua, f"""
            return Workflow.new{{name = 'busy_siblings', mode = 'parallel', fail_fast = false, steps = {{
              {{id = 'waiter', fn = function() sleep(0.05) return 'waited' end}},
              {{id = 'spin', timeout_s = 0.3, fn = {SPIN}}},
              {{id = 'counter', fn = function() local s = 0 for i = 1, 100000 do s = s + i end return s end}},
              {{id = 'shell', command = {{'echo', 'hi'}}}},
            }}}}:run()""")
        assert statuses(record) == {"waiter": "succeeded", "spin": "timed_out", "counter": "succeeded",
                                    "shell": "succeeded"}
        assert record["steps"]["waiter"]["output"] == "waited"
        assert record["steps"]["counter"]["output"] == 5000050000

    def test_a_cancel_reaches_only_its_own_step(self, lua: Lua) -> None:
        """Step B runs nested inside step A (as a safe point inside A's host call would run it);
        cancelling A while B computes leaves B alone, and stops A once control is back in A."""
        engine = lua.engine
        driver = engine.coroutines
        tokens: dict[str, int] = {}
        outcomes: dict[str, str] = {}

        def run_b() -> bool:
            outcomes["b"] = driver.resume(tokens["b"]).kind
            return True

        def cancel_a() -> bool:
            return driver.cancel(tokens["a"])

        make = engine.runtime.eval(
            "function(run_b, cancel_a) return"
            "  function() run_b() while true do end end,"
            "  function() local cancelled = cancel_a() local s = 0 for i = 1, 200000 do s = s + i end "
            "return cancelled, s end"
            " end")
        fn_a, fn_b = make(run_b, cancel_a)
        tokens["a"], tokens["b"] = driver.start(fn_a), driver.start(fn_b)
        timer = later(SAFETY_S, engine.interrupt)
        try:
            resumed = engine.call(lambda: driver.resume(tokens["a"]))  # inside a run: interruptible
        finally:
            timer.cancel()
        assert resumed.error is None and resumed.values[0].kind == "cancelled", resumed.values[0].value
        assert outcomes["b"] == "done"
        for token in tokens.values():
            driver.release(token)
        assert driver.cancel(tokens["a"]) is False  # it ended: a late cancel is a no-op

    def test_a_cancel_after_the_step_ended_is_a_no_op(self, lua: Lua) -> None:
        driver = lua.engine.coroutines
        finished = driver.start(lua.engine.runtime.eval("function() return 1 end"))
        assert driver.resume(finished).kind == "done"  # released as it ended
        assert driver.cancel(finished) is False
        # a new step (possibly at the same address) runs untouched
        fresh = driver.start(
            lua.engine.runtime.eval("function() local s = 0 for i = 1, 100000 do s = s + i end return s end"))
        resumed = driver.resume(fresh)
        assert resumed.kind == "done" and resumed.value == 5000050000


# =========================================================================== validation
class TestValidation:
    def test_every_problem_listed(self, lua: Lua) -> None:
        code, message, problems = lua.run("""
            local ok, err = pcall(Workflow.new, {name = 'broken', steps = {
              {id = 'a', depends_on = {'c'}, noop = true},
              {id = 'b', depends_on = {'a'}, noop = true},
              {id = 'c', depends_on = {'b'}, noop = true},
              {id = 'd', depends_on = {'nope'}, noop = true},
              {id = 'e', tool = 'no_such_tool'},
              {id = 'f', params = {v = '{{steps.ghost.output}}', w = '{{input.missing}}'}},
              {id = 'g', timeout_s = -1, retries = -2, noop = true},
              {id = 'a', noop = true},
            }})
            assert(not ok)
            return err.code, err.message, err.details.problems""")
        assert code == "invalid_argument"
        assert "workflow 'broken' is invalid" in message
        text = "\n".join(problems)
        assert "dependency cycle: a -> b -> c -> a" in text
        assert "depends on unknown step 'nope'" in text
        assert "no tool named 'no_such_tool'" in text
        assert "unknown step 'ghost'" in text
        assert "input 'missing' is not given and has no default" in text
        assert "timeout_s must be a positive number" in text and "retries must be an integer >= 0" in text
        assert "duplicate step id" in text
        assert len(problems) >= 8
        for problem in problems:  # each is also in the message
            assert problem in message

    def test_validate_and_reference_rules(self, lua: Lua) -> None:
        assert lua.run("return #Workflow.new{name = 'ok', steps = {{id = 'only', noop = true}}}:validate()") == 0
        text = refused_steps(lua, 'refs', """
            {id = 'a', noop = true},
            {id = 'b', noop = true, params = {v = '{{steps.a.output}}'}},
            {id = 'c', noop = true, params = {v = '{{steps.c.output}}'}},
        """)
        assert "step 'a' is not upstream of 'b'" in text
        assert "refers to the step itself" in text

    def test_bad_arguments(self, lua: Lua) -> None:
        for code, fragment in [
            ("Workflow.new{name = 'x'}", "steps must be a list of step tables"),
            ("Workflow.new{name = 'x', steps = {'notatable'}}", "step 1 must be a table"),
            ("Workflow.new{name = 'x', steps = {{id = 'f', fn = 5}}}", "fn must be a function"),
            ("Workflow.new{name = 'x', steps = {{id = 'w', when = 5}}}", "when must be a function or"),
            ("Workflow.new{name = 'x', steps = {}, colour = 'red'}", "colour"),
            ("Workflow.new{name = 'x', steps = {}}:run(nil, {bogus = 1})", "bogus"),
            ("Workflow.record(42)", "must be a non-empty string"),
        ]:
            message = lua.run(f"local ok, e = pcall(function() return {code} end) assert(not ok) "
                              "return tostring(e.message or e)")
            assert fragment in message, (code, message)


# =========================================================================== display, missions, records
class TestDisplay:
    def test_progress_table(self, lua: Lua) -> None:
        record = lua.run("""
            return Workflow.new{name = 'shown <b>', mode = 'sequential', fail_fast = false, steps = {
              {id = 'one', fn = function() sleep(0.25) return 1 end},
              {id = 'two', fn = function() sleep(0.25) return 2 end},
              {id = 'three', fn = function() error('nope') end},
            }}:run(nil, {display = true})""")
        assert record["status"] == "failed"
        displays = lua.out.displays
        assert len(displays) >= 3, displays
        (first_data, first_id, first_update) = displays[0]
        assert first_update is False and first_id
        assert all(did == first_id for _, did, _ in displays)
        assert all(update for _, _, update in displays[1:])  # then update_display_data
        assert "<table>" in first_data["text/html"] and "shown &lt;b&gt;" in first_data["text/html"]
        assert "0/3 steps" in first_data["text/plain"]
        middle = [d["text/html"] for d, _, _ in displays[1:-1]]
        assert any("<td>one</td><td>succeeded</td>" in h or "<td>one</td><td>running</td>" in h for h in middle), middle
        final = displays[-1][0]
        html = final["text/html"]
        assert "<td>one</td><td>succeeded</td>" in html and "<td>two</td><td>succeeded</td>" in html
        assert "<td>three</td><td>failed</td>" in html
        # a failed step shows its error (issue 17)
        assert final["text/plain"] == "shown <b>: 3/3 steps\n  three: failed: [1]:5: nope"
        assert "<td>[1]:5: nope</td>" in html

    def test_no_display_by_default(self, lua: Lua) -> None:
        lua.run("Workflow.new{name = 'quiet', steps = {{id = 'a', noop = true}}}:run()")
        assert lua.out.displays == []


MISSION = """
name: hello
version: "1.0"
description: a two-step mission
steps:
  - id: write
    name: Write a note
    step_type: create_file
    parameters: {path: notes/note.txt, content: "hello from a mission"}
  - id: read
    name: Read it back
    step_type: read_file
    depends_on: [write]
    parameters: {path: "REF"}
"""


class TestMissions:
    @pytest.mark.parametrize("ref", ["{{write.output.path}}", "{{steps.write.output.path}}"])
    def test_load_and_run(self, lua: Lua, tmp_path: Path, ref: str) -> None:
        (tmp_path / "mission.yaml").write_text(MISSION.replace("REF", ref))
        record, info = lua.run("""
            local wf = Workflow.load('mission.yaml')
            return wf:run(), wf:info()""")
        assert record["status"] == "succeeded", record
        assert record["steps"]["read"]["output"]["content"] == "hello from a mission"
        assert (tmp_path / "notes" / "note.txt").read_text() == "hello from a mission"
        assert info["name"] == "hello" and info["steps"] == ["write", "read"]
        assert info["source"] and info["source"].endswith("mission.yaml")
        assert record["source"] == info["source"]

    def test_invalid_mission(self, lua: Lua, tmp_path: Path) -> None:
        (tmp_path / "bad.yaml").write_text(MISSION.replace("REF", "{{ghost.output.path}}").replace("read_file", "raed_file"))
        code, problems = lua.run("local ok, e = pcall(Workflow.load, 'bad.yaml') assert(not ok) "
                                 "return e.code, e.details.problems")
        assert code == "invalid_argument"
        text = "\n".join(problems)
        assert "raed_file" in text
        code = lua.run("local ok, e = pcall(Workflow.load, 'missing.yaml') return e.code")
        assert code in ("not_found", "io_error", "invalid_argument")
        code = lua.run("local ok, e = pcall(Workflow.load, '/etc/passwd') return e.code")
        assert code == "permission_denied"


class TestRecordAndResume:
    def test_record(self, lua: Lua) -> None:
        record, stored, missing = lua.run("""
            local r = Workflow.new{name = 'recorded', steps = {{id = 'n', params = {v = 1}}}}:run({}, {run_id = 'rec-1'})
            return r, Workflow.record('rec-1'), Workflow.record('no-such-run')""")
        assert missing is None
        assert stored["status"] == "succeeded" and stored["run_id"] == "rec-1" and stored["workflow"] == "recorded"
        assert stored["steps"]["n"]["output"] == {"v": 1}
        assert load_run(lua.components, "rec-1").status == "succeeded"

    def test_resume_after_a_failure(self, lua: Lua) -> None:
        record = lua.run("""
            counts = {first = 0, second = 0, third = 0}
            fixed = false
            wf = Workflow.new{name = 'resumable', steps = {
              {id = 'first', fn = function() counts.first = counts.first + 1 return 'one' end},
              {id = 'second', depends_on = {'first'}, fn = function(p, ctx)
                 counts.second = counts.second + 1
                 if not fixed then error('not yet') end
                 return ctx.steps.first.output .. '+two'
               end},
              {id = 'third', depends_on = {'second'}, fn = function(p, ctx)
                 counts.third = counts.third + 1 return ctx.steps.second.output .. '+three' end},
            }}
            return wf:run({}, {run_id = 'res-1'})""")
        assert statuses(record) == {"first": "succeeded", "second": "failed", "third": "upstream_failed"}
        assert lua.run("return Workflow.record('res-1').status") == "failed"
        again = lua.run("fixed = true return wf:resume('res-1')")
        assert again["status"] == "succeeded" and again["run_id"] == "res-1"
        assert again["steps"]["third"]["output"] == "one+two+three"
        assert lua.run("return counts") == {"first": 1, "second": 2, "third": 1}
        assert lua.run("return Workflow.record('res-1').status") == "succeeded"

    def test_resume_of_an_unknown_workflow_handle(self, lua: Lua) -> None:
        code = lua.run("local ok, e = pcall(Workflow.resume, 'x', {id = 9999}) return e.code")
        assert code == "not_found"

    def test_resume_errors_keep_their_code_and_message(self, lua: Lua) -> None:
        lua.run("a = Workflow.new{name = 'wa', steps = {{id = 'x'}}} a:run({}, {run_id = 'wa-1'})"
                "b = Workflow.new{name = 'wb', steps = {{id = 'x'}}}")
        code, message = lua.run("local ok, e = pcall(b.resume, b, 'wa-1') return e.code, e.message")
        assert code == "invalid_argument" and "belongs to workflow 'wa'" in message
        code, message = lua.run("local ok, e = pcall(a.resume, a, 'never-ran') return e.code, e.message")
        assert code == "not_found" and "no stored run 'never-ran'" in message

    def test_resume_from_inside_a_lua_step(self, lua: Lua) -> None:
        record = lua.run("""
            inner = Workflow.new{name = 'inner_r', steps = {{id = 'x', fn = function() return 1 end}}}
            inner:run({}, {run_id = 'inner-r-1'})
            return Workflow.new{name = 'outer_r', steps = {
              {id = 'resume', fn = function() return inner:resume('inner-r-1').status end},
              {id = 'run', fn = function() return inner:run().status end},
            }}:run()""")
        assert record["steps"]["run"]["output"] == "succeeded"
        assert record["steps"]["resume"]["status"] == "succeeded", record["steps"]["resume"]["error"]
        assert record["steps"]["resume"]["output"] == "succeeded"


# =========================================================================== interrupts
class TestInterrupt:
    def test_interrupt_a_running_workflow(self, lua: Lua) -> None:
        timer = LateInterrupt(lua.engine, 0.3)
        started = time.monotonic()
        result = lua.engine.run_cell("""
            local wf = Workflow.new{name = 'sleepy', mode = 'parallel', steps = {
              {id = 'a', fn = function() sleep(30) return 'a' end},
              {id = 'b', fn = function() sleep(30) return 'b' end},
              {id = 'c', depends_on = {'a'}, noop = true},
            }}
            return wf:run({}, {run_id = 'intr-1'})""", "[intr]")
        elapsed = time.monotonic() - started
        timer.join()
        assert result.error is not None and result.error.ename == "KeyboardInterrupt"
        assert elapsed < 20, elapsed  # the steps' sleep(30) did not run out: the interrupt stopped them
        stored = wait_until(lambda: (r := load_run(lua.components, "intr-1")) is not None and r.status == "cancelled" and r,
                            60)
        assert stored, load_run(lua.components, "intr-1")
        assert stored.error["code"] == "cancelled"
        assert {sid: s.status for sid, s in stored.steps.items()} == {"a": "cancelled", "b": "cancelled", "c": "cancelled"}
        # the engine is usable afterwards, Lua steps included
        assert lua.run("return 1 + 1") == 2
        run_sleepers(lua, "after", ("x", "y"), 0.05)

    def test_interrupt_stops_the_programs_of_lua_steps(self, lua: Lua) -> None:
        marker = sleep_marker(30)
        try:
            timer = LateInterrupt(lua.engine, 0.3)
            result = lua.engine.run_cell(f"""
                return Workflow.new{{name = 'intr_tool', steps = {{
                  {{id = 's', fn = function() return Tool.call('run_process', {{command = {{'sleep', '{marker}'}}}}) end}},
                }}}}:run({{}}, {{run_id = 'intr-2'}})""", "[intr2]")
            timer.join()
            assert result.error is not None and result.error.ename == "KeyboardInterrupt"
            assert wait_until(lambda: (r := load_run(lua.components, "intr-2")) is not None and r.status == "cancelled", 60)
            assert wait_until(lambda: processes_with(marker) == [], 20), processes_with(marker)  # killed, not run out
        finally:
            kill_leftovers(marker)


def assert_overlapped(record: dict, *step_ids: str) -> None:
    """The steps ran at the same time: each started before any of them ended (from the run
    record's own timestamps, not from wall-clock bounds that a loaded machine would break)."""
    steps = [record["steps"][sid] for sid in step_ids]
    assert max(s["started_at"] for s in steps) < min(s["ended_at"] for s in steps), steps
