"""YAML missions (the RustChain format): parsing every field, the step-type mapping, validation
reporting every problem at once, and ``aikit mission validate|run|resume`` end to end."""

from __future__ import annotations

import asyncio
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

from aikit_components.errors import ValidationError
from aikit_components.security import SecurityPolicy
from aikit_components.workflows.missions import (
    STEP_TYPES,
    UNSUPPORTED_STEP_TYPES,
    load_mission,
    parse_mission,
    step_type_table,
    validate_mission,
)
from tests.support.processes import kill_leftovers, processes_with, sleep_marker, stopped_after, wait_until

REPO = Path(__file__).resolve().parents[2]
MISSIONS = Path(__file__).resolve().parent / "missions"
EXAMPLES = REPO / "examples" / "missions"
AIKIT = str(Path(sys.executable).with_name("aikit"))


def aikit(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in ``cwd`` with a private data directory and no user configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIKIT_") or k == "AIKIT_TRUST_PROJECT_CONFIG"}
    env.update(AIKIT_DATA_DIR=str(cwd / "data"), XDG_CONFIG_HOME=str(cwd / "config"), COLUMNS="160")
    return subprocess.run([AIKIT, "mission", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def policy_for(root: Path) -> SecurityPolicy:
    return SecurityPolicy(allowed_paths=[root.resolve()])


# ---------------------------------------------------------------------------------------------- parsing
EVERY_FIELD = """\
name: "Every field"
version: "2.1"
description: "All the RustChain fields, and the aikit extensions"
inputs: {who: world}
config:
  timeout_seconds: 600
  fail_fast: false
  max_concurrent_steps: 3
  retry_attempts: 2
  retry_delay_ms: 1500
steps:
  - id: first
    name: "First step"
    step_type: create_file
    timeout_seconds: 30
    continue_on_error: true
    retry_attempts: 5
    retry_delay_ms: 250
    parameters: {path: a.txt, content: "hi {{context.who}}"}
  - id: second
    step_type: noop
    depends_on: [first]
    when: {ref: "{{first.status}}", op: eq, value: succeeded}
    loop: {range: [1, 3], max_iterations: 10}
    parameters: {n: "{{loop.item}}"}
"""


def test_every_field_is_mapped() -> None:
    mission = parse_mission(EVERY_FIELD)
    assert mission.problems == []
    wf = mission.workflow
    assert (wf.name, wf.version, wf.description, wf.inputs) == ("Every field", "2.1",
                                                                "All the RustChain fields, and the aikit extensions",
                                                                {"who": "world"})
    assert (wf.timeout_s, wf.fail_fast, wf.max_concurrency, wf.retry_attempts, wf.retry_delay_s) == (600.0, False, 3, 2, 1.5)
    first, second = wf.steps
    assert (first.id, first.name, first.kind, first.target) == ("first", "First step", "tool", "write_file")
    assert first.params == {"path": "a.txt", "content": "hi {{context.who}}"}
    assert (first.timeout_s, first.continue_on_error, first.retries, first.retry_delay_s) == (30.0, True, 5, 0.25)
    assert first.source_line == 12 and first.depends_on == []
    assert (second.name, second.kind, second.depends_on, second.source_line) == ("second", "noop", ["first"], 20)
    assert (second.when.ref, second.when.op, second.when.value) == ("{{first.status}}", "eq", "succeeded")
    assert (second.loop.range, second.loop.max_iterations) == ([1, 3], 10)
    assert mission.step_types == {"first": "create_file", "second": "noop"}
    # defaults: fail_fast on, no limits
    plain = parse_mission("name: m\nsteps:\n  - {id: a, step_type: noop}\n").workflow
    assert (plain.fail_fast, plain.timeout_s, plain.max_concurrency, plain.retry_attempts, plain.version) == (
        True, None, None, 0, "1.0")


@pytest.mark.parametrize(("step_type", "parameters", "kind", "target", "params"), [
    ("create_file", {"path": "a", "content": "x"}, "tool", "write_file", {"path": "a", "content": "x"}),
    ("edit_file", {"path": "a", "content": "x"}, "tool", "write_file", {"path": "a", "content": "x"}),
    ("edit_file", {"path": "a", "content": "x", "append": True}, "tool", "append_file", {"path": "a", "content": "x"}),
    ("edit_file", {"path": "a", "old": "x", "new": "y"}, "tool", "edit_file", {"path": "a", "old": "x", "new": "y"}),
    ("read_file", {"file": "a"}, "tool", "read_file", {"path": "a"}),
    ("delete_file", {"path": "a"}, "tool", "delete_file", {"path": "a"}),
    ("copy_file", {"from": "a", "to": "b"}, "tool", "copy_file", {"source": "a", "destination": "b"}),
    ("move_file", {"source": "a", "destination": "b"}, "tool", "move_file", {"source": "a", "destination": "b"}),
    ("list_directory", {"directory": "d"}, "tool", "list_directory", {"path": "d"}),
    ("file_search", {"pattern": "*.py", "directory": "src"}, "tool", "file_search", {"pattern": "*.py", "root": "src"}),
    ("file_search", {"pattern": "*.py", "content": "TODO"}, "tool", "grep", {"pattern": "TODO", "glob": "*.py"}),
    ("parse_json", {"content": "{}"}, "tool", "parse_json", {"text": "{}"}),
    ("parse_yaml", {"file": "a.yaml"}, "tool", "parse_yaml", {"path": "a.yaml"}),
    ("parse_xml", {"xml": "<a/>"}, "tool", "parse_xml", {"text": "<a/>"}),
    ("validate_schema", {"data": {"a": 1}, "schema": {"type": "object"}}, "tool", "validate_schema",
     {"data": {"a": 1}, "schema": {"type": "object"}}),
    ("validate_schema", {"file": "d.csv", "schema_type": "csv"}, "tool", "csv_process",
     {"operation": "validate", "path": "d.csv"}),
    ("csv_process", {"input_file": "d.csv", "operations": ["normalize"]}, "tool", "csv_process",
     {"path": "d.csv", "operations": ["normalize"]}),
    ("command", {"command": "ls", "args": ["-l"], "working_dir": "."}, "command", "run_process",
     {"command": ["ls", "-l"], "cwd": "."}),
    ("command", {"command": "git status --short", "timeout": 5}, "command", "run_process",
     {"command": ["git", "status", "--short"], "timeout_s": 5}),
    ("http", {"url": "https://example.com", "method": "POST", "body": {"q": 1}, "timeout": 3}, "tool", "http_request",
     {"url": "https://example.com", "method": "POST", "json": {"q": 1}, "timeout_s": 3}),
    ("sql_query", {"connection": "sqlite:///db.sqlite", "query": "select ?", "parameters": [1]}, "tool", "sql_query",
     {"database": "db.sqlite", "query": "select ?", "params": [1]}),
    ("compress", {"path": "out", "output": "out.zip"}, "tool", "compress", {"source": "out", "destination": "out.zip"}),
    ("git_status", {"path": "."}, "tool", "git_status", {"repo": "."}),
    ("git_diff", {"staged": True}, "tool", "git_diff", {"staged": True}),
    ("git_log", {"limit": 5}, "tool", "git_log", {"max_count": 5}),
    ("git_add", {"files": "a.txt"}, "tool", "git_add", {"paths": ["a.txt"]}),
    ("git_commit", {"message": "m"}, "tool", "git_commit", {"message": "m"}),
    ("monitor_resources", {}, "tool", "system_info", {}),
    ("llm", {"provider": "openai", "model": "gpt-4o-mini", "prompt": "hi", "system_message": "terse"}, "llm", None,
     {"model": "openai/gpt-4o-mini", "prompt": "hi", "system": "terse"}),
    ("llm", {"model": "openai/m", "prompt": "hi", "fallback": ["backup/m"]}, "llm", None,
     {"model": "openai/m", "prompt": "hi", "fallback": ["backup/m"]}),
    ("agent", {"name": "Analyst", "objective": "sum it", "max_iterations": 3, "tools": ["calculate"], "verbose": True},
     "agent", {"name": "Analyst", "max_steps": 3, "tools": ["calculate"]}, {"input": "sum it"}),
    ("noop", {}, "noop", None, {}),
    ("tool", {"name": "hash", "args": {"text": "x"}}, "tool", "hash", {"text": "x"}),
    ("uuid", {"count": 2}, "tool", "uuid", {"count": 2}),  # any aikit tool name is a step type too
])
def test_step_type_mapping(step_type: str, parameters: dict[str, Any], kind: str, target: Any,
                           params: dict[str, Any]) -> None:
    text = json.dumps({"name": "m", "steps": [{"id": "s", "step_type": step_type, "parameters": parameters}]})
    mission = parse_mission(text + "\n")
    assert mission.problems == []
    step = mission.workflow.steps[0]
    assert (step.kind, step.target, step.params) == (kind, target, params)


def test_llm_fallback_must_be_a_list_of_model_names() -> None:
    for fallback, expected in (("backup/m", "parameters.fallback: expected a list, got a string"),
                               ([1], "parameters.fallback: expected a list of model names")):
        text = json.dumps({"name": "m", "steps": [{"id": "s", "step_type": "llm",
                                                   "parameters": {"prompt": "hi", "fallback": fallback}}]})
        problems = parse_mission(text + "\n").problems
        assert any(expected in p for p in problems), problems


def test_every_catalogue_type_is_mapped_or_rejected_by_name() -> None:
    rustchain = {"create_file", "edit_file", "delete_file", "copy_file", "move_file", "read_file", "list_directory",
                 "file_search", "parse_json", "parse_yaml", "parse_xml", "validate_schema", "csv_process",
                 "compile_code", "run_tests", "format_code", "lint_code", "extract_functions", "generate_docs",
                 "git_commit", "git_branch", "git_merge", "git_status", "git_diff", "process_start", "process_kill",
                 "monitor_resources", "service_health", "compress", "sql_query", "redis_set", "redis_get",
                 "db_backup", "db_migrate", "websocket_connect", "ftp_upload", "ftp_download", "ssh_execute",
                 "ping_host", "generate_embedding", "similarity_search", "model_inference", "noop", "command", "http",
                 "llm", "tool", "agent", "chain", "rag_query", "rag_add"}
    assert rustchain <= set(STEP_TYPES) | set(UNSUPPORTED_STEP_TYPES)
    assert not set(STEP_TYPES) & set(UNSUPPORTED_STEP_TYPES)
    rows = dict(step_type_table())
    assert rows["create_file"] == "write_file" and rows["ssh_execute"].startswith("not supported")


def test_chain_loads_a_nested_mission(tmp_path: Path) -> None:
    (tmp_path / "inner.yaml").write_text("name: inner\nsteps:\n"
                                         "  - {id: x, step_type: noop, parameters: {v: '{{input.v}}'}}\n")
    (tmp_path / "outer.yaml").write_text("name: outer\nsteps:\n  - id: sub\n    step_type: chain\n"
                                         "    parameters: {mission: inner.yaml, inputs: {v: 1}}\n")
    step = parse_mission(tmp_path / "outer.yaml").workflow.steps[0]
    assert (step.kind, step.params, step.workflow.name) == ("workflow", {"v": 1}, "inner")
    (tmp_path / "loop.yaml").write_text("name: loop\nsteps:\n"
                                        "  - {id: me, step_type: chain, parameters: {mission: loop.yaml}}\n")
    assert "missions include each other" in parse_mission(tmp_path / "loop.yaml").problems[0]


# ---------------------------------------------------------------------------------------------- validation
# (line, beginning of the message) for tests/workflows/missions/broken.yaml, in file order.
BROKEN_EXPECTED = [
    "line 5: config.fail_fast: expected true or false, got 'maybe'",
    "line 6: config.retry_attempts: must be at least 0, got -1",
    "step 'fetch' (line 8): depends on unknown step 'nowhere'",
    "line 14: dependency cycle: a -> b -> c -> a",
    "step 'fetch' (line 23): duplicate step id (first declared at line 8)",
    "step 'remote' (line 27): step type 'ssh_execute' is not supported by aikit (no tool for it); supported: agent, "
    "approval, chain,",
    "step 'typo' (line 30): unknown step type 'crate_file' (did you mean 'create_file'?",
    "step 'write' (line 36): parameters.content: expected string, got integer",
    "step 'write' (line 37): parameters.colour: unknown parameter (known: content, create_dirs, encoding, overwrite, path)",
    "step 'report' (line 43): parameters.content: {{steps.ghost.output.x}} refers to unknown step 'ghost'",
    "step 'report' (line 43): parameters.content: {{input.missing}}: input 'missing' is not given",
    "step 'wipe' (line 46): parameters.command: denied by the security policy (rule allowed_commands): command 'rm'",
    "step 'steal' (line 49): parameters.path: denied by the security policy (rule allowed_paths): cannot read '/etc/shadow'",
]


def test_validate_reports_every_problem_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    problems = validate_mission(MISSIONS / "broken.yaml", policy=policy_for(tmp_path))
    assert len(problems) == len(BROKEN_EXPECTED), "\n".join(problems)
    for problem, expected in zip(problems, BROKEN_EXPECTED):
        assert problem.startswith(expected), f"{problem!r}\n  does not start with\n{expected!r}"
    with pytest.raises(ValidationError) as caught:
        load_mission(MISSIONS / "broken.yaml", policy=policy_for(tmp_path))
    assert caught.value.problems == problems


def test_cli_validate_lists_problems_and_exits_1(tmp_path: Path) -> None:
    result = aikit(tmp_path, "validate", str(MISSIONS / "broken.yaml"))
    assert result.returncode == 1
    assert f"{len(BROKEN_EXPECTED)} problems:" in result.stderr
    lines = [line[4:] for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert [line[:40] for line in lines] == [e[:40] for e in BROKEN_EXPECTED]


def test_yaml_errors_and_bad_fields_have_lines() -> None:
    assert parse_mission("name: m\nsteps:\n  - id: a\n    step_type: noop\n   bad: [\n").problems[0].startswith(
        "line 5: invalid YAML")
    problems = parse_mission("name: m\nstepz: []\nsteps:\n  - {id: a, step_type: noop, dependson: [b]}\n").problems
    assert problems == [
        "line 2: unknown mission field 'stepz' (did you mean 'steps'? known: version, name, description, config, steps, "
        "inputs)",
        "step 'a' (line 4): unknown step field 'dependson' (did you mean 'depends_on'? known: id, name, step_type, "
        "depends_on, timeout_seconds, continue_on_error, parameters, description, retry_attempts, retry_delay_ms, when, "
        "loop, approval)",
    ]


def test_risky_steps_denied_at_validation_and_never_run(tmp_path: Path) -> None:
    result = aikit(tmp_path, "validate", str(MISSIONS / "risky.yaml"))
    assert result.returncode == 1, result.stdout
    assert "step 'wipe' (line 12): parameters.command: denied by the security policy (rule allowed_commands)" \
           in result.stderr
    assert "step 'overwrite' (line 15): parameters.path: denied by the security policy (rule allowed_paths): " \
           "cannot write '/etc/aikit-test.conf'" in result.stderr
    assert "step 'escape' (line 18): parameters.destination: denied by the security policy (rule allowed_paths)" \
           in result.stderr
    assert "step 'metadata' (line 21): parameters.url: denied by the security policy (rule private_hosts)" in result.stderr
    assert "harmless" not in result.stderr
    ran = aikit(tmp_path, "run", str(MISSIONS / "risky.yaml"))
    assert ran.returncode == 1 and "4 problems" in ran.stderr
    assert not (tmp_path / "harmless.txt").exists()  # nothing ran


def test_inputs_fill_paths_before_the_policy_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    text = ("name: m\ninputs: {dir: out}\nsteps:\n"
            "  - {id: w, step_type: create_file, parameters: {path: '{{input.dir}}/a', content: x}}\n")
    assert validate_mission(text, policy=policy_for(tmp_path)) == []
    problems = validate_mission(text, policy=policy_for(tmp_path), inputs={"dir": "/etc"})
    assert len(problems) == 1 and "(rule allowed_paths)" in problems[0]


def test_command_arguments_are_checked_against_the_allowed_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "notes.txt").write_text("inside\n")
    text = ("name: m\ninputs: {file: notes.txt}\nsteps:\n"
            "  - {id: outside, step_type: command, parameters: {command: cat /etc/hostname}}\n"
            "  - {id: up, step_type: command, parameters: {command: cat ../notes.txt, working_dir: sub}}\n"
            "  - {id: inside, step_type: command, parameters: {command: cat notes.txt}}\n"
            "  - {id: later, step_type: command, parameters: {command: [cat, '{{input.file}}']}}\n"
            "  - {id: badcwd, step_type: command, parameters: {command: cat notes.txt, working_dir: /etc}}\n"
            "  - {id: runtime, step_type: command, depends_on: [inside],\n"
            "     parameters: {command: [cat, '/{{inside.output.stdout}}']}}\n")
    problems = validate_mission(text, policy=policy_for(tmp_path))
    # ../notes.txt from sub/ is inside; a step's output is only known (and checked) when it runs
    assert len(problems) == 2, "\n".join(problems)
    assert problems[0].startswith("step 'outside' (line 4): parameters.command: denied by the security policy "
                                  "(rule allowed_paths): cat: argument '/etc/hostname' names /etc/hostname")
    assert problems[1].startswith("step 'badcwd' (line 8): parameters.working_dir: denied by the security policy "
                                  "(rule allowed_paths)")  # reported once, as the cwd
    filled = validate_mission(text, policy=policy_for(tmp_path), inputs={"file": "../escape"})
    assert len(filled) == 3 and filled[1].startswith("step 'later' (line 7): parameters.command: denied"), filled


# ---------------------------------------------------------------------------------------------- CLI
def test_dry_run_prints_the_layers(tmp_path: Path) -> None:
    result = aikit(tmp_path, "validate", "--dry-run", str(MISSIONS / "pipeline.yaml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Order pipeline: 8 steps in 6 layers",
        "  1. write_order [create_file -> write_file]",
        "  2. read_order [read_file]",
        "  3. parse_order [parse_json]",
        "  4. write_items [create_file -> write_file], announce [command -> run_process]",
        "  5. item_stats [csv_process], list_work [list_directory]",
        "  6. report [create_file -> write_file]",
    ]
    dry = aikit(tmp_path, "run", "--dry-run", str(MISSIONS / "pipeline.yaml"))
    assert dry.returncode == 0 and "dry run: nothing was run" in dry.stdout
    assert not (tmp_path / "work").exists()


def test_run_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "records" / "run.json"
    result = aikit(tmp_path, "run", str(MISSIONS / "pipeline.yaml"), "--input", "customer=Globex", "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    steps = ["write_order", "read_order", "parse_order", "write_items", "announce", "item_stats", "list_work", "report"]
    # progress lines (not a terminal) and the result table
    assert all(f"] {sid}: succeeded" in result.stdout for sid in steps)
    for header in ("step", "status", "attempts", "duration", "error"):
        assert header in result.stdout
    table_rows = [line for line in result.stdout.splitlines() if line.startswith("│ ")]
    assert [row.split("│")[1].strip() for row in table_rows] == steps
    assert all(row.split("│")[2].strip() == "succeeded" for row in table_rows)
    assert f"run record: {out}" in result.stdout
    assert all(line == line.rstrip() for line in result.stdout.splitlines())  # no padding off a terminal
    assert sum(line.startswith("[") and "] write_order:" in line for line in result.stdout.splitlines()) == 1
    # values flowed between steps in both template forms
    assert (tmp_path / "work" / "report.txt").read_text() == (
        "order 42 for Globex\nrows: 2\nfiles: 2\necho: order #42 Globex\n\n")
    assert (tmp_path / "work" / "items.csv").read_text() == "sku,qty,price\nA-1,2,3.5\nB-7,1,10\n"
    record = json.loads(out.read_text())
    assert record["status"] == "succeeded" and record["workflow"] == "Order pipeline"
    assert record["inputs"] == {"customer": "Globex"}
    assert record["source"] == str(MISSIONS / "pipeline.yaml")
    assert record["mission"]["step_types"]["announce"] == "command"
    assert set(record["steps"]) == set(steps)
    assert record["steps"]["parse_order"]["output"]["items"][1] == {"sku": "B-7", "qty": 1, "price": 10}
    assert record["steps"]["announce"]["output"]["stdout"] == "order #42 Globex\n"
    assert all(s["attempts"] == 1 and s["duration_s"] is not None for s in record["steps"].values())


def test_failed_mission_exits_1_and_resumes(tmp_path: Path) -> None:
    mission = str(MISSIONS / "flaky.yaml")
    failed = aikit(tmp_path, "run", mission)
    assert failed.returncode == 1
    assert "need_input: failed" in failed.stdout and "report: upstream_failed" in failed.stdout
    assert "command 'cat' exited with code 1" in failed.stdout
    run_id = failed.stdout.split("resume with: aikit mission resume ")[1].split()[0]
    record_path = tmp_path / "data" / "runs" / f"{run_id}.json"
    before = json.loads(record_path.read_text())
    assert before["status"] == "failed" and before["steps"]["need_input"]["error"]["code"] == "command_failed"
    assert (tmp_path / "out" / "log.txt").read_text() == "started\n"

    (tmp_path / "input.txt").write_text("hello")  # fix the cause
    resumed = aikit(tmp_path, "resume", run_id)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming run {run_id} (1 step already succeeded)" in resumed.stdout
    assert "log_start: succeeded" not in resumed.stdout  # not re-run ...
    assert (tmp_path / "out" / "log.txt").read_text() == "started\n"  # ... so the log has one line
    assert (tmp_path / "out" / "report.txt").read_text() == "input was: hello"
    after = json.loads(record_path.read_text())
    assert after["status"] == "succeeded" and after["run_id"] == run_id
    assert after["steps"]["log_start"]["started_at"] == before["steps"]["log_start"]["started_at"]
    assert after["steps"]["need_input"]["attempts"] == 1

    listing = aikit(tmp_path, "list", "--json")
    runs = json.loads(listing.stdout)
    assert [(r["run_id"], r["status"], r["succeeded"]) for r in runs] == [(run_id, "succeeded", 3)]
    again = aikit(tmp_path, "resume", run_id)
    assert again.returncode == 0 and "already succeeded" in again.stdout
    unknown = aikit(tmp_path, "resume", "nope")
    assert unknown.returncode == 1 and "no run 'nope'" in unknown.stderr


def test_every_offline_step_type_runs(tmp_path: Path) -> None:
    result = aikit(tmp_path, "run", str(MISSIONS / "all_types.yaml"), "--out", str(tmp_path / "record.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    steps = json.loads((tmp_path / "record.json").read_text())["steps"]
    assert {s["status"] for s in steps.values()} == {"succeeded"} and len(steps) == 32
    assert steps["read"]["output"]["content"] == "gamma\nTODO: beta\ndelta\n"  # edit_file, then append
    assert steps["grep"]["output"]["count"] == 2
    assert steps["sql_select"]["output"]["rows"] == [[2]]
    assert steps["csv_check"]["output"]["valid"] is True and steps["schema"]["output"]["valid"] is True
    assert steps["log"]["output"][0]["subject"] == "first"
    assert steps["xml"]["output"] == {"r": {"a": "1"}} and steps["done"]["output"] == {"ok": True}
    assert (tmp_path / "t.zip").exists() and not (tmp_path / "t" / "c.txt").exists()


def start_slow_mission(tmp_path: Path, marker: str) -> subprocess.Popen[str]:
    """``aikit mission run`` of steps a (a file), b (``sleep MARKER``) and c (after b), once b's
    program runs."""
    (tmp_path / "slow.yaml").write_text(
        "name: slow\nsteps:\n"
        "  - {id: a, step_type: create_file, parameters: {path: a.txt, content: x}}\n"
        f"  - {{id: b, step_type: command, depends_on: [a], parameters: {{command: sleep, args: ['{marker}']}}}}\n"
        "  - {id: c, step_type: noop, depends_on: [b]}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIKIT_") or k == "AIKIT_TRUST_PROJECT_CONFIG"}
    env.update(AIKIT_DATA_DIR=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "config"))
    # SIGINT as a terminal's Ctrl-C finds it: tests started in the background (a non-interactive
    # shell's `&`) pass it down ignored, and a program started so rightly ignores Ctrl-C
    proc = subprocess.Popen([AIKIT, "mission", "run", "slow.yaml", "--run-id", "r1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert wait_until(lambda: processes_with(marker) or proc.poll() is not None, 60), "step b never started"
    assert proc.poll() is None, proc.communicate()
    return proc


def test_interrupted_run_is_recorded_and_resumes(tmp_path: Path) -> None:
    marker = sleep_marker(30)
    with stopped_after(start_slow_mission(tmp_path, marker), markers=(marker,)) as proc:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)  # b's sleep lasts 30 s: it was cut short
    assert proc.returncode == 130 and "resume with: aikit mission resume r1" in err
    record = json.loads((tmp_path / "data" / "runs" / "r1.json").read_text())
    assert record["status"] == "cancelled" and record["steps"]["a"]["status"] == "succeeded"
    assert record["steps"]["b"]["status"] == "cancelled"
    (tmp_path / "slow.yaml").write_text((tmp_path / "slow.yaml").read_text().replace(f"'{marker}'", "'0'"))
    resumed = aikit(tmp_path, "resume", "r1")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "b: succeeded" in resumed.stdout and "a: succeeded" not in resumed.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tgkill and /proc/PID/task are Linux's")
def test_a_ctrl_c_given_to_another_thread_stops_the_run_at_once(tmp_path: Path) -> None:
    """The kernel hands a process's SIGINT to another thread while the main thread blocks signals
    (around every program start). The run must see it all the same, not once b's program has
    ended: with asyncio.run's handler it did not (a busy machine lost the Ctrl-C of the test
    above that way; aikit_components/interrupts.py)."""
    import ctypes

    marker = sleep_marker(600)  # b would take 10 minutes: a run still going after 60 s missed the Ctrl-C
    with stopped_after(start_slow_mission(tmp_path, marker), markers=(marker,)) as proc:
        others = sorted(int(t) for t in os.listdir(f"/proc/{proc.pid}/task") if int(t) != proc.pid)
        tgkill = ctypes.CDLL(None, use_errno=True).tgkill
        assert any(tgkill(proc.pid, tid, signal.SIGINT) == 0 for tid in reversed(others)), others
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    record = json.loads((tmp_path / "data" / "runs" / "r1.json").read_text())
    assert record["status"] == "cancelled" and record["steps"]["b"]["status"] == "cancelled"


def test_crashed_run_resumes_without_rerunning_completed_steps(tmp_path: Path) -> None:
    """A crash (SIGKILL: no handler runs, nothing is flushed on the way out) leaves the record in
    State saying "running"; ``aikit mission resume`` reuses the steps it had finished."""
    marker = sleep_marker(30)
    (tmp_path / "crash.yaml").write_text(
        "name: crash\nsteps:\n"
        "  - {id: a, step_type: command, parameters: {command: sh, args: ['-c', 'echo run >> a.log']}}\n"
        f"  - {{id: b, step_type: command, depends_on: [a], parameters: {{command: sleep, args: ['{marker}']}}}}\n"
        "  - {id: c, step_type: noop, depends_on: [b]}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIKIT_") or k == "AIKIT_TRUST_PROJECT_CONFIG"}
    env.update(AIKIT_DATA_DIR=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "config"))
    user_config = tmp_path / "config" / "aikit" / "aikit.toml"  # the user's own file: trusted
    user_config.parent.mkdir(parents=True)
    user_config.write_text('[security]\nallowed_commands = ["sh", "sleep"]\n')
    proc = subprocess.Popen([AIKIT, "mission", "run", "crash.yaml", "--run-id", "c1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "a: succeeded" in line:
                break
        assert wait_until(lambda: processes_with(marker), 30.0), "step b never started"
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        kill_leftovers(marker)  # outside Linux nobody is left to stop b's program after a SIGKILL
    assert proc.returncode == -signal.SIGKILL
    assert (tmp_path / "a.log").read_text() == "run\n"
    listed = aikit(tmp_path, "list")
    assert re.search(r"c1 .* running +1/3 steps", listed.stdout), listed.stdout
    (tmp_path / "crash.yaml").write_text((tmp_path / "crash.yaml").read_text().replace(f"'{marker}'", "'0'"))
    resumed = aikit(tmp_path, "resume", "c1")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming run c1 (1 step already succeeded)" in resumed.stdout
    assert "b: succeeded" in resumed.stdout and "a: succeeded" not in resumed.stdout
    assert (tmp_path / "a.log").read_text() == "run\n"  # a did not run again
    record = json.loads((tmp_path / "data" / "runs" / "c1.json").read_text())
    assert record["status"] == "succeeded" and record["steps"]["a"]["attempts"] == 1


@pytest.mark.skipif(os.name != "posix", reason="process groups and the process watchdog are POSIX")
def test_a_killed_run_takes_its_running_program_with_it(tmp_path: Path) -> None:
    """SIGKILL of ``aikit mission run`` (no handler runs) still ends the program its command step
    started: aikit's process watchdog kills its process group when aikit dies."""
    marker = f"60.{os.getpid()}{time.monotonic_ns() % 10**6:06d}"  # sleep's argument, unique in /proc
    (tmp_path / "orphan.yaml").write_text(
        "name: orphan\nsteps:\n"
        f"  - {{id: wait, step_type: command, parameters: {{command: sleep, args: ['{marker}']}}}}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIKIT_") or k == "AIKIT_TRUST_PROJECT_CONFIG"}
    env.update(AIKIT_DATA_DIR=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "config"))
    proc = subprocess.Popen([AIKIT, "mission", "run", "orphan.yaml"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=tmp_path, env=env)
    with stopped_after(proc, markers=(marker,)):
        assert wait_until(lambda: processes_with(marker), 60.0), "the command step never started"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert wait_until(lambda: not processes_with(marker), 30.0), "sleep outlived the killed aikit"


def test_live_progress_on_a_terminal(tmp_path: Path) -> None:
    import pty

    env = {k: v for k, v in os.environ.items() if not k.startswith("AIKIT_") or k == "AIKIT_TRUST_PROJECT_CONFIG"}
    env.update(AIKIT_DATA_DIR=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "config"), TERM="xterm",
               COLUMNS="120")
    env.pop("NO_COLOR", None)
    master, slave = pty.openpty()
    proc = subprocess.Popen([AIKIT, "mission", "run", str(MISSIONS / "pipeline.yaml")], stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, cwd=tmp_path, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    text = b"".join(chunks).decode("utf-8", "replace")
    assert "\x1b[" in text  # rich drew it
    assert "8/8" in text and "✓" in text and "report" in text
    assert "Order pipeline: succeeded" in text


def test_examples_validate_and_the_sales_report_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    examples = sorted(EXAMPLES.glob("*.yaml"))
    assert len(examples) >= 2
    for example in examples:
        assert validate_mission(example, policy=policy_for(tmp_path)) == [], example.name
    result = aikit(tmp_path, "run", str(EXAMPLES / "sales_report.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    report = (tmp_path / "sales_report" / "report.md").read_text()
    assert "best region: north (80.0 revenue)" in report and "| east | 7 | 17.5 |" in report
    assert (tmp_path / "sales_report.zip").exists()


def test_spec_linear_workflow_runs_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The spec's "Basic Linear Workflow", loaded with load_mission and run by the engine."""
    from aikit_components.components import Components
    from aikit_components.config import Config
    from aikit_components.workflows import engine

    monkeypatch.chdir(tmp_path)
    text = """\
name: "File Processing Pipeline"
version: "1.0"
steps:
  - id: "create_input"
    name: "Create Input File"
    step_type: "create_file"
    parameters: {path: "input.txt", content: "Hello, World!"}
  - id: "process_file"
    name: "Process File Content"
    step_type: "edit_file"
    depends_on: ["create_input"]
    parameters: {path: "input.txt", content: "Processed: Hello, World!"}
  - id: "validate_output"
    name: "Validate Processing"
    step_type: "read_file"
    depends_on: ["process_file"]
    parameters: {path: "input.txt"}
"""
    with Components.open(config=Config.load(env={}, user_dir=tmp_path), data_dir=tmp_path / "data",
                         plugins=False) as components:
        workflow = load_mission(text, components=components)
        record = asyncio.run(engine.run(workflow, components=components))
    assert record.status == "succeeded"
    assert record.steps["validate_output"].output["content"] == "Processed: Hello, World!"


def test_types_command(capsys: pytest.CaptureFixture[str]) -> None:
    from aikit_kernel.cli.main import main

    assert main(["mission", "types"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^create_file +write_file$", out, re.M)
    assert re.search(r"^ssh_execute +not supported", out, re.M)
