"""Plans: `aikit plan` (SOT markdown -> plan.json) and `aikit run plan.json` (agents, evidence,
summary, dry run, parallel workers, security policy, exit codes)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from aikit_components.config.trust import TRUST_FILE, TrustStore
from aikit_components.errors import InvalidArgument, NotFound, ValidationError
from aikit_components.plans import (
    AGENT_KINDS,
    BUILTIN_AGENTS,
    Manifest,
    PlanRunner,
    RunOptions,
    find_manifest_file,
    hooks_from_dict,
    load_hooks,
    load_manifest,
    load_plan,
    manifest_from_dict,
    parse_sot,
    plan_from_dict,
    save_plan,
)
from aikit_components.security import SecurityPolicy
from aikit_kernel.cli.main import main
from tests.support.llm_server import Reply

AIKIT = str(Path(sys.executable).with_name("aikit"))
ROOT = Path(__file__).resolve().parent.parent

SOT = """\
# Platform source of truth

Intro prose that mentions TASK-900 is not a task.

## Queue A — Workspace Bootstrapping

- [x] `TASK-001` Create the repository
- [ ] **TASK-002**: Install the toolchain (depends: TASK-001)
  Use the pinned versions from `versions.txt`.
  - [ ] check python
  - [x] check git
- [ ] Write the README (`TASK-003`)
    - [ ] TASK-004 Proof-read the README (layer: audit; agent: noop)

```markdown
- [ ] TASK-500 inside a code block is not a task
```

<!--
- [ ] TASK-600 commented out
-->

### Notes without tasks

Just prose.

## Queue B — Checks

1. [ ] TASK-010 Lint (see the style guide)
2. [ ] TASK-011 Test (depends: TASK-010, `TASK-002`)
* [X] TASK-012 Already reviewed

1. **Queue C — Legacy Form**
   - Tasks: `TASK-020`, `TASK-021`
"""

MALFORMED = """\
- [ ] TASK-100 before any heading

## Queue A

- [ ] TASK-101 fine
- [ ] Review everything
- [] TASK-102 empty box
-[ ] TASK-103 no space
- [ ] TASK-12 short id
- [ ] TASK-101 again
- [ ] TASK-104 waits for a ghost (depends: TASK-404)
- [ ] TASK-105 loops (depends: TASK-106)
- [ ] TASK-106 loops back (depends: TASK-105)
- [ ] TASK-107 odd annotation (depends: TASK-101; priority: high)
- [link](https://example.com) is an ordinary list item
"""


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIKIT_") or k == "AIKIT_TRUST_PROJECT_CONFIG"}
    # aikit's data directory and user config live outside the project tree the tests inspect
    env["AIKIT_DATA_DIR"] = str(tmp_path.parent / f"{tmp_path.name}-data")
    env["XDG_CONFIG_HOME"] = str(tmp_path.parent / f"{tmp_path.name}-xdg")  # no user aikit.toml
    env.update(extra)
    return env


def aikit(tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AIKIT, *args], capture_output=True, text=True, timeout=timeout, cwd=tmp_path,
                          env=cli_env(tmp_path))


def write_project(tmp_path: Path, sot: str, hooks: dict[str, Any] | None = None) -> Path:
    (tmp_path / "sot.md").write_text(sot, encoding="utf-8")
    if hooks is not None:
        (tmp_path / "hooks.json").write_text(json.dumps(hooks), encoding="utf-8")
    result = parse_sot(sot, "sot.md")
    assert result.ok, [p.format("sot.md") for p in result.problems]
    return save_plan(result.plan, tmp_path / "plan.json")


def tree(path: Path) -> dict[str, float]:
    return {str(p.relative_to(path)): p.stat().st_mtime for p in sorted(path.rglob("*"))}


def only_run_dir(tmp_path: Path) -> Path:
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def intervals(summary: dict[str, Any]) -> list[tuple[float, float]]:
    from datetime import datetime

    def ts(text: str) -> float:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    return [(ts(r["started"]), ts(r["ended"])) for r in summary["results"] if r["started"]]


def max_overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    peak = level = 0
    for _, delta in events:
        level += delta
        peak = max(peak, level)
    return peak


# --------------------------------------------------------------------------------------------
# parsing the SOT
# --------------------------------------------------------------------------------------------


def test_parse_realistic_sot() -> None:
    result = parse_sot(SOT, "sot.md")
    assert result.problems == []
    plan = result.plan
    assert [q.name for q in plan.queues] == ["Queue A — Workspace Bootstrapping", "Queue B — Checks",
                                            "Queue C — Legacy Form"]
    tasks = {t.id: t for _, t in plan.tasks()}
    assert list(tasks) == ["TASK-001", "TASK-002", "TASK-003", "TASK-004", "TASK-010", "TASK-011", "TASK-012",
                           "TASK-020", "TASK-021"]
    # titles without the id and its markup; checked state; line numbers
    assert tasks["TASK-001"].title == "Create the repository" and tasks["TASK-001"].checked
    assert tasks["TASK-002"].title == "Install the toolchain" and not tasks["TASK-002"].checked
    assert tasks["TASK-003"].title == "Write the README"
    assert tasks["TASK-010"].title == "Lint (see the style guide)"  # ordinary parentheses stay in the title
    assert tasks["TASK-012"].checked  # [X] counts too
    assert tasks["TASK-001"].line == 7 and tasks["TASK-002"].line == 8 and tasks["TASK-010"].line == 29
    # annotations: dependencies, layer, agent
    assert tasks["TASK-002"].depends_on == ["TASK-001"]
    assert tasks["TASK-011"].depends_on == ["TASK-010", "TASK-002"]
    assert tasks["TASK-004"].layer == "audit" and tasks["TASK-004"].agent == "noop"
    assert tasks["TASK-010"].layer == "execution" and tasks["TASK-010"].agent is None
    # nested text is the task's notes; a nested checklist line with an id is a subtask
    assert tasks["TASK-002"].metadata["notes"] == ["Use the pinned versions from `versions.txt`.", "[ ] check python",
                                                   "[x] check git"]
    assert tasks["TASK-004"].metadata["parent"] == "TASK-003"
    assert "parent" not in tasks["TASK-003"].metadata
    # every task records its queue; the legacy task-exec-kit lines work
    assert all(t.queue == q.name for q, t in plan.tasks())
    assert tasks["TASK-020"].title == "TASK-020" and tasks["TASK-020"].queue == "Queue C — Legacy Form"
    # code blocks, comments and prose are ignored; headings without tasks make no queue
    assert not {"TASK-500", "TASK-600", "TASK-900"} & set(tasks)
    assert "Notes without tasks" not in [q.name for q in plan.queues]


def test_malformed_lines_are_reported_with_line_numbers() -> None:
    result = parse_sot(MALFORMED, "sot.md")
    found = [(p.line, p.message) for p in result.problems]
    expected = [
        (1, "task TASK-100 is not under a queue heading"),
        (6, "checklist item has no task id"),
        (7, "malformed checklist item"),
        (8, "malformed checklist item"),
        (9, "malformed task id 'TASK-12'"),
        (10, "duplicate task id TASK-101 (first defined on line 5)"),
        (11, "task TASK-104 depends on TASK-404, which is not a task of this plan"),
        (12, "dependency cycle: TASK-105 -> TASK-106 -> TASK-105"),
        (14, "unknown annotation 'priority'"),
    ]
    assert len(found) == len(expected), found
    for (line, message), (want_line, want) in zip(found, expected):
        assert line == want_line and message.startswith(want), (line, message)
    formatted = result.problems[1].format("sot.md")
    assert formatted.startswith("sot.md:6: checklist item has no task id") and "- [ ] Review everything" in formatted
    with pytest.raises(ValidationError) as err:
        result.raise_for_problems()
    assert len(err.value.problems) == len(expected)
    # the plan keeps the good tasks, without the dependencies in error (for --lenient)
    tasks = {t.id: t for _, t in result.plan.tasks()}
    assert set(tasks) == {"TASK-101", "TASK-104", "TASK-105", "TASK-106", "TASK-107"}
    assert tasks["TASK-104"].depends_on == []
    assert plan_from_dict(json.loads(result.plan.to_json())).tasks()  # still a valid plan


def test_empty_sot_is_a_problem() -> None:
    result = parse_sot("# Title\n\nNothing to do.\n", "empty.md")
    assert len(result.problems) == 1 and result.problems[0].line == 0
    assert result.problems[0].format("empty.md").startswith("empty.md: no tasks found")


# --------------------------------------------------------------------------------------------
# plan.json
# --------------------------------------------------------------------------------------------


def test_plan_json_shape_and_round_trip(tmp_path: Path) -> None:
    plan = parse_sot(SOT, "sot.md").plan
    path = save_plan(plan, tmp_path / "out" / "plan.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert list(data) == ["version", "source", "generated_at", "queues"]
    assert data["version"] == 1 and data["source"] == "sot.md"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["generated_at"])
    for queue in data["queues"]:
        assert list(queue) == ["name", "tasks", "hooks"] and queue["hooks"] is None
        for task in queue["tasks"]:
            assert list(task) == ["id", "title", "layer", "queue", "metadata"]
            assert task["queue"] == queue["name"]
            assert {"line", "checked", "depends_on", "notes"} <= set(task["metadata"])
    task2 = data["queues"][0]["tasks"][1]
    assert task2 == {"id": "TASK-002", "title": "Install the toolchain", "layer": "execution",
                     "queue": "Queue A — Workspace Bootstrapping",
                     "metadata": {"line": 8, "checked": False, "depends_on": ["TASK-001"],
                                  "notes": ["Use the pinned versions from `versions.txt`.", "[ ] check python",
                                            "[x] check git"]}}
    loaded = load_plan(path)
    assert loaded.to_dict() == data and loaded.path == path.resolve()


def test_invalid_plans_list_every_problem(tmp_path: Path) -> None:
    bad = {"version": 2, "source": "x.md", "generated_at": "now", "queues": [
        {"name": "Q", "tasks": [
            {"id": "TASK-1", "title": "short id"},
            {"id": "TASK-001", "title": "a", "metadata": {"depends_on": ["TASK-002"]}},
            {"id": "TASK-002", "title": "b", "metadata": {"depends_on": ["TASK-001"]}},
            {"id": "TASK-002", "title": "duplicate"},
            {"id": "TASK-003", "title": "c", "queue": "Other", "metadata": {"depends_on": ["TASK-999"]}},
        ]}]}
    with pytest.raises(ValidationError) as err:
        plan_from_dict(bad)
    text = "\n".join(err.value.problems)
    for fragment in ("version: expected 1", "'TASK-1' is not a task id", "duplicate task id TASK-002",
                     "does not match its queue's name", "depends on TASK-999", "dependency cycle"):
        assert fragment in text, text
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(Exception, match=r"broken.json:1:2: not valid JSON"):
        load_plan(tmp_path / "broken.json")


# --------------------------------------------------------------------------------------------
# hooks.json
# --------------------------------------------------------------------------------------------


def test_hooks_forms_and_errors(tmp_path: Path) -> None:
    hooks = hooks_from_dict({
        "TASK-001": {"commands": [{"cmd": ["echo", "a"], "cwd": "sub", "timeout_s": 5}, "echo 'b c'"]},
        "TASK-002": {"cmd": "echo x", "env": {"K": "V"}, "timeout": 2},
        "TASK-003": ["echo", "argv"],
        "TASK-004": "echo split",
        "_comment": "ignored",
    }, base_dir=tmp_path)
    one = hooks.entries["TASK-001"].commands
    assert one[0].argv == ["echo", "a"] and one[0].cwd == tmp_path / "sub" and one[0].timeout_s == 5
    assert one[1].argv == ["echo", "b c"] and one[1].cwd is None
    two = hooks.entries["TASK-002"].commands[0]
    assert two.argv == ["echo", "x"] and two.env == {"K": "V"} and two.timeout_s == 2
    assert hooks.entries["TASK-003"].commands[0].argv == ["echo", "argv"]
    assert hooks.entries["TASK-004"].commands[0].argv == ["echo", "split"]
    assert "_comment" not in hooks.entries
    with pytest.raises(ValidationError) as err:
        hooks_from_dict({"TASK-001": {"cmd": [], "shell": True}, "TASK-002": {"cmd": "echo", "timeout_s": -1},
                         "TASK-003": "echo 'unbalanced", "TASK-004": 7})
    text = "\n".join(err.value.problems)
    for fragment in ("unknown key(s) 'shell'", "non-empty list of strings", "greater than 0", "cannot split",
                     "expected an object, a list or a string"):
        assert fragment in text, text
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "hooks.json").write_text(json.dumps({"TASK-001": {"cmd": "ls", "cwd": "."}}))
    assert load_hooks(tmp_path / "cfg" / "hooks.json").entries["TASK-001"].commands[0].cwd == tmp_path / "cfg" / "."


def test_hooks_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "hooks.json"
    path.write_text('{"TASK-001": ["echo", "a"],}')
    with pytest.raises(InvalidArgument, match=re.escape(f"{path}:1:")):
        load_hooks(path)
    path.write_text("[]")
    with pytest.raises(ValidationError, match=re.escape(f"{path} is not valid")):
        load_hooks(path)
    path.write_text(json.dumps({"TASK-001": {"cwd": "."}, "TASK-002": {"commands": [{"env": {}}]}, "TASK-003": []}))
    with pytest.raises(ValidationError) as err:
        load_hooks(path)
    assert str(path) in err.value.message
    assert any("'TASK-001': no 'commands' or 'cmd' given; fix:" in p for p in err.value.problems)
    assert any("'TASK-002'.commands[0]: missing 'cmd'; fix:" in p for p in err.value.problems)
    assert any("'TASK-003': the command list is empty; fix:" in p for p in err.value.problems)
    with pytest.raises(NotFound, match="hooks file .* does not exist"):
        load_hooks(tmp_path / "missing.json")


# --------------------------------------------------------------------------------------------
# manifest.json
# --------------------------------------------------------------------------------------------

MANIFEST = {
    "$schema": "ignored",
    "version": 1,
    "agents": {
        "build": {"kind": "shell", "timeout_s": 7, "env": {"STAGE": "ci"}, "description": "builds"},
        "stub": {"kind": "noop"},
        "reviewer": {"kind": "llm", "model": "openai/m", "system": "You review one task.", "max_steps": 2,
                     "temperature": 0},
    },
    "layers": {"board": {"agent": "stub"}, "execution": {"agent": "build"}, "audit": {"agent": "reviewer"},
               "orchestration": {}},
}


def test_manifest_valid_file(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    path = tmp_path / "config" / "manifest.json"
    path.write_text(json.dumps(MANIFEST))
    assert find_manifest_file(None, cwd=tmp_path) == path
    manifest = load_manifest(path)
    assert manifest.path == path.resolve()
    assert sorted(manifest.agents) == ["build", "noop", "reviewer", "shell", "stub"]  # the built-ins stay
    build = manifest.agents["build"]
    assert (build.kind, build.timeout_s, build.env, build.description) == ("shell", 7.0, {"STAGE": "ci"}, "builds")
    reviewer = manifest.agents["reviewer"].spec
    assert reviewer is not None and (reviewer.name, reviewer.model, reviewer.max_steps) == ("reviewer", "openai/m", 2)
    assert {name: layer.agent for name, layer in manifest.layers.items()} == {
        "board": "stub", "execution": "build", "audit": "reviewer", "orchestration": None}
    assert sorted(Manifest().agents) == ["noop", "shell"]  # no manifest: the built-in agents only


@pytest.mark.parametrize("data, fragment", [
    ([], "expected a JSON object"),
    ({"version": 2}, 'version: expected 1, got 2; fix: set "version": 1'),
    ({"agent": {}}, "(top level): unknown key(s) 'agent'; fix: remove them (known: version, agents, layers)"),
    ({"agents": []}, "agents: expected an object mapping agent names to agents, got list; fix:"),
    ({"agents": {"x": "shell"}}, 'agents.x: expected an object such as {"kind": "shell"}, got str'),
    ({"agents": {"x": {}}}, "agents.x.kind: expected one of noop, shell, llm, got None; fix:"),
    ({"agents": {"x": {"kind": "robot"}}}, "agents.x.kind: expected one of noop, shell, llm, got 'robot'"),
    ({"agents": {"shell": {"kind": "shell"}}}, "agents.shell: 'shell' is a built-in agent and cannot be redefined; fix:"),
    ({"agents": {"9x": {"kind": "noop"}}}, "agents.9x: '9x' is not an agent name; fix:"),
    ({"agents": {"x": {"kind": "noop", "model": "m"}}}, "agents.x: unknown key(s) 'model'; fix: remove them"),
    ({"agents": {"x": {"kind": "shell", "timeout_s": 0}}}, "agents.x.timeout_s: expected a number of seconds"),
    ({"agents": {"x": {"kind": "shell", "env": {"A": 1}}}}, "agents.x.env: expected an object of NAME"),
    ({"agents": {"x": {"kind": "llm", "max_steps": 0}}}, "agents.x.max_steps: expected an integer >= 1"),
    ({"agents": {"x": {"kind": "llm", "tools": "web"}}}, "agents.x.tools: expected a list of names"),
    ({"agents": {"x": {"kind": "llm", "temperature": 5}}}, "agents.x.temperature: expected a number between 0 and 2"),
    ({"layers": ["audit"]}, "layers: expected an object mapping layer names"),
    ({"layers": {"audit": "noop"}}, 'layers.audit: expected an object such as {"agent": "shell"}, got str'),
    ({"layers": {"audit": {"agnt": "noop"}}}, "layers.audit: unknown key(s) 'agnt'"),
    ({"layers": {"audit": {"agent": "ghost"}}}, "layers.audit.agent: 'ghost' is not an agent (known: noop, shell); fix:"),
    ({"layers": {"two words": {}}}, "layers.two words: 'two words' is not a layer name; fix:"),
])
def test_manifest_invalid_files_name_the_file_field_and_fix(tmp_path: Path, data: Any, fragment: str) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValidationError) as err:
        load_manifest(path)
    assert err.value.message.startswith(f"{path} is not valid:"), err.value.message
    assert fragment in err.value.message, err.value.message


def test_manifest_file_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text('{"agents": {')
    with pytest.raises(InvalidArgument, match=re.escape(f"{path}:1:") + ".*not valid JSON"):
        load_manifest(path)
    with pytest.raises(NotFound, match="manifest file .* does not exist"):
        load_manifest(tmp_path / "nope.json")


def write_config(tmp_path: Path, text: str) -> None:
    """The project's aikit.toml, trusted (as `aikit config trust` does) so it may widen the policy."""
    (tmp_path / "aikit.toml").write_text(text, encoding="utf-8")
    user_dir = Path(cli_env(tmp_path)["XDG_CONFIG_HOME"]) / "aikit"
    TrustStore(user_dir / TRUST_FILE).trust(tmp_path / "aikit.toml")


def test_manifest_agents_and_layers_are_used(tmp_path: Path) -> None:
    sot = ("## Board\n- [ ] TASK-001 Track the release (layer: board)\n"
           "## Build\n- [ ] TASK-002 Compile\n- [ ] TASK-003 Lint (agent: shell)\n"
           "## Audit\n- [ ] TASK-004 Sign off (layer: orchestration)\n")
    write_project(tmp_path, sot, {"TASK-001": ["echo", "never"], "TASK-002": ["printenv", "STAGE"],
                                  "TASK-003": ["echo", "lint"]})
    manifest = {k: v for k, v in MANIFEST.items() if k != "agents"}
    manifest["agents"] = {k: v for k, v in MANIFEST["agents"].items() if k != "reviewer"}
    manifest["layers"] = {**MANIFEST["layers"], "audit": {}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    write_config(tmp_path, '[security]\nallowed_commands = ["echo", "printenv"]\n')
    dry = aikit(tmp_path, "run", "plan.json", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert report["manifest"] == str(tmp_path / "manifest.json")
    assert {t["task"]: t["agent"] for t in report["tasks"]} == {
        "TASK-001": "stub", "TASK-002": "build", "TASK-003": "shell", "TASK-004": "noop"}
    proc = aikit(tmp_path, "run", "plan.json", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    by_id = {r["task"]: r for r in summary["results"]}
    assert summary["manifest"] == str(tmp_path / "manifest.json")
    assert [by_id[t]["status"] for t in sorted(by_id)] == ["noop", "ok", "ok", "noop"]
    assert by_id["TASK-001"]["agent"] == "stub" and by_id["TASK-001"]["commands"] == []  # a noop layer runs nothing
    assert "the task selects the stub agent" in (Path(summary["run_dir"]) / "logs" / "TASK-001.log").read_text()
    build = by_id["TASK-002"]["commands"][0]  # the layer's agent: its env and timeout
    assert by_id["TASK-002"]["agent"] == "build" and build["stdout"] == "ci\n" and build["timeout_s"] == 7
    assert by_id["TASK-003"]["commands"][0]["timeout_s"] == 300  # the built-in shell agent: the run's timeout

    (tmp_path / "plan.json").write_text((tmp_path / "plan.json").read_text().replace('"orchestration"', '"ops"'))
    proc = aikit(tmp_path, "run", "plan.json")
    assert proc.returncode == 2
    assert f"TASK-004: layer 'ops' is not declared in {tmp_path / 'manifest.json'}" in proc.stderr
    (tmp_path / "manifest.json").write_text(json.dumps({"agents": {"build": {"kind": "shel"}}}))
    proc = aikit(tmp_path, "run", "plan.json", "--dry-run")
    assert proc.returncode == 2
    assert f"{tmp_path / 'manifest.json'} is not valid:" in proc.stderr and "agents.build.kind" in proc.stderr
    (tmp_path / "other.json").write_text(json.dumps({"layers": {}}))
    proc = aikit(tmp_path, "run", "plan.json", "--manifest", "other.json", "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["manifest"] == str(tmp_path / "other.json")
    assert not (tmp_path / "runs").exists() or len(list((tmp_path / "runs").iterdir())) == 1


def chat_reply(content: str, finish: str = "stop") -> Reply:
    """A ``chat.completion`` exactly as the OpenAI API answers."""
    return Reply.json({"id": "chatcmpl-1", "object": "chat.completion", "created": 1741569952, "model": "m",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                                    "logprobs": None, "finish_reason": finish}],
                       "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}})


def test_llm_agent_of_the_manifest_carries_out_a_task(tmp_path: Path, llm_server: Any) -> None:
    """An ``llm`` manifest agent is an aikit agent (AgentSpec, the configured model) talking to a
    real local server that speaks the OpenAI wire format."""
    write_project(tmp_path, "## Audit\n- [ ] TASK-001 Review the README (layer: audit)\n  Check the install steps.\n"
                            "- [ ] TASK-002 Review again (agent: reviewer; depends: TASK-001)\n"
                            "- [ ] TASK-003 After the review (depends: TASK-002)\n")
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"agents": {"reviewer": MANIFEST["agents"]["reviewer"]},
         "layers": {"audit": {"agent": "reviewer"}, "execution": {}}}))
    write_config(tmp_path, f'[providers.openai]\nbase_url = "{llm_server.url}/v1"\napi_key = "test-key"\nretries = 0\n')
    llm_server.reply("/v1/chat/completions", chat_reply("Reviewed: the install steps work."),
                     chat_reply("Reviewed: the install", finish="length"))
    proc = aikit(tmp_path, "run", "plan.json", "--json")
    assert proc.returncode == 1, proc.stderr
    summary = json.loads(proc.stdout)
    by_id = {r["task"]: r for r in summary["results"]}
    assert [by_id[t]["status"] for t in ("TASK-001", "TASK-002", "TASK-003")] == ["ok", "error", "blocked"]
    assert by_id["TASK-001"]["agent"] == "reviewer"
    assert "stopped without finishing: max_tokens" in by_id["TASK-002"]["error"]
    log = (Path(summary["run_dir"]) / by_id["TASK-001"]["evidence"]).read_text(encoding="utf-8")
    assert "[answer]\nReviewed: the install steps work." in log and "model openai/m" in log
    sent = llm_server.requests_to("/v1/chat/completions")[0].json()
    assert sent["model"] == "m" and sent["temperature"] == 0
    assert sent["messages"][0] == {"role": "system", "content": "You review one task."}
    prompt = sent["messages"][1]["content"]
    assert "Task TASK-001: Review the README" in prompt and "- Check the install steps." in prompt


def test_hooks_json_commands_go_through_the_security_policy(tmp_path: Path) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    write_project(tmp_path, "## Q\n- [ ] TASK-001 Who am I\n- [ ] TASK-002 Elsewhere\n",
                  {"TASK-001": ["printenv", "AIKIT_TASK_ID"], "TASK-002": {"cmd": ["ls"], "cwd": str(outside)}})
    proc = aikit(tmp_path, "run", "plan.json", "--json")  # the default policy does not allow printenv
    assert proc.returncode == 1
    results = {r["task"]: r for r in json.loads(proc.stdout)["results"]}
    refused = results["TASK-001"]["commands"][0]
    assert refused["status"] == "refused" and refused["error"]["details"]["rule"] == "allowed_commands"
    assert results["TASK-002"]["commands"][0]["status"] == "refused"  # its cwd is outside the allowed paths
    assert "outside" in results["TASK-002"]["commands"][0]["error"]["message"]
    write_config(tmp_path, '[security]\nallowed_commands = ["printenv", "ls"]\n')
    proc = aikit(tmp_path, "run", "plan.json", "--json")
    results = {r["task"]: r for r in json.loads(proc.stdout)["results"]}
    ran = results["TASK-001"]["commands"][0]
    assert ran["status"] == "ok" and ran["stdout"] == "TASK-001\n" and ran["program"].endswith("/printenv")
    assert results["TASK-002"]["commands"][0]["status"] == "refused"  # still: the paths rule holds


# --------------------------------------------------------------------------------------------
# aikit plan (CLI)
# --------------------------------------------------------------------------------------------


def test_cli_run_of_a_plan_shows_each_task_and_a_summary(tmp_path: Path) -> None:
    """Not on a terminal: a line per finished task, then a summary line (a terminal gets a live line)."""
    write_project(tmp_path, "## Build\n- [ ] TASK-001 Compile\n- [ ] TASK-002 Lint\n",
                  {"TASK-001": ["echo", "built"], "TASK-002": ["false"]})
    write_config(tmp_path, '[security]\nallowed_commands = ["echo", "false"]\n')
    proc = aikit(tmp_path, "run", "plan.json")
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("  ✔ plan.json [") and " TASK-001: ok" in line for line in lines), proc.stdout
    assert any(line.startswith("  ✘ plan.json [") and " TASK-002: " in line for line in lines), proc.stdout
    assert re.search(r"^plan\.json: 2/2 tasks \(.*1 ok.*\) in ", proc.stdout, re.M), proc.stdout


def test_cli_plan_writes_the_plan(tmp_path: Path) -> None:
    (tmp_path / "sot.md").write_text(SOT, encoding="utf-8")
    proc = aikit(tmp_path, "plan", "--sot", "sot.md", "--out", "plan.json")
    assert proc.returncode == 0, proc.stderr
    assert "wrote plan.json: 3 queue(s), 9 task(s) (2 already checked)" in proc.stdout
    assert "Queue B — Checks: TASK-010, TASK-011, TASK-012" in proc.stdout
    plan = json.loads((tmp_path / "plan.json").read_text(encoding="utf-8"))
    assert plan["source"] == "sot.md" and len(plan["queues"]) == 3
    stdout = aikit(tmp_path, "plan", "--sot", "sot.md", "--out", "-")
    assert stdout.returncode == 0 and json.loads(stdout.stdout)["queues"] == plan["queues"]


def test_cli_plan_reports_malformed_lines(tmp_path: Path) -> None:
    (tmp_path / "sot.md").write_text(MALFORMED, encoding="utf-8")
    proc = aikit(tmp_path, "plan", "--sot", "sot.md", "--out", "plan.json")
    assert proc.returncode == 1
    assert "sot.md:6: checklist item has no task id" in proc.stderr
    assert "sot.md:9: malformed task id 'TASK-12'" in proc.stderr
    assert "9 problem(s); the plan was not written" in proc.stderr
    assert not (tmp_path / "plan.json").exists()
    lenient = aikit(tmp_path, "plan", "--sot", "sot.md", "--out", "plan.json", "--lenient")
    assert lenient.returncode == 0 and "sot.md:6:" in lenient.stderr
    assert (tmp_path / "plan.json").exists()
    missing = aikit(tmp_path, "plan", "--sot", "nope.md", "--out", "plan.json")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert main(["plan", "--sot", "x.md"]) == 2  # --out is required


# --------------------------------------------------------------------------------------------
# aikit run plan.json (CLI)
# --------------------------------------------------------------------------------------------


def test_happy_path_plan_then_run_with_noop_and_shell(tmp_path: Path) -> None:
    write_config(tmp_path, '[security]\nallowed_commands = ["echo", "python3"]\n')  # not by default
    (tmp_path / "sot.md").write_text(
        "## Queue A — Setup\n\n- [ ] TASK-001 Say hello\n- [ ] TASK-002 Nothing mapped\n- [x] TASK-003 Done\n\n"
        "## Queue B — Report\n\n- [ ] TASK-004 Show the task id (depends: TASK-001)\n", encoding="utf-8")
    (tmp_path / "hooks.json").write_text(json.dumps({
        "TASK-001": {"commands": [{"cmd": ["echo", "hello from TASK-001"]}]},
        "TASK-004": ["python3", "-c", "import os; print(os.environ['AIKIT_TASK_ID'], os.environ['AIKIT_QUEUE'])"],
    }), encoding="utf-8")
    planned = aikit(tmp_path, "plan", "--sot", "sot.md", "--out", "plan.json")
    assert planned.returncode == 0, planned.stderr
    proc = aikit(tmp_path, "run", "plan.json", "--max-workers", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"run \d{8}T\d{6}Z: ok — 4 task\(s\): 2 ok, 1 noop, 1 skipped", proc.stdout), proc.stdout
    run_dir = only_run_dir(tmp_path)
    assert sorted(p.name for p in (run_dir / "logs").iterdir()) == [f"TASK-00{i}.log" for i in range(1, 5)]
    hello = (run_dir / "logs" / "TASK-001.log").read_text(encoding="utf-8")
    assert "status: ok" in hello and "agent: shell" in hello and "$ echo 'hello from TASK-001'" in hello
    assert "exit_code: 0" in hello and "[stdout]\nhello from TASK-001\n" in hello
    noop = (run_dir / "logs" / "TASK-002.log").read_text(encoding="utf-8")
    assert "agent: noop" in noop and "status: noop" in noop and "NOOP: TASK-002 in Queue A — Setup" in noop
    assert "status: skipped" in (run_dir / "logs" / "TASK-003.log").read_text(encoding="utf-8")
    summary = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert summary["status"] == "ok" and summary["dry_run"] is False and summary["max_workers"] == 2
    assert summary["hooks"] == str(tmp_path / "hooks.json")  # found next to the plan
    assert summary["counts"] == {"total": 4, "ok": 2, "noop": 1, "skipped": 1, "error": 0, "blocked": 0,
                                 "cancelled": 0}
    by_id = {r["task"]: r for r in summary["results"]}
    assert [r["task"] for r in summary["results"]] == ["TASK-001", "TASK-002", "TASK-003", "TASK-004"]
    assert by_id["TASK-001"]["evidence"] == "logs/TASK-001.log"
    assert by_id["TASK-001"]["commands"][0]["stdout"] == "hello from TASK-001\n"
    assert by_id["TASK-001"]["commands"][0]["exit_code"] == 0
    assert by_id["TASK-004"]["commands"][0]["stdout"] == "TASK-004 Queue B — Report\n"
    assert by_id["TASK-004"]["started"] >= by_id["TASK-001"]["ended"]  # the dependency finished first


def test_dry_run_prints_what_would_run_and_writes_nothing(tmp_path: Path) -> None:
    write_project(tmp_path, "## Q\n- [ ] TASK-001 Echo\n- [ ] TASK-002 Stub\n- [x] TASK-003 Done\n",
                  {"TASK-001": ["echo", "hi"]})
    before = tree(tmp_path)
    proc = aikit(tmp_path, "run", "plan.json", "--dry-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Nothing is executed and nothing is written" in proc.stdout
    assert re.search(r"TASK-001\s+shell\s+Echo\n\s+would run: echo hi", proc.stdout), proc.stdout
    assert re.search(r"TASK-002\s+noop\s+Stub\n\s+would write an evidence stub", proc.stdout)
    assert re.search(r"TASK-003\s+skip\s+Done\n\s+skipped: already checked", proc.stdout)
    assert tree(tmp_path) == before  # no runs/, no logs, no summary
    as_json = aikit(tmp_path, "run", "--plan", "plan.json", "--dry-run", "--json")  # the spec's --plan form
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["dry_run"] is True and [t["status"] for t in report["tasks"]] == ["run", "run", "skip"]
    assert tree(tmp_path) == before


def test_dry_run_reports_refusals_with_a_failing_status(tmp_path: Path) -> None:
    write_project(tmp_path, "## Q\n- [ ] TASK-001 Delete\n", {"TASK-001": "rm -rf victim"})
    proc = aikit(tmp_path, "run", "plan.json", "--dry-run")
    assert proc.returncode == 1
    assert "REFUSED: would refuse `rm -rf victim`: permission_denied: command 'rm' is not allowed" in proc.stdout
    assert not (tmp_path / "runs").exists()


def test_disallowed_command_is_refused_with_evidence(tmp_path: Path) -> None:
    (tmp_path / "victim").write_text("keep me")
    write_project(tmp_path, "## Q\n- [ ] TASK-001 Delete\n- [ ] TASK-002 After (depends: TASK-001)\n"
                            "- [ ] TASK-003 Shell string\n",
                  {"TASK-001": {"commands": ["rm victim", "echo never"]}, "TASK-002": "echo after",
                   "TASK-003": ["sh", "-c", "echo via shell"]})
    proc = aikit(tmp_path, "run", "plan.json")
    assert proc.returncode == 1
    assert (tmp_path / "victim").read_text() == "keep me"
    assert "3 task(s) did not succeed: TASK-001, TASK-002, TASK-003" in proc.stderr
    run_dir = only_run_dir(tmp_path)
    log = (run_dir / "logs" / "TASK-001.log").read_text(encoding="utf-8")
    assert "status: error" in log and "--- command 1: refused ---" in log
    assert "error: permission_denied: command 'rm' is not allowed" in log
    assert "--- command 2: not_run ---" in log  # the task stops at the first failure
    assert "security.allowed_commands" in log  # says how to allow it
    assert "sh' is not allowed" in (run_dir / "logs" / "TASK-003.log").read_text(encoding="utf-8")  # no implicit shell
    summary = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    by_id = {r["task"]: r for r in summary["results"]}
    assert summary["status"] == "error"
    assert by_id["TASK-001"]["status"] == "error" and by_id["TASK-001"]["commands"][0]["status"] == "refused"
    assert by_id["TASK-001"]["commands"][0]["error"]["code"] == "permission_denied"
    assert by_id["TASK-002"]["status"] == "blocked" and by_id["TASK-002"]["commands"] == []


def test_command_arguments_outside_the_allowed_paths_are_refused(tmp_path: Path) -> None:
    (tmp_path / "inside.txt").write_text("inside\n")
    write_project(tmp_path, "## Q\n- [ ] TASK-001 Read outside\n- [ ] TASK-002 Read inside\n",
                  {"TASK-001": "cat /etc/hostname", "TASK-002": {"cmd": ["cat", "../inside.txt"], "cwd": "sub"}})
    (tmp_path / "sub").mkdir()
    dry = aikit(tmp_path, "run", "plan.json", "--dry-run")
    assert dry.returncode == 1
    assert "would refuse `cat /etc/hostname`: permission_denied: cat: argument '/etc/hostname'" in dry.stdout
    proc = aikit(tmp_path, "run", "plan.json")
    assert proc.returncode == 1
    summary = json.loads((only_run_dir(tmp_path) / "run.json").read_text(encoding="utf-8"))
    by_id = {r["task"]: r for r in summary["results"]}
    refused = by_id["TASK-001"]["commands"][0]
    assert refused["status"] == "refused" and refused["error"]["details"]["rule"] == "allowed_paths"
    assert by_id["TASK-002"]["status"] == "ok" and by_id["TASK-002"]["commands"][0]["stdout"] == "inside\n"


def test_sh_runs_only_when_the_policy_allows_it(tmp_path: Path) -> None:
    write_config(tmp_path, '[security]\nallowed_commands = ["echo", "sh"]\n')
    write_project(tmp_path, "## Q\n- [ ] TASK-001 Pipe\n", {"TASK-001": ["sh", "-c", "echo one | tr o 0"]})
    # tr is not allowed, but sh was allowed explicitly: what it runs is up to whoever allowed it
    proc = aikit(tmp_path, "run", "plan.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = (only_run_dir(tmp_path) / "logs" / "TASK-001.log").read_text(encoding="utf-8")
    assert "status: ok" in log and "[stdout]\n0ne\n" in log


def test_failing_command_and_timeout(tmp_path: Path) -> None:
    write_config(tmp_path, '[security]\nallowed_commands = ["python3", "sleep"]\n')  # not by default
    write_project(tmp_path, "## Q\n- [ ] TASK-001 Fails\n- [ ] TASK-002 Hangs\n",
                  {"TASK-001": ["python3", "-c", "import sys; print('bad', file=sys.stderr); sys.exit(3)"],
                   "TASK-002": {"cmd": ["sleep", "30"], "timeout_s": 0.5}})
    started = time.monotonic()
    proc = aikit(tmp_path, "run", "plan.json")
    assert time.monotonic() - started < 20
    assert proc.returncode == 1
    run_dir = only_run_dir(tmp_path)
    failed = (run_dir / "logs" / "TASK-001.log").read_text(encoding="utf-8")
    assert "exited with status 3" in failed and "exit_code: 3" in failed and "[stderr]\nbad" in failed
    hung = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["results"][1]
    assert hung["status"] == "error" and hung["commands"][0]["status"] == "timeout"
    assert "timed out after 0.5 s" in hung["error"]


def test_parallel_workers_are_observed(tmp_path: Path) -> None:
    sot = "## Q\n" + "".join(f"- [ ] TASK-00{i} Sleep {i}\n" for i in range(1, 5))
    write_project(tmp_path, sot, {f"TASK-00{i}": ["sleep", "0.6"] for i in range(1, 5)})
    proc = aikit(tmp_path, "run", "plan.json", "--max-workers", "4", "--runs-dir", "parallel", "--json")
    assert proc.returncode == 0, proc.stderr
    parallel = json.loads(proc.stdout)
    assert parallel["peak_workers"] == 4 and max_overlap(intervals(parallel)) == 4
    proc = aikit(tmp_path, "run", "plan.json", "--max-workers", "1", "--runs-dir", "serial", "--json")
    serial = json.loads(proc.stdout)
    assert serial["peak_workers"] == 1 and max_overlap(intervals(serial)) == 1
    assert serial["duration_s"] >= 4 * 0.6  # four sleeps in a row
    assert parallel["duration_s"] < serial["duration_s"]
    spans = intervals(serial)
    assert spans == sorted(spans)  # one at a time, in document order


def test_parallel_limit_in_process_with_aikit_hooks_and_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In process: a manifest agent, the worker limit, and the run seen through aikit's hook
    registry (``workflow.step.before``, fired by the engine once per task) and event bus."""
    monkeypatch.chdir(tmp_path)
    sot = "## A\n" + "".join(f"- [ ] TASK-10{i} t (agent: probe)\n" for i in range(5)) + \
          "## B\n- [ ] TASK-200 last (agent: probe; depends: TASK-100, TASK-104)\n"
    plan = parse_sot(sot, "sot.md").raise_for_problems()
    commands = hooks_from_dict({"A": ["sleep", "0.3"], "B": ["printenv", "PROBE"]})
    manifest = manifest_from_dict({"agents": {"probe": {"kind": "shell", "env": {"PROBE": "probed"}}}})
    policy = SecurityPolicy.default()
    policy.allowed_commands.add("printenv")
    events: list[tuple[str, str]] = []
    runner = PlanRunner(plan, commands=commands, manifest=manifest, policy=policy,
                        options=RunOptions(max_workers=3, runs_dir=tmp_path / "runs"),
                        on_event=lambda kind, r: events.append((kind, r.task)))
    before: list[str] = []
    runner.hooks.register("workflow.step.before", lambda ctx: before.append(ctx.payload["step"]))
    published: list[str] = []
    runner.events.subscribe("plan.task.finished", lambda event: published.append(event.payload["task"]))
    summary = runner.run()
    assert summary.status == "ok" and summary.exit_code == 0
    assert summary.peak_workers == 3 and max_overlap(intervals(summary.to_dict())) == 3
    assert before[:5] == [f"TASK-10{i}" for i in range(5)] and before[-1] == "TASK-200"
    assert events[-1] == ("task_finished", "TASK-200") and published[-1] == "TASK-200"
    assert sorted(published) == sorted(r.task for r in summary.results)
    assert {r.agent for r in summary.results} == {"probe"}
    assert "probed" in (summary.run_dir / "logs" / "TASK-200.log").read_text(encoding="utf-8")


def test_aikit_hooks_can_cancel_or_replace_a_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aikit_components.hooks import HookResult

    monkeypatch.chdir(tmp_path)
    plan = parse_sot("## Q\n- [ ] TASK-001 a\n- [ ] TASK-002 b (depends: TASK-001)\n- [ ] TASK-003 c\n"
                     "- [ ] TASK-004 d (depends: TASK-003)\n", "sot.md").raise_for_problems()
    runner = PlanRunner(plan, commands=hooks_from_dict({"Q": ["echo", "ran"]}),
                        options=RunOptions(runs_dir=tmp_path / "runs"))
    decisions = {"TASK-001": HookResult.cancel("frozen for the release"), "TASK-003": HookResult.replace({"done": 1})}
    runner.hooks.register("workflow.step.before", lambda ctx: decisions.get(ctx.payload["step"]))
    summary = runner.run()
    by_id = {r.task: r for r in summary.results}
    assert [by_id[t].status for t in sorted(by_id)] == ["error", "blocked", "ok", "ok"]
    assert "frozen for the release" in (by_id["TASK-001"].error or "") and by_id["TASK-001"].commands == []
    assert by_id["TASK-002"].error == "not run: TASK-001 ended error"
    assert by_id["TASK-003"].commands == [] and "decided by a workflow.step hook" in by_id["TASK-003"].message
    assert by_id["TASK-004"].commands[0]["stdout"] == "ran\n"
    assert all((summary.run_dir / r.evidence).is_file() for r in summary.results if r.evidence)
    assert len(list((summary.run_dir / "logs").iterdir())) == 4


def test_include_done_and_unknown_hooks(tmp_path: Path) -> None:
    write_project(tmp_path, "## Q\n- [x] TASK-001 Done already\n", {"TASK-001": ["echo", "again"], "TASK-777": "echo"})
    proc = aikit(tmp_path, "run", "plan.json", "--include-done")
    assert proc.returncode == 0, proc.stderr
    assert "'TASK-777' matches no task id or queue name" in proc.stderr
    log = (only_run_dir(tmp_path) / "logs" / "TASK-001.log").read_text(encoding="utf-8")
    assert "status: ok" in log and "again" in log


def test_queue_hooks_apply_to_every_task_of_the_queue(tmp_path: Path) -> None:
    write_project(tmp_path, "## Build\n- [ ] TASK-001 a\n- [ ] TASK-002 b\n",
                  {"Build": ["echo", "queue-level"], "TASK-002": ["echo", "task-level"]})
    hooks_dir = tmp_path / "cfg"
    hooks_dir.mkdir()
    (tmp_path / "hooks.json").rename(hooks_dir / "hooks.json")
    proc = aikit(tmp_path, "run", "plan.json", "--hooks", "cfg/hooks.json", "--json")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert [r["commands"][0]["stdout"] for r in results] == ["queue-level\n", "task-level\n"]


def test_exit_codes_for_bad_input(tmp_path: Path) -> None:
    assert aikit(tmp_path, "run", "missing.json").returncode == 2
    (tmp_path / "broken.json").write_text("[1, 2")
    proc = aikit(tmp_path, "run", "broken.json")
    assert proc.returncode == 2 and "not valid JSON" in proc.stderr
    write_project(tmp_path, "## Q\n- [ ] TASK-001 x (agent: robot)\n")
    proc = aikit(tmp_path, "run", "plan.json")
    assert proc.returncode == 2 and "unknown agent 'robot'" in proc.stderr
    write_project(tmp_path, "## Q\n- [ ] TASK-001 x\n", {"TASK-001": {"cmd": "echo", "bogus": 1}})
    proc = aikit(tmp_path, "run", "plan.json")
    assert proc.returncode == 2 and "unknown key(s) 'bogus'" in proc.stderr
    assert aikit(tmp_path, "run", "plan.json", "--max-workers", "0").returncode == 2
    assert aikit(tmp_path, "run", "plan.json", "--no-such-option").returncode == 2
    assert not (tmp_path / "runs").exists()


def test_run_arguments_keep_lua_scripts_working(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import types

    calls: list[tuple[str, list[str]]] = []
    fake = types.ModuleType("aikit_kernel.cli.run")
    fake.run_command = lambda script, args, **kwargs: calls.append((script, args)) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "aikit_kernel.cli.run", fake)
    assert main(["run", "hello.lua", "--max-workers", "3", "--dry-run"]) == 0
    assert calls == [("hello.lua", ["--max-workers", "3", "--dry-run"])]  # script arguments, untouched
    assert main(["run", "--dry-run", "hello.lua"]) == 2  # plan options before a Lua script
    assert main(["run"]) == 2
    assert main(["run", "--plan", "a.json", "b.json"]) == 2


def test_interrupt_kills_commands_and_writes_the_summary(tmp_path: Path) -> None:
    write_project(tmp_path, "## Q\n- [ ] TASK-001 Long\n- [ ] TASK-002 After (depends: TASK-001)\n",
                  {"TASK-001": ["sleep", "30"]})
    proc = subprocess.Popen([AIKIT, "run", "plan.json"], cwd=tmp_path, env=cli_env(tmp_path), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not list((tmp_path / "runs").glob("*/run.json")):
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, out + err
    summary = json.loads(next((tmp_path / "runs").glob("*/run.json")).read_text(encoding="utf-8"))
    assert summary["status"] == "interrupted"
    assert [r["status"] for r in summary["results"]] == ["cancelled", "cancelled"]


def test_components_import_no_kernel_modules() -> None:
    code = ("import sys, aikit_components.plans, aikit_components.plans.execution, aikit_components.tools.system; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('zmq', 'lupa', 'jupyter_client', 'aikit_kernel')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cli_defaults_match_the_runner() -> None:
    from aikit_components.plans import runner
    from aikit_kernel.cli import plan_cmd

    assert plan_cmd.DEFAULT_MAX_WORKERS == runner.DEFAULT_MAX_WORKERS == 4  # the spec's default
    assert plan_cmd.DEFAULT_TIMEOUT_S == runner.DEFAULT_TIMEOUT_S


def test_docs_example_parses(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "plans.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```markdown\n(.*?)```", text, re.S)
    assert blocks, "docs/plans.md has no ```markdown example"
    result = parse_sot(blocks[0], "sot.md")
    assert result.ok, [p.format("sot.md") for p in result.problems]
    assert len(result.plan.queues) == 2 and len(result.plan.tasks()) == 7  # as the page says
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    plan_example = json.loads(blocks[0])
    assert list(plan_example) == ["version", "source", "generated_at", "queues"]
    hooks_example = json.loads(next(b for b in blocks if '"commands"' in b))
    assert set(hooks_from_dict(hooks_example).entries) == {"TASK-002", "TASK-010", "TASK-011", "Queue B — Checks"}
    manifest = manifest_from_dict(json.loads(next(b for b in blocks if '"layers"' in b)))
    assert sorted(manifest.agents) == ["build", "noop", "reviewer", "shell", "tracker"]
    assert manifest.layer_agent("audit") == "reviewer" and manifest.layer_agent("orchestration") is None
    agents_table = text.split("These are all the plan agents there are:")[1].split("\n\n")[1]
    assert re.findall(r"^\| `(\w+)` \|", agents_table, re.M) == list(BUILTIN_AGENTS)
    assert "each agent of `manifest.json`" in agents_table and all(f"`{k}`" in agents_table for k in AGENT_KINDS)


def test_docs_python_example_runs(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "plans.md").read_text(encoding="utf-8")
    example = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    write_project(tmp_path, re.findall(r"```markdown\n(.*?)```", text, re.S)[0],
                  json.loads(next(b for b in re.findall(r"```json\n(.*?)```", text, re.S) if '"commands"' in b)))
    (tmp_path / "example.py").write_text(example, encoding="utf-8")
    proc = subprocess.run([sys.executable, "example.py"], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**cli_env(tmp_path), "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert "starting TASK-002" in proc.stdout and "TASK-010 ok" in proc.stdout  # echo runs; python3 is refused
    assert "TASK-002 error" in proc.stdout and proc.stdout.splitlines()[-1].startswith("error ")


def test_docs_cite_no_path_outside_the_repository() -> None:
    text = (ROOT / "docs" / "plans.md").read_text(encoding="utf-8")
    assert "/work/" not in text and "specs/" not in text  # what users need from the spec is on the page
    for module in (ROOT / "aikit_components" / "plans").glob("*.py"):
        assert "/work/" not in module.read_text(encoding="utf-8"), module
