"""`aikit doctor`, run for real (the installed command) in a temporary data directory."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.llm_server import Reply

AIKIT = str(Path(sys.executable).with_name("aikit"))
REPO = Path(__file__).resolve().parents[1]


def doctor(tmp_path: Path, *args: str, toml: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "aikit.toml").write_text(toml)
    (tmp_path / "user.toml").write_text("")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AIKIT_")}
    clean.update(AIKIT_DATA_DIR=str(tmp_path / "data"), AIKIT_CONFIG=str(tmp_path / "user.toml"),
                 PYTHONPATH=str(REPO), **env)
    return subprocess.run([AIKIT, "doctor", *args], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env=clean)


def by_name(proc: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    report = json.loads(proc.stdout)
    return {check["name"]: check for check in report["checks"]}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_quick_json_on_a_fresh_install_passes(tmp_path: Path) -> None:
    proc = doctor(tmp_path, "--quick", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = by_name(proc)
    assert json.loads(proc.stdout)["ok"] is True
    for name in ("python", "aikit", "config", "kernelspec", "data dir", "free space", "databases", "local model",
                 "embedding model", "providers", "c compiler", "security"):
        assert name in checks, name
    assert checks["data dir"]["status"] == "ok" and str(tmp_path / "data") in checks["data dir"]["detail"]
    assert "this aikit" in checks["kernelspec"]["detail"]
    assert "not loaded: --quick" in checks["local model"]["detail"]
    assert "postgresql" not in checks and "ray" not in checks  # not configured: not checked


def test_a_provider_that_answers_and_failures_with_their_fixes(tmp_path: Path, llm_server: Any) -> None:
    llm_server.reply("/v1/chat/completions", Reply.fixture("openai_chat_text.json"),
                     Reply.fixture("openai_chat_text.json"))  # two runs below
    toml = f"""
[providers.mock]
type = "openai"
base_url = "{llm_server.url}/v1"
api_key = "sk-test"
doctor_model = "gpt-test"

[providers.nokey]
type = "openai"
base_url = "{llm_server.url}/v1"
api_key_env = "AIKIT_DOCTOR_TEST_MISSING_KEY"

[storage]
url = "postgresql://nobody@127.0.0.1:{closed_port()}/none"

[ray]
address = "127.0.0.1:{closed_port()}"
"""
    proc = doctor(tmp_path, "--quick", "--json", toml=toml)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    checks = by_name(proc)
    assert checks["provider mock"]["status"] == "ok", checks["provider mock"]
    assert llm_server.requests_to("/v1/chat/completions")[0].json()["model"] == "gpt-test"
    assert checks["provider nokey"]["status"] == "fail"
    assert "api_key_env" in checks["provider nokey"]["fix"]
    assert checks["postgresql"]["status"] == "fail" and "[storage] url" in checks["postgresql"]["fix"]
    assert checks["ray"]["status"] == "fail" and "ray start --head" in checks["ray"]["fix"]
    # the text report names each failure and its fix
    text = doctor(tmp_path, "--quick", toml=toml).stdout
    assert "fail  provider nokey" in text and "fix: set [providers.nokey] api_key_env" in text
    assert re.search(r"3 failed, \d+ warnings$", text.rstrip())


def test_unwritable_data_dir_and_a_newer_database_fail(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    conn = __import__("sqlite3").connect(data / "sessions.sqlite")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    proc = doctor(tmp_path, "--quick", "--json")
    checks = by_name(proc)
    assert proc.returncode == 1
    assert checks["databases"]["status"] == "fail" and "schema 99" in checks["databases"]["detail"]
    if os.geteuid() != 0:  # root writes anywhere
        data.chmod(0o500)
        try:
            checks = by_name(doctor(tmp_path, "--quick", "--json"))
        finally:
            data.chmod(0o700)
        assert checks["data dir"]["status"] == "fail" and "chmod u+w" in checks["data dir"]["fix"]


def test_full_run_loads_the_local_model_and_generates_a_token(tmp_path: Path) -> None:
    proc = doctor(tmp_path, "--json")
    checks = by_name(proc)
    assert checks["local model"]["status"] == "ok", checks["local model"]
    assert "generated a token" in checks["local model"]["detail"]
    assert checks["embedding model"]["status"] == "ok" and "384 dimensions" in checks["embedding model"]["detail"]
    assert proc.returncode == 0
