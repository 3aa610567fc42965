"""Application 7, the personal assistant: tools, memory across sessions, a budget. Three separate
`aikit run` sessions on one data directory. Checked: the to-do list really is in State after the
first; the second session's model request carries the first conversation (memory) and its answer
comes from the stored list; a turn that wants more tool calls than its budget stops, with the stop
in the audit ledger and nothing written by the call that was refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.scripted_model import Turn

pytestmark = pytest.mark.slow

ROLE = "You are the personal assistant"


def first_answer(turn: Turn) -> str:
    added, product = turn.tool_json(0), turn.tool_json(1)
    return f"Added '{added['added']}' ({added['count']} on the list). 17 * 23 = {product}."


def recall(turn: Turn) -> dict[str, Any] | str:
    if turn.messages[-1]["role"] != "tool":
        return {"tool_calls": [{"name": "list_todos", "arguments": {}}]}
    items = [t["text"] for t in turn.tool_json()]
    return "You asked me to remember: " + ", ".join(items) + "."


def test_remembers_across_sessions_and_stops_at_its_budget(app: Any, scripted_model: Any) -> None:
    scripted_model.role(ROLE,
                        {"tool_calls": [{"name": "add_todo", "arguments": {"text": "renew the passport"}},
                                        {"name": "calculate", "arguments": {"expression": "17 * 23"}}]},
                        first_answer, recall, recall,
                        {"tool_calls": [{"name": "add_todo", "arguments": {"text": "water the plants"}},
                                        {"name": "add_todo", "arguments": {"text": "call the bank"}}]})
    first = app.run("personal_assistant", "Remind me to renew the passport, and what is 17 * 23?")
    assert "Added 'renew the passport' (1 on the list). 17 * 23 = 391." in first.stdout
    turn = app.json("out/last-turn.json")
    assert turn["status"] == "answered" and turn["todos"] == [{"text": "renew the passport", "done": False}]

    second = app.run("personal_assistant", "What did I ask you to remember?")
    assert "You asked me to remember: renew the passport." in second.stdout
    request = scripted_model.requests(ROLE)[2]  # the second session's first model call
    contents = [m.get("content") for m in request.messages]
    assert "Remind me to renew the passport, and what is 17 * 23?" in contents
    assert "Added 'renew the passport' (1 on the list). 17 * 23 = 391." in contents
    assert app.json("out/last-turn.json")["remembered_messages"] >= 4

    third = app.run("personal_assistant", "Add water the plants and call the bank.",
                    env={"AIKIT_ASSISTANT__TOOL_CALLS_PER_TURN": "1"})
    assert "stopped: the tool_calls budget of this turn (1) is used up" in third.stdout
    turn = app.json("out/last-turn.json")
    assert turn["status"] == "budget_exceeded" and turn["budget"] == "tool_calls" and turn["limit"] == 1
    assert [t["text"] for t in turn["todos"]] in (["renew the passport"], ["renew the passport", "water the plants"])
    assert "call the bank" not in json.dumps(turn["todos"])
    stops = [e.data for e in app.audit("budget.exceeded")]
    assert {"budget": "tool_calls", "limit": 1, "scope": "agent 'assistant'", "used": 2, "source": "budgets"} in stops
    refused = [d for d in stops if d.get("operation") == "tool"]
    assert refused and refused[0]["name"] == "add_todo" and refused[0]["code"] == "budget_exceeded"
