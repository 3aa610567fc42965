"""Agents in a real kernel over ZMQ: a streamed answer appears in one updating display while the
model is still generating, and an interrupt stops the generation (the HTTP stream is closed) and
the loop, leaving the kernel and the agent usable. The model is a local HTTP server replaying the
OpenAI streaming wire format; it pauses mid-stream on a gate, so nothing depends on timing."""

from __future__ import annotations

import threading
from itertools import pairwise
from typing import Any

from tests.support.agents import OPENAI, answer, sse
from tests.support.kernels import Kernel


def display_texts(messages: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(msg_type, display_id, text) of every display message, in order."""
    return [(m["msg_type"], m["content"]["transient"]["display_id"], m["content"]["data"]["text/plain"])
            for m in messages if m["msg_type"] in ("display_data", "update_display_data")]


def test_streamed_answer_updates_one_display_while_generating(agent_kernel: Kernel, llm_server: Any) -> None:
    gate = threading.Event()
    llm_server.reply(OPENAI, sse(["Once ", "upon ", "a ", "time"], hold_after=2, gate=gate))
    msg_id = agent_kernel.kc.execute("r = Agent.new{name = 'teller', model = 'openai/m'}:run('go', {stream = true})\n"
                                     "print(r.text, r.model, r.usage.total_tokens)", allow_stdin=False)
    try:
        # The server has sent only the first delta and waits: the display must already show it.
        before = agent_kernel.wait_for_iopub(msg_id, "display_data", timeout=30)
    finally:
        gate.set()
    result = agent_kernel.request(msg_id, timeout=30)
    assert result.content["status"] == "ok", result.content
    shown = display_texts(before + result.iopub)
    assert shown[0][0] == "display_data" and shown[0][2] == "Once "
    assert {display_id for _, display_id, _ in shown} == {shown[0][1]}  # one display, updated in place
    assert all(kind == "update_display_data" for kind, _, _ in shown[1:]) and len(shown) >= 2
    texts = [t for _, _, t in shown]
    assert all(b.startswith(a) for a, b in pairwise(texts))  # it only grows
    assert texts[-1] == "Once upon a time"
    assert result.stdout == "Once upon a time\topenai/m\t11\n"


def test_interrupt_stops_the_generation_and_the_loop(agent_kernel: Kernel, llm_server: Any) -> None:
    gate = threading.Event()
    deltas = [f"tick{i} " for i in range(50)]
    # paced like a real model after the gate, so the client's close is seen between two tokens
    llm_server.reply(OPENAI, sse(deltas, hold_after=3, gate=gate, chunk_delay_s=0.02), answer("fine again"))
    msg_id = agent_kernel.kc.execute("a = Agent.new{name = 'ticker', model = 'openai/m'}\n"
                                     "a:run('count', {stream = true})\nafter = 'the cell went on'",
                                     allow_stdin=False)
    try:
        agent_kernel.wait_for_iopub(msg_id, "display_data", timeout=30)  # generation under way
        agent_kernel.km.interrupt_kernel()
        reply = agent_kernel.shell_reply(msg_id, timeout=30)
    finally:
        gate.set()  # the server tries to send the rest: the closed connection makes it fail
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
    cut = llm_server.wait_for_disconnect()
    assert cut.path == OPENAI and cut.chunks_sent < cut.chunks_total  # the stream was abandoned, not drained
    assert agent_kernel.value("return after") == "nil"  # the loop and the cell stopped
    assert agent_kernel.value("return a:run('again').text") == '"fine again"'
    assert len(llm_server.requests_to(OPENAI)) == 2
