"""`aikit dashboard` in a real browser: headless Chromium (Debian's ``chromium`` package at
/usr/bin/chromium) driven by ``playwright-core`` from npm (tests/dashboard_browser/dashboard.mjs,
installed with ``npm ci`` from the committed package-lock.json).

A real ``aikit dashboard`` serves a temporary data directory on a free loopback port; the page is
opened with no run yet; the test then starts a run by writing its spans through the span store
(the cell and agent running), sees it appear in the list without a reload (server-sent events),
opens it and sees its running waterfall; then ends the run and sees the list and the waterfall
update. The screenshots (running, finished) are kept under the test's tmp dir (paths printed).

Skipped, with the reason shown, when Chromium or node is missing, unless AIKIT_REQUIRE_BROWSER=1
(set by .ci/run, which installs Chromium), which turns the skip into a failure.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from aikit_components.telemetry.store import SpanStore
from aikit_components.telemetry.waterfall import ERROR_COLOUR, KIND_COLOURS
from tests.support.dashboard import DashboardProcess
from tests.support.npm import npm_ci
from tests.support.traces import MS, agent_cell_trace, finished

DRIVER_DIR = Path(__file__).resolve().parent / "dashboard_browser"
CHROMIUM = Path("/usr/bin/chromium")


def _unavailable(reason: str) -> None:
    if os.environ.get("AIKIT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"AIKIT_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


def _npm_ci() -> None:
    if shutil.which("npm") is None:
        _unavailable("npm is not on PATH: the browser test installs playwright-core with npm ci")
    npm_ci(DRIVER_DIR, "the dashboard's browser test")


class Driver:
    """The node driver process, spoken to one JSON line at a time."""

    def __init__(self, node: str, url: str, screenshot: Path, profile: Path) -> None:
        self.proc = subprocess.Popen([node, "dashboard.mjs", url, str(screenshot), str(profile)], cwd=DRIVER_DIR,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")

    def expect(self, step: str, timeout: float = 120) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the browser driver said nothing for {timeout} s while waiting for {step!r}; "
                                 f"stderr: {''.join(self.stderr)}") from None
        assert line, f"the browser driver exited while waiting for {step!r}: {''.join(self.stderr)}"
        message = json.loads(line)
        assert message["step"] == step, f"expected {step!r}, got {message}; stderr: {''.join(self.stderr)}"
        return message

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=30)


def test_a_run_appears_live_and_its_waterfall_renders(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install -y chromium)")
    node = shutil.which("node")
    if node is None:
        _unavailable("node is not on PATH: the browser test drives Chromium with playwright-core (node >= 20)")
    _npm_ci()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    screenshot = tmp_path / "dashboard.png"
    with DashboardProcess(data_dir) as dash:
        driver = Driver(node, dash.url, screenshot, tmp_path / "chromium-profile")
        store = SpanStore(data_dir / "traces.sqlite")
        try:
            connected = driver.expect("connected")
            assert connected["noRuns"], "the data dir is new: the page says there is no run yet"

            spans = agent_cell_trace(running=True, t0=time.time_ns() - 1_000 * MS)  # started a second ago
            t0 = spans[0].start_ns
            store.write(spans[:2])  # the cell and the agent start...
            store.write(spans[2:])  # ...and the agent calls a model and tools, the last model call still going
            driver.send({"trace_id": spans[0].trace_id})
            running = driver.expect("running")
            assert running["sameDocument"], "the run must appear through the event stream, not a reload"
            assert "running" in running["rowText"] and "execute_request" in running["rowText"]
            assert running["bars"] == 8 and running["runningBars"] == 3

            ended = finished(spans, 1600, t0=t0)  # the last model call reports its usage as it ends
            ended[-1] = replace(ended[-1], attributes={**ended[-1].attributes, "gen_ai.usage.input_tokens": 1020,
                                                       "gen_ai.usage.output_tokens": 230, "aikit.cost.usd": 0.000291})
            store.write(ended)
            driver.send({"step": "finish"})
            done = driver.expect("done")
        finally:
            store.close()
            driver.close()
    print(f"\ndashboard screenshots: {screenshot} (finished), {screenshot.with_name('dashboard-running.png')} (running)")
    assert done["problems"] == [], "no console error, no CSP violation, no page error"
    assert done["sameDocument"] and "selected" in (done["selected"] or "")
    assert "error" in done["rowText"] and "1832 / 294" in done["rowText"] and "$0.000451" in done["rowText"]
    bars = done["bars"]
    assert [(b["name"].lstrip("✗ "), b["depth"]) for b in bars] == [
        ("execute_request", 0), ("invoke_agent writer", 1), ("chat gpt-4o-mini", 2), ("execute_tool read_file", 2),
        ("execute_tool write_file", 2), ("retrieval notes", 2), ("state.write notes/last", 2), ("chat gpt-4o-mini", 2)]
    by_name = {b["name"].lstrip("✗ "): b for b in bars}
    assert by_name["execute_tool read_file"]["colour"] == _rgb(KIND_COLOURS["tool"])
    assert by_name["invoke_agent writer"]["colour"] == _rgb(KIND_COLOURS["agent"])
    failed = by_name["execute_tool write_file"]
    assert failed["status"] == "error" and failed["colour"] == _rgb(ERROR_COLOUR) == "rgb(214, 39, 40)"
    assert "PermissionDenied" in failed["tooltip"]
    assert all(b["width"] > 0 and b["height"] > 0 for b in bars), "every bar is drawn"
    widths = [by_name[n]["width"] for n in ("execute_request", "invoke_agent writer", "execute_tool read_file")]
    assert widths == sorted(widths, reverse=True) and widths[1] < widths[0]
    assert "8 spans" in done["summary"] and "1 error" in done["summary"]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 10_000


def _rgb(hex_colour: str) -> str:
    """A #rrggbb colour as the browser's computed style writes it."""
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"
