"""Approvals in a real kernel over ZMQ: with ``allow_stdin`` the question is an ``input_request``
on the stdin channel (tool, arguments, why) that a client answers (jupyter_client's
BlockingKernelClient here, as JupyterLab or jupyter console would); without it the run pauses and,
after a kernel restart, ``Agent.resume`` in the new kernel continues it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.agents import OPENAI, answer, call
from tests.support.kernels import Kernel

DEFINE = ("Tool.define{name = 'note', description = 'Append a note', approval = 'always', "
          "params = {type = 'object', properties = {text = {type = 'string'}}, required = {'text'}}, "
          "fn = function(a) notes = (notes or '') .. a.text .. ';' return 'noted ' .. a.text end}\n"
          "a = Agent.new{name = 'writer', model = 'openai/m', tools = {'note'}}\n")


def answer_question(kernel: Kernel, code: str, reply: str) -> tuple[dict[str, Any], Any]:
    """Run ``code`` with stdin allowed, answer the one input_request with ``reply``; the request's
    content and the cell's result."""
    msg_id = kernel.kc.execute(code, allow_stdin=True)
    request = kernel.kc.get_stdin_msg(timeout=30)
    assert request["msg_type"] == "input_request"
    kernel.kc.input(reply)
    return request["content"], kernel.request(msg_id, timeout=30)


@pytest.mark.parametrize(("reply", "expected_notes", "tool_content"), [
    ("approve looks fine", '"hi;"', "noted hi"),
    ("deny not today", "nil", "approval_denied"),
])
def test_the_question_is_an_input_request_and_the_answer_decides(agent_kernel: Kernel, llm_server: Any,
                                                                 reply: str, expected_notes: str,
                                                                 tool_content: str) -> None:
    llm_server.reply(OPENAI, answer(None, [call("note", {"text": "hi"}, "call_1")]), answer("done"))
    agent_kernel.ok(DEFINE + "events = {} Event.subscribe('approval.decided', function(e) events[#events + 1] = e end)")
    content, result = answer_question(agent_kernel, "r = a:run('note hi') return r.status", reply)
    prompt = content["prompt"]
    assert "tool 'note'" in prompt and '{"text":"hi"}' in prompt and 'approval = "always"' in prompt
    assert "approve / deny / always" in prompt and content["password"] is False
    assert result.result_text == '"done"'
    assert agent_kernel.value("return notes") == expected_notes
    sent = llm_server.requests_to(OPENAI)[-1].json()["messages"]
    assert tool_content in [m for m in sent if m["role"] == "tool"][0]["content"]
    decision = agent_kernel.value("return events[1].payload.decision")
    assert decision == ('"approved"' if reply.startswith("approve") else '"denied"')
    assert agent_kernel.value("return events[1].payload.reason") == ('"looks fine"' if reply.startswith("approve")
                                                                      else '"not today"')
    assert agent_kernel.value("return events[1].payload.name .. ' ' .. events[1].payload.kind") == '"note tool"'


def test_approve_always_is_not_asked_again_this_session(agent_kernel: Kernel, llm_server: Any) -> None:
    llm_server.reply(OPENAI, answer(None, [call("note", {"text": "a"}, "c1")]),
                     answer(None, [call("note", {"text": "b"}, "c2")]), answer("done"))
    agent_kernel.ok(DEFINE)
    _, result = answer_question(agent_kernel, "return a:run('two notes').status", "always")
    assert result.result_text == '"done"' and agent_kernel.value("return notes") == '"a;b;"'


def test_without_stdin_the_run_pauses_and_resumes_after_a_restart(agent_kernel: Kernel, llm_server: Any) -> None:
    llm_server.reply(OPENAI, answer(None, [call("note", {"text": "hi"}, "call_1")]))
    agent_kernel.ok(DEFINE)
    status = agent_kernel.value("r = a:run('note hi') return r.status .. ' ' .. r.run_id")  # allow_stdin false
    assert status is not None
    state, run_id = status.strip('"').split()
    assert state == "needs_approval"
    agent_kernel.km.restart_kernel(now=True)
    agent_kernel.kc.wait_for_ready(timeout=60)
    llm_server.reply(OPENAI, answer("done"))
    agent_kernel.ok(DEFINE)
    assert agent_kernel.value(f"return Agent.resume('{run_id}', {{approve = {{'note'}}}}).text") == '"done"'
    assert agent_kernel.value("return notes") == '"hi;"'


def test_a_tool_called_from_a_cell_is_asked_about_too(agent_kernel: Kernel) -> None:
    agent_kernel.ok(DEFINE)
    content, result = answer_question(agent_kernel, "return Tool.call('note', {text = 'direct'})", "yes")
    assert "tool 'note'" in content["prompt"] and '{"text":"direct"}' in content["prompt"]
    assert result.result_text == '"noted direct"'
    _, denied = answer_question(agent_kernel, "return Tool.call('note', {text = 'nope'})", "no because")
    assert denied.content["status"] == "error" and denied.content["ename"] == "approval_denied"
    assert agent_kernel.value("return notes") == '"direct;"'
