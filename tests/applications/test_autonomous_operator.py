"""Application 9, the autonomous operator: a commander agent with two sub-agents works through an
inbox on its own. Checked by outcomes: the small refund was paid and the large one was not (the
approval gate held, the policy denied it and wrote an escalation), the question got a reply, each
decision was scored and recorded in the audit ledger, and the stop item pulled the kill switch
(aikit.stop and aikit.stopped in the ledger) so the item after it was left alone."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.support.scripted_model import Turn

pytestmark = pytest.mark.slow


def commander(turn: Turn) -> Any:
    item = json.loads(turn.messages[1]["content"])
    done = [m for m in turn.messages if m["role"] == "tool"]
    if not done:
        return {"tool_calls": [{"name": "triage", "arguments": {"input": json.dumps(item)}}]}
    if item["kind"] == "refund":
        if len(done) == 1:
            return {"tool_calls": [{"name": "issue_refund",
                                    "arguments": {"customer": item["customer"], "amount": item["amount"]}}]}
        return f"Refund handled for {item['customer']}."
    if len(done) == 1:
        return {"tool_calls": [{"name": "reply_writer", "arguments": {"input": item["text"]}}]}
    if len(done) == 2:
        return {"tool_calls": [{"name": "send_reply", "arguments": {"customer": item["customer"],
                                                                    "text": done[-1]["content"]}}]}
    return f"Replied to {item['customer']}."


def test_decides_gates_scores_and_stops_on_the_kill_switch(app: Any, scripted_model: Any) -> None:
    scripted_model.role("You are the triage agent", lambda t: "Act on it: " + t.user[:30], always=True)
    scripted_model.role("You are the reply writer", "Your order ships on Monday.", always=True)
    scripted_model.role("You are the commander", commander, always=True)
    run = app.run("autonomous_operator")
    report = app.json("out/operator-report.json")
    assert report["stopped"] is True and report["unhandled"] == ["005-refund.json"]
    assert report["refunds"] == [{"customer": "ACME", "amount": 40}]  # Globex's 900 never paid
    actions = {h["item"]: (h["action"], h["score"]) for h in report["handled"]}
    assert actions == {"001": ("issue_refund", 1.0), "002": ("escalated", 0.5), "003": ("send_reply", 1.0),
                       "004": ("stop", 1.0)}
    escalation = app.json("out/escalations/002.json")
    assert escalation["pending"][0]["name"] == "issue_refund" and escalation["pending"][0]["args"]["amount"] == 900
    denied = [e.data for e in app.audit("approval.decided")]
    assert [(d["name"], d["decision"]) for d in denied] == [("issue_refund", "denied")]
    decisions = [e for e in app.audit("tool") if e.data.get("name") == "record_decision"]
    assert len(decisions) == 4 and all(e.data["status"] == "ok" for e in decisions)
    assert app.audit("aikit.stop") and app.audit("aikit.stopped")
    reply = [t for t in scripted_model.requests("You are the commander") if "Initech" in t.messages[1]["content"]]
    assert any(m.get("content") and "ships on Monday" in m["content"] for m in reply[-1].messages if m["role"] == "tool")
    assert not any("Umbrella" in t.messages[1]["content"] for t in scripted_model.requests("You are the commander"))
    assert re.search(r"4 item\(s\) handled, 1 left \(stopped by the kill switch\)", run.stdout)
    names = app.span_names()
    for agent in ("commander", "triage", "reply_writer"):
        assert f"invoke_agent {agent}" in names
