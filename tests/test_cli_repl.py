"""`aikit repl`: piped input (chunks decided by the Lua parser) and a real pseudo-terminal
(prompt_toolkit: prompts, multi-line input, Tab completion, ?help, Ctrl+C, Ctrl+D, history)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from aikit_kernel.cli.repl import classify, read_chunks

AIKIT = str(Path(sys.executable).with_name("aikit"))


def env_for(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, AIKIT_DATA_DIR=str(tmp_path / "data"), PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm")


def piped(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AIKIT, "repl"], input=text, capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env=env_for(tmp_path))


# ------------------------------------------------------------------------------------ piped input
def test_piped_chunks_values_locals_and_errors(tmp_path: Path) -> None:
    proc = piped(tmp_path, "local x = 20\nlocal function double(n)\n  return n * 2\nend\n"
                           "double(x + 1)\nerror('boom')\nprint('after', x)\n{1, 2, a = 3}\n")
    assert proc.stdout == "42\nafter\t20\n{1, 2, a = 3}\n"
    assert "boom" in proc.stderr and "stack traceback" in proc.stderr
    assert "\x1b[" not in proc.stderr  # no colour codes off a terminal
    assert proc.returncode == 1  # one chunk failed


def test_piped_clean_run_exits_0_and_exit_word_stops(tmp_path: Path) -> None:
    proc = piped(tmp_path, "print('one')\nexit\nprint('never')\n")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "one\n", "")


def test_piped_help_request_and_unfinished_chunk(tmp_path: Path) -> None:
    proc = piped(tmp_path, "?string.rep\nTool.call?\nfor i = 1, 2 do\n")
    assert "string.rep" in proc.stdout and "Tool.call" in proc.stdout
    assert "LuaSyntaxError" in proc.stderr  # the unfinished `for` at end of input is reported
    assert proc.returncode == 1


def test_double_question_mark_shows_a_function_source(tmp_path: Path) -> None:
    proc = piped(tmp_path, "function twice(x)\n  return 2 * x -- doubled\nend\ntwice??\n")
    assert proc.returncode == 0, proc.stderr
    assert "twice: function" in proc.stdout and "return 2 * x -- doubled" in proc.stdout


def test_classify_and_read_chunks() -> None:
    assert (classify(" ?print ").kind, classify(" ?print ").text) == ("help", "print")
    assert (classify("a.b?").kind, classify("a:b??").text, classify("a:b??").detail) == ("help", "a:b", 1)
    assert classify("x = '?'").kind == "code" and classify("quit").kind == "exit"
    def complete(text: str) -> bool:
        return text.count("do") == text.count("end")

    assert list(read_chunks(["a()\n", "do\n", "b()\n", "end\n", "do\n"], complete)) == ["a()", "do\nb()\nend", "do"]


# --------------------------------------------------------------------------------- pseudo-terminal
@pytest.fixture
def terminal(tmp_path: Path):
    child = pexpect.spawn(AIKIT, ["repl"], env=env_for(tmp_path), cwd=str(tmp_path), encoding="utf-8",
                          timeout=30, dimensions=(40, 120))
    child.expect(r"lua \[1\]>")
    yield child
    if child.isalive():
        child.terminate(force=True)


def test_terminal_session(terminal: pexpect.spawn) -> None:
    terminal.send("1 + 1\r")
    terminal.expect_exact("2\r\n")
    terminal.expect(r"lua \[2\]>")
    # Enter on an unfinished chunk starts a new line; the chunk runs once the Lua parser says it is complete
    terminal.send("for i = 1, 2 do\r")
    terminal.send("print('n' .. i)\r")
    terminal.send("end\r")
    terminal.expect_exact("n1\r\nn2\r\n")
    terminal.expect(r"lua \[3\]>")
    terminal.send("string.rep?\r")
    terminal.expect_exact("ab-ab-ab")
    terminal.expect(r"lua \[3\]>")  # help does not count as an execution


def test_terminal_tab_completion(terminal: pexpect.spawn) -> None:
    terminal.send("string.up\t")
    terminal.send("('abc')\r")
    terminal.expect_exact('"ABC"\r\n')


def test_terminal_ctrl_c_interrupts_then_ctrl_d_leaves(terminal: pexpect.spawn) -> None:
    terminal.send("print('spinning') while true do end\r")
    terminal.expect_exact("spinning\r\n")  # the chunk is running
    terminal.sendintr()
    terminal.expect("KeyboardInterrupt")
    terminal.expect(r"lua \[2\]>")
    terminal.send("print('still ' .. 'alive')\r")  # a second interrupt works too: the handler was restored
    terminal.expect_exact("still alive")
    terminal.expect(r"lua \[3\]>")
    terminal.send("print('spinning') while true do end\r")
    terminal.expect_exact("spinning\r\n")
    terminal.sendintr()
    terminal.expect("KeyboardInterrupt")
    terminal.expect(r"lua \[4\]>")
    terminal.sendcontrol("d")
    terminal.expect(pexpect.EOF)
    terminal.close()
    assert terminal.exitstatus == 0


def test_terminal_history_survives_restart(tmp_path: Path, terminal: pexpect.spawn) -> None:
    terminal.send("answer = 6 * 7\r")
    terminal.expect(r"lua \[2\]>")
    terminal.sendcontrol("d")
    terminal.expect(pexpect.EOF)
    again = pexpect.spawn(AIKIT, ["repl"], env=env_for(tmp_path), cwd=str(tmp_path), encoding="utf-8", timeout=30,
                          dimensions=(40, 120))
    again.expect(r"lua \[1\]>")
    again.send("\x1b[A")  # Up: the previous session's input comes back
    again.send("\r")
    again.expect(r"lua \[2\]>")
    again.send("answer\r")
    again.expect_exact("42\r\n")
    again.expect(r"lua \[3\]>")  # keys typed before the prompt is up would reach the terminal, not the REPL
    again.sendcontrol("d")
    again.expect(pexpect.EOF)
