"""Property-based fuzzing of the wire protocol with hypothesis, against a real kernel.

Every request here is correctly framed and signed, with contents no frontend would send: wrong
types in every field, debug requests of any shape, user expressions that are not strings. The
properties: each request gets a reply (or, for what the protocol says is not a request, none) that
says what is wrong; the kernel never crashes or hangs and still computes ``1+1`` afterwards.

The example counts are small so ``make test`` stays quick; ``AIKIT_FUZZ_EXAMPLES=N`` runs longer.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.kernels import Kernel, start_kernel
from tests.support.raw_client import RawClient

pytestmark = pytest.mark.xdist_group("protocol-fuzz")

EXAMPLES = int(os.environ.get("AIKIT_FUZZ_EXAMPLES", "30"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
REPLY_S = 20.0  # generous: shared CI machines

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False, allow_infinity=False),
                      st.text(max_size=20))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)

DAP_COMMANDS = ["initialize", "attach", "setBreakpoints", "configurationDone", "continue", "next", "stepIn",
                "stepOut", "pause", "stackTrace", "scopes", "variables", "evaluate", "source", "threads",
                "debugInfo", "dumpCell", "inspectVariables", "richInspectVariables", "copyToGlobals",
                "setExceptionBreakpoints", "disconnect", "modules", "exceptionInfo"]


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Kernel:
    k = start_kernel(tmp_path_factory.mktemp("fuzz-data"))
    yield k
    k.shutdown()


@pytest.fixture(scope="module")
def shell(kernel: Kernel):
    client = RawClient(kernel, "shell")
    yield client
    client.close()


@pytest.fixture(scope="module")
def control(kernel: Kernel):
    client = RawClient(kernel, "control")
    yield client
    client.close()


def reply_to(client: RawClient, msg_type: str, content: Any) -> dict[str, Any]:
    msg_id, frames = client.frames(msg_type, content)
    client.send(frames)
    while True:
        reply = client.recv(REPLY_S)
        assert reply is not None, f"no reply to {msg_type} {content!r:.300}"
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply


@given(arguments=json_value, command=st.one_of(st.sampled_from(DAP_COMMANDS), st.text(max_size=12)),
       seq=st.one_of(st.integers(-5, 10**6), json_leaf))
@FUZZ
def test_debug_requests_of_any_shape_get_a_reason(control: RawClient, kernel: Kernel, arguments: Any,
                                                   command: str, seq: Any) -> None:
    reply = reply_to(control, "debug_request", {"type": "request", "seq": seq, "command": command,
                                                "arguments": arguments})
    content = reply["content"]
    assert content["type"] == "response"
    if not content["success"]:
        assert content.get("message"), content
        assert "internal error" not in content["message"], content


@given(content=st.dictionaries(st.text(max_size=8), json_value, max_size=4),
       command=st.one_of(st.none(), st.integers(), st.lists(st.text(max_size=3), max_size=2)))
@FUZZ
def test_debug_request_content_that_is_not_a_request(control: RawClient, content: dict[str, Any],
                                                     command: Any) -> None:
    # (content that is not an object at all is dropped unanswered, as for any message: test_robustness)
    if command is not None:
        content = {**content, "command": command}
    else:
        content.pop("command", None)
    reply = reply_to(control, "debug_request", content)
    body = reply["content"]
    assert body["success"] is False and "DAP request" in body["message"]


@given(expressions=st.dictionaries(st.text(min_size=1, max_size=8), json_value, max_size=4))
@FUZZ
def test_user_expressions_of_any_type(shell: RawClient, expressions: dict[str, Any]) -> None:
    reply = reply_to(shell, "execute_request", {"code": "fuzz_x = 41", "silent": False, "store_history": False,
                                                "user_expressions": expressions, "allow_stdin": False})
    content = reply["content"]
    assert content["status"] == "ok", content  # the cell ran; a bad expression spoils only itself
    assert set(content["user_expressions"]) == set(expressions)
    for name, value in expressions.items():
        entry = content["user_expressions"][name]
        if not isinstance(value, str):
            assert entry["status"] == "error" and "must be a string" in entry["evalue"]


@given(field=st.sampled_from(["code", "silent", "store_history", "allow_stdin", "stop_on_error", "cursor_pos",
                              "detail_level", "hist_access_type", "n"]),
       value=json_value,
       msg_type=st.sampled_from(["execute_request", "complete_request", "inspect_request", "is_complete_request",
                                 "history_request", "kernel_info_request", "comm_info_request"]))
@FUZZ
def test_request_fields_of_the_wrong_type(shell: RawClient, field: str, value: Any, msg_type: str) -> None:
    base = {"execute_request": {"code": "1", "silent": True}, "complete_request": {"code": "pri", "cursor_pos": 3},
            "inspect_request": {"code": "print", "cursor_pos": 5, "detail_level": 0},
            "is_complete_request": {"code": "if x then"}, "history_request": {"hist_access_type": "tail", "n": 3},
            }.get(msg_type, {})
    reply = reply_to(shell, msg_type, {**base, field: value})
    status = reply["content"]["status"]
    if msg_type == "is_complete_request" and status != "error":
        assert status in ("complete", "incomplete", "invalid", "unknown"), reply["content"]
    else:
        assert status in ("ok", "error"), reply["content"]
    if status == "error":
        assert reply["content"].get("evalue"), reply["content"]
        if reply["content"].get("ename") == "BadRequest":
            assert f"'{field}'" in reply["content"]["evalue"], reply["content"]


def test_the_kernel_is_still_correct_after_the_fuzzing(kernel: Kernel, shell: RawClient,
                                                      control: RawClient) -> None:
    kernel.assert_alive()
    assert kernel.value("1+1") == "2"
