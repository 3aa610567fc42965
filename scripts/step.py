#!/usr/bin/env python3
"""Run one long step of ``make`` and show what it is doing instead of minutes of silence.

    python3 scripts/step.py "Building llama.cpp" --expect "about 4 min on 2 cores" -- pip install ...

It prints ``==> LABEL (EXPECT)``, runs the command with its output captured, then ``done in 3m41s``.
Meanwhile, on a terminal, one status line shows the time so far and the command's latest output
line (pip's "Downloading ...", cmake's "[ 45%] Building CXX object ..."); elsewhere (CI logs) it
prints pip's own lines as they come, cmake's progress at every tenth, and a "still working" line
when nothing was said for a while. When the command fails, the end of its output is printed and
the step exits with the command's status. Only the standard library: it runs before .venv exists.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import deque

#: Lines worth a line of their own in a log: what pip is doing, package by package.
PIP_LINE = re.compile(r"^(Collecting|Downloading|Building wheel|Building wheels|Created wheel|Installing collected|"
                      r"Successfully|Preparing metadata|Using cached|Processing|ERROR|error:)")
CMAKE_PROGRESS = re.compile(r"^\s*\[\s*(\d+)%\]")
#: Seconds without output before a log gets a "still working" line.
QUIET_S = 30.0
#: A log line longer than this is cut.
MAX_LINE = 160
#: Output lines kept to show when the command fails.
TAIL_LINES = 60


def elapsed(seconds: float) -> str:
    """``42s``, ``3m05s``."""
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Display:
    """Where the step's progress goes: a rewritten status line on a terminal, plain lines otherwise."""

    def __init__(self, stream: object, tty: bool) -> None:
        self.stream = stream
        self.tty = tty
        self.latest = ""
        self.said_at = self.heard_at = time.monotonic()
        self.tenth = -1

    def write(self, text: str) -> None:
        self.stream.write(text)  # type: ignore[attr-defined]
        self.stream.flush()  # type: ignore[attr-defined]

    def line(self, line: str, since: float) -> None:
        self.latest = line.strip() or self.latest
        self.heard_at = time.monotonic()
        if self.tty:
            self.status(since)
            return
        progress = CMAKE_PROGRESS.match(line)
        if progress is not None:
            tenth = int(progress.group(1)) // 10
            if tenth <= self.tenth:
                return
            self.tenth = tenth
        elif not PIP_LINE.match(line):
            return
        shown = line.strip()
        if len(shown) > MAX_LINE:  # pip's "Successfully installed" names every package
            shown = shown[:MAX_LINE - 1] + "…"
        self.write(f"    [{elapsed(time.monotonic() - since)}] {shown}\n")
        self.said_at = time.monotonic()

    def tick(self, since: float) -> None:
        if self.tty:
            self.status(since)
        elif time.monotonic() - self.said_at >= QUIET_S:
            quiet = elapsed(time.monotonic() - self.heard_at)
            self.write(f"    [{elapsed(time.monotonic() - since)}] still working (last output {quiet} ago: "
                       f"{self.latest[:100]})\n")
            self.said_at = time.monotonic()

    def status(self, since: float) -> None:
        width = shutil.get_terminal_size((100, 24)).columns
        text = f"    [{elapsed(time.monotonic() - since)}] {self.latest}"
        self.write("\r\x1b[K" + text[: max(20, width - 1)])

    def end(self) -> None:
        if self.tty:
            self.write("\r\x1b[K")


def run_step(label: str, expect: str | None, command: list[str], display: Display) -> int:
    """Run ``command`` showing its progress on ``display``; return its exit status."""
    display.write(f"==> {label}" + (f" ({expect})" if expect else "") + "\n")
    started = time.monotonic()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                text=True, errors="replace", bufsize=1, env=env)
    except OSError as exc:
        display.write(f"    cannot run {command[0]}: {exc}\n")
        return 127
    lines: queue.Queue[str | None] = queue.Queue()
    tail: deque[str] = deque(maxlen=TAIL_LINES)

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.put(raw.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        while True:
            try:
                line = lines.get(timeout=1.0)
            except queue.Empty:
                display.tick(started)
                continue
            if line is None:
                break
            tail.append(line)
            display.line(line, started)
        status = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait()
        display.end()
        display.write(f"    interrupted after {elapsed(time.monotonic() - started)}\n")
        return 130
    display.end()
    if status != 0:
        display.write(f"    failed (exit status {status}) after {elapsed(time.monotonic() - started)}; "
                      f"the end of its output:\n")
        display.write("".join(f"      {line}\n" for line in tail))
        return status
    display.write(f"    done in {elapsed(time.monotonic() - started)}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="step.py", usage="step.py LABEL [--expect TEXT] -- COMMAND [ARGS...]",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("label", help="what the step does, e.g. 'Building llama.cpp'")
    parser.add_argument("--expect", help="how long it usually takes, shown with the label")
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        parser.error("give the command after --")
    split = argv.index("--")
    args = parser.parse_args(argv[:split])
    return run_step(args.label, args.expect, argv[split + 1:], Display(sys.stdout, sys.stdout.isatty()))


if __name__ == "__main__":
    raise SystemExit(main())
