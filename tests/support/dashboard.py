"""A real ``aikit dashboard`` process for tests: started on a free loopback port over a given data
directory, its URL read from the line it prints, stopped (and waited for) on exit.

    with DashboardProcess(tmp_path, "--token", "t0k") as dash:
        urllib.request.urlopen(dash.url + "api/runs?token=t0k")
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AIKIT = Path(sys.executable).with_name("aikit")


class DashboardProcess:
    """``aikit dashboard --port 0 ARGS`` with ``AIKIT_DATA_DIR=data_dir`` (config files isolated)."""

    def __init__(self, data_dir: Path, *args: str, timeout: float = 60) -> None:
        self.data_dir = data_dir
        self.args = args
        self.timeout = timeout
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.printed = ""
        self._stderr: list[str] = []

    def env(self) -> dict[str, str]:
        """The environment of the process: the repository first on PYTHONPATH, private dirs."""
        home = self.data_dir / "home"
        home.mkdir(parents=True, exist_ok=True)
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        return dict(os.environ, AIKIT_DATA_DIR=str(self.data_dir), XDG_CONFIG_HOME=str(home / ".config"),
                    HOME=str(home), PYTHONPATH=path, PYTHONUNBUFFERED="1")

    def __enter__(self) -> DashboardProcess:
        self.proc = subprocess.Popen([str(AIKIT), "dashboard", "--port", "0", *self.args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=self.env(), cwd=self.data_dir)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: lines.put(self.proc.stdout.readline()), daemon=True).start()
        threading.Thread(target=lambda: self._stderr.extend(self.proc.stderr), daemon=True).start()
        try:
            self.printed = lines.get(timeout=self.timeout).strip()
        except queue.Empty:
            self.__exit__(None, None, None)
            raise AssertionError(f"aikit dashboard printed no URL in {self.timeout} s: {''.join(self._stderr)}") from None
        prefix = "aikit dashboard: serving "
        if not self.printed.startswith(prefix):
            self.__exit__(None, None, None)
            raise AssertionError(f"unexpected first line {self.printed!r}; stderr: {''.join(self._stderr)}")
        self.url = self.printed[len(prefix):].split("?", 1)[0]
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)

    @property
    def stderr(self) -> str:
        """What the process wrote to stderr so far."""
        return "".join(self._stderr)
