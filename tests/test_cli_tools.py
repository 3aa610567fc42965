"""`aikit tools list|info|call` from a terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

AIKIT = str(Path(sys.executable).with_name("aikit"))


def aikit(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, AIKIT_DATA_DIR=str(tmp_path / "data"))
    return subprocess.run([AIKIT, "tools", *args], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)


def test_list_info_and_call(tmp_path: Path) -> None:
    listing = aikit(tmp_path, "list", "--json")
    assert listing.returncode == 0, listing.stderr
    names = {t["name"] for t in json.loads(listing.stdout)}
    assert {"read_file", "write_file"} <= names
    info = aikit(tmp_path, "info", "write_file")
    assert info.returncode == 0 and "Parameters:" in info.stdout and "path" in info.stdout
    (tmp_path / "note.txt").write_text("hello")
    called = aikit(tmp_path, "call", "read_file", '{"path": "note.txt"}')
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout)["content"] == "hello"


def test_errors_are_reported_without_traceback(tmp_path: Path) -> None:
    unknown = aikit(tmp_path, "call", "no_such_tool")
    assert unknown.returncode == 1 and "not_found" in unknown.stderr and "Traceback" not in unknown.stderr
    bad = aikit(tmp_path, "call", "read_file", '{"path": 3, "extra": 1}')
    assert bad.returncode == 1 and "invalid_argument" in bad.stderr and "extra" in bad.stderr
    not_json = aikit(tmp_path, "call", "read_file", "{nope")
    assert not_json.returncode == 2 and "not valid JSON" in not_json.stderr
    outside = aikit(tmp_path, "call", "read_file", '{"path": "/etc/passwd"}')
    assert outside.returncode == 1 and "permission_denied" in outside.stderr
