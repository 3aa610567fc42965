"""A connection file that is not one (not JSON, not an object, ports missing or of the wrong
type) gets a message that says what is wrong with it from the kernel, `aikit stop` and `aikit
console`, never a Python traceback; a kernel given a file without ports picks its own."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from aikit_kernel.transport import ConnectionFileError, ConnectionInfo, read_connection_file
from tests.support.cli import AIKIT, aikit_env

PORTS = {f"{channel}_port": 50000 + i for i, channel in enumerate(("shell", "control", "stdin", "iopub", "hb"))}
GOOD = {**PORTS, "ip": "127.0.0.1", "key": "k", "transport": "tcp", "signature_scheme": "hmac-sha256"}

#: (file text, what the message says)
BAD = [
    ('{"shell_port":', "it is not JSON"),
    ("[1, 2]", "expected a JSON object with the kernel's ports, ip and key, got an array"),
    ('"kernel"', "got a string"),
    (json.dumps({**GOOD, "shell_port": "abc"}), 'shell_port must be a port number (1-65535), got "abc"'),
    (json.dumps({**GOOD, "hb_port": 70000}), "hb_port must be a port number (1-65535), got 70000"),
    (json.dumps({**GOOD, "iopub_port": True}), "iopub_port must be a port number (1-65535), got true"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "stdin_port"}), "stdin_port is missing"),
    (json.dumps({**GOOD, "key": 5}), "key must be a string, got 5"),
]


@pytest.mark.parametrize(("text", "says"), BAD)
def test_a_file_that_is_not_a_connection_file_says_why(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "kernel.json"
    path.write_text(text)
    with pytest.raises(ConnectionFileError) as caught:
        read_connection_file(path)
    assert says in str(caught.value) and str(path) in str(caught.value)


def test_a_good_file_reads_and_a_kernel_may_pick_its_own_ports(tmp_path: Path) -> None:
    path = tmp_path / "kernel.json"
    path.write_text(json.dumps(GOOD))
    assert read_connection_file(path) == GOOD
    path.write_text(json.dumps({"ip": "127.0.0.1", "key": "k", "shell_port": 0}))
    with pytest.raises(ConnectionFileError, match="shell_port must be a port number"):
        read_connection_file(path)
    info = ConnectionInfo.load(path)  # the kernel's reading: 0 or missing means "pick one"
    assert (info.shell_port, info.hb_port, info.key) == (0, 0, b"k")


#: (command, file text, what the message says); a kernel is not given a file without ports: it
#: would pick its own and start (tested above).
COMMANDS = [(command, *case) for command in (["stop", "--kernel"], ["console", "--existing"]) for case in (BAD[1], BAD[6])]
COMMANDS += [(["serve", "--connection-file"], *case) for case in (BAD[0], BAD[1])]
COMMANDS += [(["serve", "--connection-file"], BAD[3][0], 'shell_port must be a port number (0-65535), got "abc"')]


@pytest.mark.parametrize(("command", "text", "says"), COMMANDS)
def test_the_commands_name_the_problem_not_a_traceback(tmp_path: Path, command: list[str], text: str,
                                                       says: str) -> None:
    path = tmp_path / "kernel.json"
    path.write_text(text)
    proc = subprocess.run([AIKIT, *command, str(path)], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env=aikit_env(tmp_path), stdin=subprocess.DEVNULL)
    assert proc.returncode != 0 and says in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "Error:" not in proc.stderr
