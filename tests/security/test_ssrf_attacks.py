"""Server-side request forgery: every spelling of a loopback, private, link-local, multicast or
unspecified address (and names resolving to one, and redirects to one) is refused by the web
tools unless the host is allowed; a real HTTP server on 127.0.0.1 proves an allowed host still
works. Nothing here needs the internet: a refusal happens before any connection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from aikit_components.tools import ToolContext
from aikit_components.tools.web import TOOLS
from tests.support.http import QuietHandler, serving

from .conftest import contained, make_caller, make_policy

call = make_caller(TOOLS)
HOW = ("security.allowed_hosts",)


class Redirector(QuietHandler):
    """/to?u=URL answers 302 to URL; /ok answers 200 'fine'."""

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/to":
            self.send_response(302)
            self.send_header("Location", parse_qs(parts.query)["u"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_bytes(200, b"fine", "text/plain")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serving(Redirector) as url:
        yield url


@pytest.fixture
def strict(workdir: Path) -> ToolContext:
    return ToolContext(make_policy(workdir))


@pytest.fixture
def only_server(workdir: Path) -> ToolContext:
    """127.0.0.1 explicitly allowed (and so the only host allowed)."""
    return ToolContext(make_policy(workdir, allowed_hosts=["127.0.0.1"]), config={"tools.http_retries": 0})


def hosts_file_names() -> list[str]:
    """Names /etc/hosts maps to a loopback address (whatever this machine has)."""
    names: list[str] = []
    try:
        with open("/etc/hosts", encoding="utf-8") as fh:
            for line in fh:
                fields = line.split("#", 1)[0].split()
                if len(fields) > 1 and (fields[0].startswith("127.") or fields[0] == "::1"):
                    names += [n for n in fields[1:] if n.isascii()]
    except OSError:
        pass
    return sorted(set(names))[:4] or ["localhost"]


SPELLINGS = [
    "127.0.0.1", "127.1", "0x7f000001", "2130706433", "017700000001", "0x7f.1", "127.0.0.1.",
    "[::1]", "[0:0:0:0:0:0:0:1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::127.0.0.1]", "[64:ff9b::7f00:1]",
    "[2002:7f00:1::]", "0.0.0.0", "0", "[::]", "169.254.169.254", "[::ffff:169.254.169.254]", "[fe80::1]",
    "[fe80::1%25eth0]", "10.0.0.1", "192.168.1.1", "172.16.0.1", "100.64.0.1", "[fc00::1]", "224.0.0.1",
    "localhost", "LOCALHOST", "localhost.", "api.localhost",
]


@pytest.mark.parametrize("host", SPELLINGS + hosts_file_names())
def test_loopback_and_private_spellings_are_refused(strict: ToolContext, only_server: ToolContext, server: str,
                                                    host: str) -> None:
    error = contained("permission_denied", call, strict, "http_request", {"url": f"http://{host}:8080/x"},
                      says=["may not reach it"], how=HOW)
    assert error.details["rule"] == "private_hosts"
    assert call(only_server, "http_request", {"url": f"{server}/ok"})["text"] == "fine"


def test_octal_dotted_spelling_is_refused_as_malformed(strict: ToolContext) -> None:
    """httpx refuses 0177.0.0.1 (octal, loopback to inet_aton) before our check: still contained."""
    contained("invalid_argument", call, strict, "http_request", {"url": "http://0177.0.0.1:8080/x"},
              says=["malformed"])


@pytest.mark.parametrize("target", ["http://127.1:{port}/ok", "http://[::1]:{port}/ok", "http://0x7f000001:{port}/ok",
                                    "http://localhost.:{port}/ok", "http://169.254.169.254/latest/meta-data/",
                                    "http://[::ffff:127.0.0.1]:{port}/ok", "http://0.0.0.0:{port}/ok"])
def test_redirects_to_internal_addresses_are_refused(only_server: ToolContext, server: str, target: str) -> None:
    port = server.rsplit(":", 1)[1]
    url = f"{server}/to?u={target.format(port=port)}"
    for name in ("http_request", "fetch_page"):
        error = contained("permission_denied", call, only_server, name, {"url": url}, how=HOW)
        assert error.details["rule"] in ("allowed_hosts", "private_hosts")
    assert call(only_server, "http_request", {"url": f"{server}/to?u={server}/ok"})["text"] == "fine"


def test_explicitly_allowed_private_host_works(workdir: Path, server: str) -> None:
    lenient = ToolContext(make_policy(workdir, allow_private_hosts=True))
    assert call(lenient, "http_request", {"url": f"{server}/ok"})["text"] == "fine"
    assert call(lenient, "http_request", {"url": server.replace("127.0.0.1", "127.1") + "/ok"})["status"] == 200
