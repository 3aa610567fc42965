"""`aikit debug` against a DAP client someone else maintains: VS Code's DebugClient
(@vscode/debugadapter-testsupport), run by node's test runner in tests/dap_client (see aikit.test.js
there), plus the checks of the VS Code extension in editors/vscode (extension.test.js).

The npm packages are installed with ``npm ci`` from the committed package-lock.json when
tests/dap_client/node_modules is missing or older than the lock file. Skipped only when ``node``
is not on PATH; a missing ``npm`` or any failing JS test fails this test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.npm import npm_ci

DAP_CLIENT = Path(__file__).resolve().parent / "dap_client"
AIKIT = Path(sys.executable).with_name("aikit")
TEST_FILES = ["aikit.test.js", "extension.test.js"]


def _npm_ci() -> None:
    npm_ci(DAP_CLIENT, "the DAP client tests")


@pytest.mark.timeout(600)  # the suite starts ~30 aikit debug processes (12 of them repeating the start race)
def test_dap_conformance_with_vscode_debugclient() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH: the DAP client tests run on node (v18.19 or newer)")
    assert AIKIT.exists(), f"no aikit script next to {sys.executable}"
    _npm_ci()
    env = dict(os.environ, AIKIT_BIN=str(AIKIT))
    proc = subprocess.run([node, "--test", "--test-reporter=tap", *TEST_FILES], cwd=DAP_CLIENT, env=env,
                          capture_output=True, text=True, timeout=480)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"node --test failed (exit {proc.returncode}):\n{output}"
    summary = {line.split()[1]: int(line.split()[2]) for line in proc.stdout.splitlines()
               if line.startswith("# ") and len(line.split()) == 3 and line.split()[2].isdigit()}
    assert summary.get("fail") == 0 and summary.get("pass", 0) >= 20, f"unexpected summary {summary}:\n{output}"
