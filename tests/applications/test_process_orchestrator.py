"""Application 6, the process orchestrator: a YAML mission with parallel branches, a retried step,
an approval step and a failure path. Checked: which path ran (files written, steps skipped), the
retries, the parallel layer, the approval decided by the app's policy and the failure recorded in
the audit ledger, the model's apology carrying the real decline reason."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.scripted_model import Turn

pytestmark = pytest.mark.slow

AUTO = {"AIKIT_ORCHESTRATOR__APPROVE": "auto"}


def apology(turn: Turn) -> str:
    reason = turn.user.split("was declined: ", 1)[1]
    return f"We are sorry: the payment failed ({reason}). Your order is on hold until you pay another way."


def script(model: Any) -> None:
    model.role("You are the fraud analyst", "LOW: a known customer, a usual quantity.")
    model.role("You are the customer service writer", apology)


def test_a_declined_card_takes_the_failure_path(app: Any, scripted_model: Any) -> None:
    script(scripted_model)
    app.run("process_orchestrator", env=AUTO)
    run = app.json("out/run.json")
    steps = {s["step"]: s for s in run["steps"]}
    assert run["path_taken"] == "failure" and run["status"] == "succeeded"
    assert steps["charge"]["status"] == "failed" and "declined" in steps["charge"]["error"]
    assert steps["ship"]["status"] == "skipped" and not (app.dir / "out" / "shipment.json").exists()
    assert steps["reserve"]["status"] == "succeeded" and steps["reserve"]["attempts"] == 3
    assert sorted(run["layers"][1]) == ["price", "reserve", "risk"]  # the parallel branches
    note = (app.dir / "out" / "payment-failed.md").read_text()
    assert note.startswith("# Order 1042: payment failed\n\nReason: card declined by the issuer (insufficient funds)")
    assert "We are sorry: the payment failed (card declined by the issuer (insufficient funds))" in note
    assert scripted_model.calls("You are the fraud analyst") == 1
    assert "LAMP-7" in scripted_model.requests("You are the fraud analyst")[0].user
    assert run["approved_by_policy"] == ["approve"]
    decided = app.audit("approval.decided")
    assert [(e.data["name"], e.data["decision"], e.data["reason"]) for e in decided] == [
        ("approve", "approved", "policy auto")]
    step_entries = {e.data["name"]: e.data["status"] for e in app.audit("workflow.step")}
    assert step_entries["charge"] == "error" and step_entries["record_failure"] == "ok" and "ship" not in step_entries
    names = app.span_names()
    assert sum(n.startswith("chat ") for n in names) == 2


def test_a_good_card_ships(app: Any, scripted_model: Any) -> None:
    script(scripted_model)
    app.copy("process_orchestrator")
    order = json.loads((app.dir / "inputs" / "order.json").read_text())
    (app.dir / "inputs" / "good.json").write_text(json.dumps({**order, "card": "4000-0000-0000-0077"}))
    app.run("process_orchestrator", "inputs/good.json", env=AUTO)
    run = app.json("out/run.json")
    assert run["path_taken"] == "success"
    assert json.loads((app.dir / "out" / "shipment.json").read_text()) == {"order_id": 1042, "sku": "LAMP-7"}
    assert not (app.dir / "out" / "payment-failed.md").exists()
    assert {s["step"]: s["status"] for s in run["steps"]}["apology"] == "skipped"
    assert scripted_model.calls("You are the customer service writer") == 0
