"""Text that is not valid Unicode (lone surrogates: escaped in a request's JSON, or bytes that
are not UTF-8 piped into `aikit repl`) is code like any other: it runs or fails as Lua says, with
the invalid characters replaced, and nothing crashes."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import AIKIT, aikit_env
from tests.support.kernels import Kernel, start_kernel
from tests.support.lua import Lua
from tests.support.raw_client import RawClient


def test_the_engine_runs_code_with_lone_surrogates(lua: Lua) -> None:
    assert lua.run("return '\udcff' .. 'ok\ud800'") == "\ufffdok\ufffd"
    assert lua.engine.introspection.is_complete("x = '\ud800")[0] == "incomplete"
    assert lua.engine.introspection.complete("Too\ud800", 3)[0] == ["Tool"]


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Kernel:
    k = start_kernel(tmp_path_factory.mktemp("surrogates"))
    yield k
    k.shutdown()


def _request(client: RawClient, msg_type: str, content_json: bytes) -> dict[str, Any]:
    """A request whose content is ``content_json`` as given (JSON escapes that Python's own
    serializer would refuse to write), signed; its reply."""
    msg = client.session.msg(msg_type, content={})
    parts = [client.session.pack(msg["header"]), b"{}", b"{}", content_json]
    client.send([b"<IDS|MSG>", client.sign(parts), *parts])
    reply = client.recv(30.0)
    assert reply is not None, f"no reply to {msg_type}"
    return reply


def test_a_request_with_lone_surrogates_gets_a_reply_and_the_kernel_goes_on(kernel: Kernel) -> None:
    shell = RawClient(kernel, "shell")
    try:
        reply = _request(shell, "execute_request", b'{"code": "return \\"a\\ud800b\\"", "silent": false}')
        assert reply["msg_type"] == "execute_reply" and reply["content"]["status"] == "ok", reply["content"]
        reply = _request(shell, "is_complete_request", b'{"code": "x = \\"\\udcff"}')
        assert reply["content"]["status"] == "incomplete"
        reply = _request(shell, "complete_request", b'{"code": "Too\\ud800", "cursor_pos": 3}')
        assert "Tool" in reply["content"]["matches"]
        reply = _request(shell, "inspect_request", b'{"code": "Tool\\ud800", "cursor_pos": 2}')
        assert reply["content"]["status"] == "ok"
    finally:
        shell.close()
    assert kernel.value("1 + 1") == "2"


def test_bytes_that_are_not_utf8_piped_into_the_repl(tmp_path: Path) -> None:
    env = aikit_env(tmp_path)
    proc = subprocess.run([AIKIT, "repl"], input=b"return '\xff\xfe' .. 'x'\nreturn 1 + 1\n", capture_output=True,
                          timeout=60, cwd=tmp_path, env=env)
    assert proc.returncode == 0 and b"Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.splitlines()[-1] == b"2"


def test_aikit_run_a_script_and_arguments_that_are_not_utf8(tmp_path: Path) -> None:
    env = aikit_env(tmp_path)
    (tmp_path / "job.lua").write_bytes(b'print("a\xffb", #arg[1], arg[1] == "\\xfe")\n')
    proc = subprocess.run([AIKIT.encode(), b"run", b"job.lua", b"\xfe"], capture_output=True, timeout=60,
                          cwd=tmp_path, env=env)
    assert proc.returncode == 0 and b"Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout == "a\ufffdb\t1\ttrue\n".encode()
