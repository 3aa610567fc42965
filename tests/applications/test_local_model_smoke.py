"""A smoke run of each application on the packaged local model (issue 19): no scripted server,
aikit's default model. The local model is a small base model that cannot call tools, so an app
may fail; what is checked is the plumbing: the run ends by itself, successfully or with a clean
error in Lua's words (exit 1, a message and a Lua traceback, no Python traceback)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.applications import APPLICATIONS, AppHarness

pytest.importorskip("llama_cpp", reason="the local model is installed by `make` (aikit[local])")
pytestmark = pytest.mark.slow

APPS = sorted(p.name for p in APPLICATIONS.iterdir() if (p / "main.lua").exists())
ARGS = {"knowledge_base": ["ask", "How many days of paid leave do I get?"], "personal_assistant": ["Hello"]}
# The 21 agents of the web app creator would take many minutes of local generation: a small
# session budget stops it early, which is the other clean ending the smoke run accepts.
ENV = {"web_app_creator": {"AIKIT_BUDGETS__SESSION__TOKENS": "3000"}}


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", APPS)
def test_app_finishes_or_fails_cleanly_on_the_local_model(name: str, tmp_path: Path) -> None:
    app: Any = AppHarness(tmp_path, {"AIKIT_ORGANIZER__APPROVE_MOVES": "inside_sandbox",
                                     "AIKIT_ORCHESTRATOR__APPROVE": "auto", **ENV.get(name, {})})
    run = app.run(name, *ARGS.get(name, []), check=False, timeout=900)
    assert run.returncode in (0, 1), run.stderr
    assert "Traceback (most recent call last)" not in run.stderr, run.stderr
    if run.returncode == 1:
        assert "stack traceback:" in run.stderr and run.stderr.strip().splitlines()[0], run.stderr
