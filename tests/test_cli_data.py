"""`aikit run --arg`, `aikit state`, `aikit sessions` and `aikit artifacts` on a real data directory:
a Lua script writes through the runtime, the shell commands read (and write) the same stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

AIKIT = str(Path(sys.executable).with_name("aikit"))
REPO = Path(__file__).resolve().parents[1]


def aikit(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIKIT_")}
    env.update(AIKIT_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(REPO))
    return subprocess.run([AIKIT, *args], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)


SCRIPT = """\
print("topic=" .. arg.topic, "first=" .. arg[1], "count=" .. select("#", ...))
State.set("global", "limits", {max = 3})
Artifact.put("report.md", "# Report", {mime = "text/markdown"})
print("from shell:", State.get("global", "from_shell").n)
"""


def test_a_script_and_the_shell_share_the_stores(tmp_path: Path) -> None:
    (tmp_path / "job.lua").write_text(SCRIPT)
    assert aikit(tmp_path, "state", "set", "from_shell", '{"n": 7}').returncode == 0
    run = aikit(tmp_path, "run", "--arg", "topic=llamas", "--arg", "empty=", "job.lua", "a")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "topic=llamas\tfirst=a\tcount=1\nfrom shell:\t7\n"

    assert json.loads(aikit(tmp_path, "state", "get", "limits").stdout) == {"max": 3}
    assert aikit(tmp_path, "state", "list").stdout.split() == ["from_shell", "limits"]
    assert aikit(tmp_path, "state", "set", "word", "plain text").returncode == 0  # not JSON: a string
    assert json.loads(aikit(tmp_path, "state", "get", "word").stdout) == "plain text"
    assert aikit(tmp_path, "state", "delete", "word").returncode == 0
    missing = aikit(tmp_path, "state", "get", "word")
    assert missing.returncode == 3 and "no key 'word'" in missing.stderr
    bad = aikit(tmp_path, "state", "get", "x", "--scope", "nowhere")
    assert bad.returncode == 1 and "unknown state scope" in bad.stderr

    sessions = json.loads(aikit(tmp_path, "sessions", "list", "--json").stdout)
    assert [s["name"] for s in sessions] == ["job.lua"] and sessions[0]["status"] == "completed"
    shown = json.loads(aikit(tmp_path, "sessions", "show", sessions[0]["id"]).stdout)
    assert [a["name"] for a in shown["artifacts"]] == ["report.md"]
    missing = aikit(tmp_path, "sessions", "show", "s-nope")
    assert missing.returncode == 3 and "`aikit sessions list` shows them" in missing.stderr

    assert "report.md  v1  8 bytes  text/markdown" in aikit(tmp_path, "artifacts", "list").stdout
    assert aikit(tmp_path, "artifacts", "get", "report.md").stdout == "# Report"
    assert aikit(tmp_path, "artifacts", "get", "report.md", "-o", "out.md").returncode == 0
    assert (tmp_path / "out.md").read_text() == "# Report"
    missing = aikit(tmp_path, "artifacts", "get", "report.md", "--version", "9")
    assert missing.returncode == 3
    assert "no artifact named 'report.md' with version 9 (`aikit artifacts list`" in missing.stderr


def test_run_arg_must_be_name_equals_value(tmp_path: Path) -> None:
    (tmp_path / "job.lua").write_text("print(1)\n")
    proc = aikit(tmp_path, "run", "--arg", "no-equals", "job.lua")
    assert proc.returncode == 2 and "--arg expects NAME=VALUE" in proc.stderr


def test_help_of_the_new_commands_ends_with_an_example(tmp_path: Path) -> None:
    for command in (["console"], ["doctor"], ["state"], ["state", "set"], ["sessions"], ["artifacts"], ["run"]):
        out = aikit(tmp_path, *command, "--help").stdout.rstrip()
        assert "examples:" in out and out.splitlines()[-1].startswith("  aikit "), (command, out[-300:])


def test_listings_are_aligned_columns_or_json(capsys: pytest.CaptureFixture[str]) -> None:
    from aikit_kernel.cli.common import print_records

    records = [{"id": "s-1", "status": "completed", "name": "a long name"}, {"id": "s-22", "status": "interrupted"}]
    print_records(records, ("id", "status", "name"))
    assert capsys.readouterr().out.splitlines() == ["s-1   completed    a long name", "s-22  interrupted"]
    print_records(records, ("id",), as_json=True)
    assert json.loads(capsys.readouterr().out) == records
