"""Web tools against a real HTTP server on 127.0.0.1 (pages, JSON, redirects, retries, rate limits,
slow and huge responses), and the address policy that keeps them away from private networks."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from aikit_components.tools import ToolContext
from tests.support.http import QuietHandler, serving
from tests.support.tools import ToolCaller, ToolEnv, expect_error

PAGE = """<!doctype html>
<html><head><title>  The   Test Page </title>
<style>body { color: red }</style><script>var secret = "do not show";</script></head>
<body>
<nav><a href="/home">Home</a> <a href="/about">About</a></nav>
<article>
  <h1>Main heading</h1>
  <p>First paragraph with <a href="/json">a <b>JSON</b> link</a> inside.</p>
  <ul class="items big"><li data-id="1">Apple</li><li data-id="2">Banana</li></ul>
  <p>Second&nbsp;paragraph.<br>New line.</p>
  <a href="https://example.org/external#frag">External</a>
</article>
<noscript>Enable JavaScript</noscript>
</body></html>"""

HUGE_SIZE = 5 * 1024 * 1024


class Handler(QuietHandler):
    protocol_version = "HTTP/1.0"  # one request per connection, as the redirect and retry tests expect
    counters: dict[str, int] = defaultdict(int)
    lock = threading.Lock()

    def _send(self, status: int, body: bytes | str, content_type: str = "text/plain; charset=utf-8",
              headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, body.encode() if isinstance(body, str) else body, content_type, headers)

    def _count(self, key: str) -> int:
        with self.lock:
            self.counters[key] += 1
            return self.counters[key]

    def do_GET(self) -> None:  # noqa: C901 - a route table
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        if path == "/page":
            self._send(200, PAGE, "text/html; charset=utf-8")
        elif path == "/json":
            self._send(200, json.dumps({"hello": "world", "n": [1, 2]}), "application/json")
        elif path == "/text":
            self._send(200, "plain text body")
        elif path == "/binary":
            self._send(200, bytes(range(256)), "application/octet-stream")
        elif path == "/echo":
            self._echo()
        elif path == "/redirect":
            self._send(302, "", headers={"Location": "/json"})
        elif path.startswith("/chain/"):
            n = int(path.rsplit("/", 1)[1])
            self._send(302, "", headers={"Location": f"/chain/{n - 1}" if n > 0 else "/json"})
        elif path == "/to-metadata":
            self._send(302, "", headers={"Location": "http://169.254.169.254/latest/meta-data/"})
        elif path.startswith("/flaky/"):
            count = self._count(path)
            if count == 1:
                self._send(503, "try again")
            else:
                self._send(200, json.dumps({"attempt": count}), "application/json")
        elif path.startswith("/always503/"):
            self._count(path)
            self._send(503, "down")
        elif path.startswith("/ratelimit/"):
            count = self._count(path)
            if count == 1:
                self._send(429, "slow down", headers={"Retry-After": "1"})
            else:
                self._send(200, json.dumps({"attempt": count}), "application/json")
        elif path == "/slow":
            time.sleep(float(query.get("s", ["3"])[0]))
            self._send(200, "finally")
        elif path == "/huge":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            if "nolength" not in query:
                self.send_header("Content-Length", str(HUGE_SIZE))
            self.end_headers()
            try:
                chunk = b"x" * 65536
                for _ in range(HUGE_SIZE // len(chunk)):
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif path == "/missing":
            self._send(404, "<h1>not here</h1>", "text/html")
        else:
            self._send(404, "no route")

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/post-redirect":
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            self._send(303, "", headers={"Location": "/echo"})
        else:
            self._echo()

    do_PUT = do_POST

    def do_HEAD(self) -> None:
        self.do_GET()

    def _echo(self) -> None:
        body = self.read_body().decode()
        self._send(200, json.dumps({"method": self.command, "path": self.path, "body": body,
                                    "headers": {k.lower(): v for k, v in self.headers.items()}}), "application/json")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serving(Handler) as url:
        yield url


@pytest.fixture
def ctx(env: ToolEnv) -> ToolContext:
    return ToolContext(env.policy(allowed_hosts=["127.0.0.1"]),
                       config={"tools.http_backoff_s": 0.05})


@pytest.fixture
def strict(env: ToolEnv) -> ToolContext:
    """The default network policy: no allowed hosts, private addresses denied."""
    return ToolContext(env.policy())


# ------------------------------------------------------------------------------------ http_request
def test_get_json(call: ToolCaller, ctx: ToolContext, server: str) -> None:
    result = call(ctx, "http_request", {"url": f"{server}/json"})
    assert result["status"] == 200
    assert result["json"] == {"hello": "world", "n": [1, 2]}
    assert result["headers"]["content-type"] == "application/json"
    assert result["url"] == f"{server}/json" and result["elapsed_ms"] >= 0


def test_text_binary_and_head(call: ToolCaller, ctx: ToolContext, server: str) -> None:
    assert call(ctx, "http_request", {"url": f"{server}/text"})["text"] == "plain text body"
    binary = call(ctx, "http_request", {"url": f"{server}/binary"})
    assert "text" not in binary and len(binary["base64"]) == 344
    head = call(ctx, "http_request", {"url": f"{server}/json", "method": "HEAD"})
    assert head["status"] == 200 and head["text"] == ""


def test_post_json_params_and_headers(call: ToolCaller, ctx: ToolContext, server: str) -> None:
    result = call(ctx, "http_request", {"url": f"{server}/echo", "method": "post", "json": {"a": 1},
                                        "params": {"q": "lua", "n": 2.0, "tag": ["x", "y"]},
                                        "headers": {"X-Token": "abc"}})
    echo = result["json"]
    assert echo["method"] == "POST"
    assert json.loads(echo["body"]) == {"a": 1}
    assert echo["headers"]["content-type"] == "application/json" and echo["headers"]["x-token"] == "abc"
    assert parse_qs(urlsplit(echo["path"]).query) == {"q": ["lua"], "n": ["2"], "tag": ["x", "y"]}
    text = call(ctx, "http_request", {"url": f"{server}/echo", "method": "PUT", "body": "raw ü"})
    assert text["json"]["body"] == "raw ü"


def test_redirects_are_followed(call: ToolCaller, ctx: ToolContext, server: str) -> None:
    result = call(ctx, "http_request", {"url": f"{server}/redirect"})
    assert result["status"] == 200 and result["json"]["hello"] == "world"
    assert result["url"] == f"{server}/json" and result["redirects"] == [f"{server}/json"]
    chained = call(ctx, "http_request", {"url": f"{server}/chain/4"})
    assert chained["status"] == 200 and len(chained["redirects"]) == 5
    error = expect_error("io_error", call, ctx, "http_request", {"url": f"{server}/chain/5"})
    assert "too many redirects" in error.message
    after_post = call(ctx, "http_request", {"url": f"{server}/post-redirect", "method": "POST", "body": "x"})
    assert after_post["json"]["method"] == "GET"  # 303 See Other


def test_retry_after_503(call: ToolCaller, ctx: ToolContext, server: str) -> None:
    result = call(ctx, "http_request", {"url": f"{server}/flaky/a"})
    assert result["status"] == 200 and result["json"] == {"attempt": 2}
    # without retries the 503 is returned, not raised
    assert call(ctx, "http_request", {"url": f"{server}/flaky/b", "retries": 0})["status"] == 503
    # retries exhausted: the last response comes back
    final = call(ctx, "http_request", {"url": f"{server}/always503/c", "retries": 2})
    assert final["status"] == 503 and Handler.counters["/always503/c"] == 3


def test_429_honours_retry_after(call: ToolCaller, ctx: ToolContext, server: str) -> None:
    started = time.monotonic()
    result = call(ctx, "http_request", {"url": f"{server}/ratelimit/a"})
    assert result["status"] == 200 and result["json"] == {"attempt": 2}
    assert time.monotonic() - started >= 0.9


def test_timeout(call: ToolCaller, ctx: ToolContext, server: str) -> None:
    started = time.monotonic()
    error = expect_error("timeout", call, ctx, "http_request",
                         {"url": f"{server}/slow?s=30", "timeout_s": 0.4, "retries": 0})
    assert time.monotonic() - started < 20  # gave up at its timeout, not when the server answered
    assert "timeout_s" in error.message
    error = expect_error("timeout", call, ctx, "http_request", {"url": f"{server}/slow?s=3", "timeout_s": 0.3, "retries": 1})
    assert error.details["attempts"] == 2


def test_response_size_cap(call: ToolCaller, ctx: ToolContext, server: str) -> None:
    error = expect_error("resource_exhausted", call, ctx, "http_request", {"url": f"{server}/huge", "max_bytes": 1000})
    assert "max_bytes" in error.message
    started = time.monotonic()
    error = expect_error("resource_exhausted", call, ctx, "http_request",
                         {"url": f"{server}/huge?nolength=1", "max_bytes": 100_000})
    assert error.details["limit"] == 100_000 and time.monotonic() - started < 20


def test_connection_refused(call: ToolCaller, ctx: ToolContext) -> None:
    error = expect_error("io_error", call, ctx, "http_request", {"url": "http://127.0.0.1:9/", "retries": 1})
    assert "could not connect" in error.message and error.details["attempts"] == 2


def test_bad_input(call: ToolCaller, ctx: ToolContext, server: str) -> None:
    expect_error("invalid_argument", call, ctx, "http_request", {})
    expect_error("invalid_argument", call, ctx, "http_request", {"url": "example.org/x"})
    expect_error("invalid_argument", call, ctx, "http_request", {"url": f"{server}/json", "method": "FETCH"})
    expect_error("invalid_argument", call, ctx, "http_request", {"url": f"{server}/json", "json": {}, "body": "x"})
    expect_error("invalid_argument", call, ctx, "http_request", {"url": f"{server}/json", "timeout_s": "fast"})
    expect_error("invalid_argument", call, ctx, "http_request", {"url": f"{server}/json", "retries": -1})
    error = expect_error("permission_denied", call, ctx, "http_request", {"url": "file:///etc/passwd"})
    assert error.details["rule"] == "url_scheme"


# ------------------------------------------------------------------------------------ address policy
@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{port}/json",
    "http://localhost:{port}/json",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.1.2.3/",
    "http://[::1]:{port}/json",
])
def test_private_addresses_denied_by_default(call: ToolCaller, strict: ToolContext, server: str, url: str) -> None:
    port = server.rsplit(":", 1)[1]
    for name, args in (("http_request", {}), ("fetch_page", {}), ("html_select", {"selector": "a"})):
        error = expect_error("permission_denied", call, strict, name, {"url": url.format(port=port), **args})
        assert error.details["rule"] == "private_hosts", error.message
        assert "allowed_hosts" in error.message


def test_redirect_to_metadata_denied(call: ToolCaller, env: ToolEnv, ctx: ToolContext, server: str) -> None:
    for name, args in (("http_request", {}), ("fetch_page", {})):
        error = expect_error("permission_denied", call, ctx, name, {"url": f"{server}/to-metadata", **args})
        assert error.details["host"] == "169.254.169.254" and error.details["rule"] == "allowed_hosts"
    # allowing private addresses in general still checks every hop against the host list
    lenient = ToolContext(env.policy(allow_private_hosts=True, allowed_hosts=["127.0.0.1"]))
    error = expect_error("permission_denied", call, lenient, "http_request", {"url": f"{server}/to-metadata"})
    assert error.details["rule"] == "allowed_hosts"


def test_connections_are_checked_at_connect_time(strict: ToolContext, server: str) -> None:
    """The connection backend re-checks the addresses it connects to (no DNS-rebinding window)."""
    import asyncio

    from aikit_components.errors import PermissionDenied
    from aikit_components.tools.web import PolicyBackend

    port = int(server.rsplit(":", 1)[1])
    with pytest.raises(PermissionDenied) as info:
        asyncio.run(PolicyBackend(strict.policy).connect_tcp("localhost", port))
    assert info.value.details["rule"] == "private_hosts"


# ------------------------------------------------------------------------------------ fetch_page
def test_fetch_page(call: ToolCaller, ctx: ToolContext, server: str) -> None:
    page = call(ctx, "fetch_page", {"url": f"{server}/page"})
    assert page["status"] == 200 and page["title"] == "The Test Page"
    text = page["text"]
    assert "# Main heading" in text
    assert "First paragraph with a JSON link inside." in text
    assert "- Apple" in text and "- Banana" in text
    assert "Second paragraph.\nNew line." in text
    for hidden in ("secret", "color: red", "Home", "About", "Enable JavaScript"):
        assert hidden not in text
    urls = [link["url"] for link in page["links"]]
    assert f"{server}/json" in urls and f"{server}/home" in urls and "https://example.org/external" in urls
    assert {"text": "a JSON link", "url": f"{server}/json"} in page["links"]
    assert page["truncated"] is False and page["length"] == len(text)
    short = call(ctx, "fetch_page", {"url": f"{server}/page", "max_chars": 10})
    assert len(short["text"]) == 10 and short["truncated"] is True


def test_fetch_page_errors(call: ToolCaller, ctx: ToolContext, server: str) -> None:
    assert call(ctx, "fetch_page", {"url": f"{server}/text"})["text"] == "plain text body"
    expect_error("not_found", call, ctx, "fetch_page", {"url": f"{server}/missing"})
    error = expect_error("invalid_argument", call, ctx, "fetch_page", {"url": f"{server}/json"})
    assert "http_request" in error.message
    expect_error("invalid_argument", call, ctx, "fetch_page", {"url": f"{server}/page", "max_chars": 0})
    expect_error("invalid_argument", call, ctx, "fetch_page", {"url": 42})


# ------------------------------------------------------------------------------------ html_select
def test_html_select_from_text(call: ToolCaller, ctx: ToolContext) -> None:
    items = call(ctx, "html_select", {"html": PAGE, "selector": "ul.items > li"})
    assert [i["text"] for i in items] == ["Apple", "Banana"]
    assert items[0]["attrs"] == {"data-id": "1"} and items[0]["tag"] == "li"
    lists = call(ctx, "html_select", {"html": PAGE, "selector": "ul"})
    assert lists[0]["attrs"]["class"] == "items big"
    links = call(ctx, "html_select", {"html": PAGE, "selector": "article a", "attribute": "href"})
    assert [link["value"] for link in links] == ["/json", "https://example.org/external#frag"]
    assert call(ctx, "html_select", {"html": PAGE, "selector": "table"}) == []


def test_html_select_from_url(call: ToolCaller, ctx: ToolContext, server: str) -> None:
    links = call(ctx, "html_select", {"url": f"{server}/page", "selector": "nav a", "attribute": "href"})
    assert [link["value"] for link in links] == [f"{server}/home", f"{server}/about"]


def test_html_select_bad_input(call: ToolCaller, ctx: ToolContext, server: str) -> None:
    error = expect_error("invalid_argument", call, ctx, "html_select", {"html": PAGE, "selector": "li[[["})
    assert "selector" in error.message
    expect_error("invalid_argument", call, ctx, "html_select", {"selector": "a"})
    expect_error("invalid_argument", call, ctx, "html_select", {"selector": "a", "html": PAGE, "url": f"{server}/page"})
    expect_error("not_found", call, ctx, "html_select", {"selector": "a", "url": f"{server}/missing"})


# ------------------------------------------------------------------------------------ url_parse
def test_url_parse(call: ToolCaller, ctx: ToolContext) -> None:
    assert call(ctx, "url_parse", {"url": "https://Example.org:8443/search?q=lua&tag=a&tag=b&empty=#top"}) == {
        "scheme": "https", "host": "example.org", "port": 8443, "path": "/search",
        "query": {"q": "lua", "tag": ["a", "b"], "empty": ""}, "fragment": "top"}
    assert call(ctx, "url_parse", {"url": "http://example.org"})["port"] == 80
    assert call.registry.get("url_parse").is_async is False  # pure: runs in the caller's thread
    assert call.registry.call("url_parse", {"url": "https://a.b/c"}, ctx)["path"] == "/c"


def test_url_parse_bad_input(call: ToolCaller, ctx: ToolContext) -> None:
    expect_error("invalid_argument", call, ctx, "url_parse", {"url": "http://example.org:99999/"})
    expect_error("invalid_argument", call, ctx, "url_parse", {"url": "http://[::1/"})
    expect_error("invalid_argument", call, ctx, "url_parse", {"url": ""})
    expect_error("invalid_argument", call, ctx, "url_parse", {"link": "http://example.org"})
