"""JupyterLab's own debugger panel on an aikit notebook, in a real browser: headless Chromium
(Debian's ``chromium`` at /usr/bin/chromium) driven by ``playwright-core`` from npm
(tests/jupyterlab_browser/debugger.mjs, installed with ``npm ci`` from the committed lock file).

A real JupyterLab serves a temporary directory on a free loopback port with a token; its aikit
kernelspec runs this checkout. The driver opens a notebook, enables the debugger, sets a breakpoint
by clicking the editor's gutter, runs the cell and reads the Callstack and Variables panels as they
are rendered: the paused frame is the function, and the variables tree shows values (``n`` shows
``3``), not Lua type names. The screenshot is kept under the test's tmp dir (path printed).

Skipped, with the reason shown, when Chromium, node or JupyterLab is missing, unless
AIKIT_REQUIRE_BROWSER=1, which turns the skip into a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.kernels import REPO
from tests.support.npm import npm_ci

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # JupyterLab and Chromium start slowly under load

DRIVER_DIR = Path(__file__).resolve().parents[1] / "jupyterlab_browser"
CHROMIUM = Path("/usr/bin/chromium")
STARTUP = 120  # seconds for JupyterLab to answer, on a loaded machine
CELL = """\
local function sum(n)
  local total = 0
  for i = 1, n do
    total = total + i
  end
  return total
end
sum(3)
"""
BREAK_LINE = 4


def _unavailable(reason: str) -> None:
    if os.environ.get("AIKIT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"AIKIT_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _notebook(path: Path) -> None:
    path.write_text(json.dumps({
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "aikit", "display_name": "aikit (Lua)", "language": "lua"},
                     "language_info": {"name": "lua"}},
        "cells": [{"cell_type": "code", "id": "sum", "metadata": {}, "execution_count": None, "outputs": [],
                   "source": CELL.splitlines(keepends=True)}],
    }))


def _kernelspec(share: Path, data_dir: Path) -> None:
    """An aikit kernelspec that runs this checkout (JUPYTER_PATH puts it before the installed one)."""
    spec = share / "kernels" / "aikit"
    spec.mkdir(parents=True)
    env = {"PYTHONPATH": str(REPO), "AIKIT_DATA_DIR": str(data_dir)}
    spec.joinpath("kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "aikit_kernel", "-f", "{connection_file}"], "display_name": "aikit (Lua)",
        "language": "lua", "interrupt_mode": "message", "metadata": {"debugger": True}, "env": env}))


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[str]:
    """A JupyterLab on a loopback port; yields the notebook's URL (with the token)."""
    root, share = tmp_path / "root", tmp_path / "share"
    root.mkdir()
    _kernelspec(share, tmp_path / "aikit-data")
    _notebook(root / "debug.ipynb")
    port, token = _free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIKIT_", "JUPYTER"))}
    env.update(JUPYTER_PATH=str(share), JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_DATA_DIR=str(tmp_path / "data"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"))
    log = (tmp_path / "jupyterlab.log").open("w")
    as_root = ["--allow-root"] if os.geteuid() == 0 else []  # containers and CI run tests as root
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", *as_root, "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={root}",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(f"http://127.0.0.1:{port}/api/status?token={token}", proc, tmp_path / "jupyterlab.log")
        yield f"http://127.0.0.1:{port}/lab/tree/debug.ipynb?token={token}"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"JupyterLab exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)  # polling the condition (the server answers), not a fixed wait
    raise AssertionError(f"JupyterLab did not answer within {STARTUP} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def browser_ready() -> str:
    """node (with playwright-core installed), or a skip/failure naming what is missing."""
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install -y chromium)")
    node = shutil.which("node")
    if node is None:
        _unavailable("node is not on PATH: the browser test drives Chromium with playwright-core (node >= 20)")
    if importlib.util.find_spec("jupyterlab") is None:
        _unavailable("jupyterlab is not installed: pip install 'jupyterlab>=4' (it is in the test extras)")
    if shutil.which("npm") is None:
        _unavailable("npm is not on PATH: the browser test installs playwright-core with npm ci")
    npm_ci(DRIVER_DIR, "the JupyterLab debugger browser test")
    assert node is not None
    return node


def test_jupyterlab_debugger_panel_shows_the_stop_and_the_values(browser_ready: str, jupyterlab: str,
                                                                  tmp_path: Path) -> None:
    screenshot = tmp_path / "jupyterlab-debugger.png"
    proc = subprocess.run([browser_ready, "debugger.mjs", jupyterlab, str(BREAK_LINE), str(screenshot),
                           str(tmp_path / "chromium-profile")], cwd=DRIVER_DIR, capture_output=True, text=True,
                          timeout=600)
    print(f"\nJupyterLab debugger screenshot: {screenshot}")
    if os.environ.get("AIKIT_DRIVER_CONSOLE"):
        print(proc.stderr)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines and proc.returncode == 0, (
        f"driver failed ({proc.returncode}): {lines}\n{proc.stderr[-20000:]}\n"
        f"JupyterLab log:\n{(tmp_path / 'jupyterlab.log').read_text()[-3000:]}")
    paused = lines[-1]
    assert paused["step"] == "paused"

    # The breakpoint set by the gutter click, and the paused stack: the function, then the cell.
    assert any(str(BREAK_LINE) in text for text in paused["breakpoints"]), paused["breakpoints"]
    frames = paused["frames"]
    assert frames[0]["name"] == "sum", frames
    assert frames[0]["location"].endswith(f":{BREAK_LINE}"), frames
    assert any(f["name"].startswith("cell") for f in frames[1:]), frames

    # The variables tree shows values, not type names: n = 3, total = 0, i = 1 on the first pass.
    shown = {v["name"]: v["detail"] for v in paused["variables"]}
    assert shown.get("n") == "3", paused["variables"]
    assert shown.get("total") == "0", paused["variables"]
    assert shown.get("i") == "1", paused["variables"]
    assert "integer" not in shown.values(), paused["variables"]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
