"""`aikit console`: the real program in a pseudo-terminal (pexpect), attached to a kernel that
jupyter_client started in the test, while a second client runs code on the same kernel."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.support.kernels import Kernel, start_kernel

AIKIT = str(Path(sys.executable).with_name("aikit"))
# A prompt being drawn (prompt_toolkit turns bracketed paste on first), not the echo of a chunk that ran
PROMPT = r"\?2004h[^\n]*?lua \[(\d+)\]>"


def env_for(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIKIT_")}
    return dict(env, AIKIT_DATA_DIR=str(tmp_path / "console-data"), PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm",
                TMPDIR=str(tmp_path))


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[Kernel]:
    started = start_kernel(tmp_path / "data", cwd=tmp_path)
    yield started
    started.shutdown(now=True)


@pytest.fixture
def console(tmp_path: Path, kernel: Kernel) -> Iterator[pexpect.spawn]:
    child = pexpect.spawn(AIKIT, ["console", "--existing", kernel.km.connection_file], env=env_for(tmp_path),
                          cwd=str(tmp_path), encoding="utf-8", timeout=30, dimensions=(40, 120))
    child.expect(PROMPT)
    yield child
    if child.isalive():
        child.terminate(force=True)


def prompt_number(child: pexpect.spawn) -> int:
    child.expect(PROMPT)
    return int(child.match.group(1))


def test_attached_console_shares_the_kernel_with_another_client(console: pexpect.spawn, kernel: Kernel) -> None:
    kernel.ok("shared = 41")  # the "notebook" defines a variable
    console.send("shared + 1\r")
    console.expect_exact("42\r\n")
    prompt_number(console)
    # the other client runs code while the console waits at its prompt: its input and output show up
    kernel.ok("print('from the ' .. 'notebook')")
    console.expect(r"\[other client\] In \[\d+\]: print")
    console.expect_exact("from the notebook")
    # and the other client sees what the console defines
    console.send("from_console = 'yes'\r")
    console.send("print(from_console .. '!')\r")
    console.expect_exact("yes!")
    assert kernel.value("from_console") == '"yes"'


def test_completion_multiline_help_and_stdin(console: pexpect.spawn) -> None:
    console.send("string.up\t")  # complete_request
    console.expect_exact("per")  # the completion is in before the rest is typed
    console.send("('abc')\r")
    console.expect_exact('"ABC"\r\n')
    prompt_number(console)
    console.send("function twice(n)\r")  # is_complete says incomplete: a new line
    console.send("return 2 * n\r")
    console.send("end\r")
    prompt_number(console)
    console.send("twice(21)\r")
    console.expect_exact("42\r\n")
    prompt_number(console)
    console.send("?string.rep\r")  # inspect_request
    console.expect_exact("ab-ab-ab")
    prompt_number(console)
    console.send("print('got ' .. io.read())\r")  # input_request answered at the prompt
    console.send("typed line\r")
    console.expect_exact("got typed line")
    prompt_number(console)


def test_rich_outputs_in_the_terminal(console: pexpect.spawn, tmp_path: Path) -> None:
    console.send("display.table({{name = 'ada', n = 1}, {name = 'bob', n = 2}})\r")
    console.expect_exact("name")  # a rich table: the header, then rows in boxes
    console.expect_exact("│ 2 │ bob")
    prompt_number(console)
    console.send("display.markdown('# Big title')\r")
    console.expect("Big title")
    prompt_number(console)
    console.send("display.image('\\137PNG fake bytes')\r")
    console.expect(r"image image/png saved to (\S+\.png)")
    saved = Path(console.match.group(1))
    assert saved.read_bytes() == b"\x89PNG fake bytes"
    prompt_number(console)


def test_ctrl_c_interrupts_the_kernel_and_ctrl_d_leaves_it_running(console: pexpect.spawn, kernel: Kernel) -> None:
    console.send("print('spinning') while true do end\r")
    console.expect_exact("spinning\r\n")
    console.sendintr()  # interrupt_request
    console.expect("KeyboardInterrupt")
    prompt_number(console)
    console.send("print('still ' .. 'alive')\r")
    console.expect_exact("still alive")
    prompt_number(console)
    console.sendcontrol("d")
    console.expect(pexpect.EOF)
    console.close()
    assert console.exitstatus == 0
    kernel.assert_alive()  # leaving an attached console does not stop the kernel


def test_debugger_commands(console: pexpect.spawn) -> None:
    cell = int(console.match.group(1))  # the function below runs as this cell
    console.send("function add(a, b)\r")
    console.send("local s = a + b\r")
    console.send("return s\r")
    console.send("end\r")
    console.send(f".break [{cell}]:2 if a > 1\r")
    console.expect_exact(f"breakpoint at [{cell}]:2 if a > 1")
    prompt_number(console)
    console.send("add(1, 1)\r")  # the condition is false: no stop
    console.expect_exact("2\r\n")
    prompt_number(console)
    console.send("add(2, 3)\r")
    console.expect(r"stopped \(breakpoint\) in add at \[\d+\]:2")
    console.expect(r"->\s+2\s+local s = a \+ b")  # the source around the line
    console.expect_exact("(debug)")
    console.send(".locals\r")
    console.expect_exact("a = 2")
    console.expect_exact("b = 3")
    console.send(".bt\r")
    console.expect(r"#0 add at \[\d+\]:2")
    console.send(".next\r")
    console.expect(r"stopped \(step\) in add at \[\d+\]:3")
    console.send(".print s * 10\r")
    console.expect_exact("50")
    console.send(".continue\r")
    console.expect_exact("5\r\n")
    prompt_number(console)


def test_console_starts_its_own_kernel_and_runs_piped_input(tmp_path: Path) -> None:
    proc = subprocess.run([AIKIT, "console"], input="x = 20\nlocal function inc(n)\n  return n + 1\nend\n"
                          "inc(x) * 2\nerror('boom')\n", capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env=dict(env_for(tmp_path), PYTHONPATH=str(Path(__file__).parents[1])))
    assert proc.stdout == "42\n", proc.stderr
    assert "boom" in proc.stderr and "\x1b[" not in proc.stderr
    assert proc.returncode == 1


def test_repl_existing_and_a_missing_connection_file(tmp_path: Path, kernel: Kernel) -> None:
    proc = subprocess.run([AIKIT, "repl", "--existing", kernel.km.connection_file], input="1 + 1\n",
                          capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env_for(tmp_path))
    assert (proc.returncode, proc.stdout) == (0, "2\n"), proc.stderr
    proc = subprocess.run([AIKIT, "console", "--existing", str(tmp_path / "nope.json")], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path, env=env_for(tmp_path))
    assert proc.returncode == 1 and re.search(r"no connection file for .*nope\.json", proc.stderr)
